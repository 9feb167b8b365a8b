"""Headless Chromium from Debian, driven by Playwright (no downloaded browser, ever)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.fake_openai import FakeUpstream
from tests.live import live_site

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
API_KEY = "sk-browser-test-key-that-must-not-leak-42"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def site(fake_server: FakeUpstream, tmp_path: Path) -> Iterator[str]:
    fake_server.reset()
    env = {
        "OPENAI_BASE_URL": fake_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "fake-model",
    }
    with live_site(tmp_path, env) as base:
        yield base
    fake_server.reset()


@pytest.fixture
def page(browser: Browser, request: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


SETTLED = "() => !document.querySelector('.htmx-added, .htmx-settling, .htmx-swapping')"


def sign_up(page: Page, base: str, username: str = "ada") -> None:
    page.goto(f"{base}/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", "correct-horse-battery-staple")
    page.fill("#id_password2", "correct-horse-battery-staple")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def ask(page: Page, base: str, text: str) -> None:
    """Start a conversation from the home page and wait for its answer to complete."""
    page.goto(f"{base}/")
    page.fill("#new-message", text)
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")
    expect(
        page.locator('#messages [data-role="assistant"][data-status="complete"]').last
    ).to_be_visible()
    # A short answer can be complete in the very page htmx swaps in: typing before htmx
    # has settled that page (and bound its inputs, ~20 ms) would type into the void.
    page.wait_for_function(SETTLED)
