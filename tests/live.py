"""Real chatsite processes under daphne, on a SQLite file, for end-to-end tests.

Each LiveSite is one daphne process; several may share one database (and one Redis) to
act as several servers. SiteClient is a small cookie-keeping HTTP client that signs up and
starts conversations the way a browser form would.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Runs `python <the rest of argv>` with SIGINT ignored, the way a non-interactive shell
# starts a background job (`cmd &` in a script; a CI runner that starts its steps so passes
# it on to everything below): SIG_IGN survives exec, a Python-level handler would not.
_WITH_SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveSite:
    def __init__(
        self,
        tmp_path: Path,
        env: dict[str, str] | None = None,
        *,
        name: str = "site",
        sigint_ignored: bool = False,
    ):
        self.tmp_path = tmp_path
        self.name = name
        # Start daphne with SIGINT ignored, as a background job of a script would be.
        self.sigint_ignored = sigint_ignored
        self.db_path = tmp_path / "site.sqlite3"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "DJANGO_DEBUG": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = tmp_path / f"{name}.log"

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )

    def start(self) -> LiveSite:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        python = [sys.executable]
        if self.sigint_ignored:
            python += ["-c", _WITH_SIGINT_IGNORED]
        self.process = subprocess.Popen(
            [
                *python,
                "-m",
                "chatsite.serve",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "chatsite.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/accounts/login/", timeout=1)
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self.log()) from None
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, wait: float = 20) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path, timeout=30) as db:
            return list(db.execute(sql, params))


@contextmanager
def live_site(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    site = LiveSite(tmp_path, extra_env)
    site.migrate()
    site.start()
    try:
        yield site.base
    finally:
        site.stop()


class SiteClient:
    """Signs up and starts conversations like a browser's forms, keeping cookies."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def _csrf(self, path: str) -> str:
        self.opener.open(f"{self.base}{path}")
        return next(c.value or "" for c in self.jar if c.name == "csrftoken")

    def post(self, path: str, data: dict[str, str], form_path: str = "/") -> Any:
        token = self._csrf(form_path)
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=body, method="POST")
        return self.opener.open(request)

    def sign_up(self, username: str = "ada", password: str = "correct-horse-battery") -> None:
        self.post(
            "/accounts/signup/",
            {"username": username, "password1": password, "password2": password},
            form_path="/accounts/signup/",
        )

    def new_conversation(self, message: str) -> str:
        response = self.post("/conversations/new/", {"message": message})
        match = re.search(r"/conversations/([0-9a-f-]{36})/", response.headers["Location"])
        assert match, response.headers
        return match.group(1)

    def session_cookie(self) -> str:
        return next(c.value or "" for c in self.jar if c.name == "sessionid")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None

    def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
        return fp
