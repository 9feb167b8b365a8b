"""The site runs on its runtime pins alone: `make run` (and a server) installs
requirements.lock, and the test, lint and bench tools stay in requirements-dev.lock."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", re.MULTILINE)


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    return {
        re.sub(r"[-_.]+", "-", package).lower(): version for package, version in PIN.findall(text)
    }


def _dev_only_modules() -> set[str]:
    """Top-level import names of the packages only the development pins bring."""
    dev_only = set(_pins("requirements-dev.lock")) - set(_pins("requirements.lock"))
    modules = set()
    for module, distributions in metadata.packages_distributions().items():
        if any(re.sub(r"[-_.]+", "-", d).lower() in dev_only for d in distributions):
            modules.add(module)
    return modules


def test_runtime_pins_are_the_development_pins_without_the_tools():
    run, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert run, "requirements.lock pins nothing"
    assert {name: dev.get(name) for name in run} == run, "a runtime pin differs in the dev pins"
    for tool in ("pytest", "playwright", "mypy", "ruff", "matplotlib", "django-stubs"):
        assert tool in dev
        assert tool not in run, f"{tool} would be installed by make run"


def test_make_run_installs_only_the_runtime_pins():
    commands = subprocess.run(
        ["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "-r requirements.lock" in commands
    assert "requirements-dev.lock" not in commands


def test_the_site_starts_without_any_development_package():
    """Every module of the site imports, and Django's checks pass, with the packages only
    the dev pins bring made unimportable."""
    blocked = _dev_only_modules()
    assert {"pytest", "playwright", "mypy"} <= blocked
    script = textwrap.dedent(
        f"""
        import importlib, os, pkgutil, sys

        BLOCKED = {sorted(blocked)!r}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is a development package")
                return None

        sys.meta_path.insert(0, Block())
        os.environ["DJANGO_SETTINGS_MODULE"] = "chatsite.settings"
        import django
        django.setup()
        for app in ("chatsite", "conversations", "accounts", "moderation"):
            package = importlib.import_module(app)
            for info in pkgutil.walk_packages(package.__path__, app + "."):
                importlib.import_module(info.name)
        importlib.import_module("chatsite.asgi")
        from django.core.management import call_command
        call_command("check")
        print("started")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "started" in result.stdout
