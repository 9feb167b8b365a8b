"""Single sign-on end to end in headless Chromium: chatsite under daphne, configured from
its environment for a real OpenID Connect provider (tests/oidc_provider.py) on another
port, or for GitHub (tests/github_provider.py, a GitHub Enterprise over HTTP); the whole
redirect flow, then a conversation over the websocket like anyone's."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import API_KEY, ARTIFACTS, ask
from tests.fake_openai import FakeUpstream, Stream
from tests.github_provider import CLIENT_SECRET as GITHUB_SECRET
from tests.github_provider import GitHub
from tests.live import live_site
from tests.oidc_provider import CLIENT_SECRET, OidcProvider

pytestmark = [
    pytest.mark.browser,
    # authlib, inside the provider, warns about its own deprecated parts.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
CSP_WATCH = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider() as running:
        yield running


@pytest.fixture
def sso_site(fake_server: FakeUpstream, provider: OidcProvider, tmp_path: Path) -> Iterator[str]:
    fake_server.reset()
    env = {
        "OPENAI_BASE_URL": fake_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "fake-model",
        **provider.env(name="Example SSO"),
    }
    with live_site(tmp_path, env) as base:
        yield base
    fake_server.reset()


def _look_at_the_sign_in_page(
    browser: Browser, base: str, button: str = "Sign in with Example SSO", shot: str = "sso-signin"
) -> None:
    """Phone and desktop, light and dark: test-artifacts/<shot>-<width>-<scheme>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    schemes: tuple[Literal["light", "dark"], ...] = ("light", "dark")
    for width in (360, 1280):
        for scheme in schemes:
            context = browser.new_context(
                viewport={"width": width, "height": 740}, color_scheme=scheme
            )
            look = context.new_page()
            look.add_init_script(CSP_WATCH)
            look.goto(f"{base}/accounts/login/")
            found = look.get_by_role("button", name=button)
            expect(found).to_be_visible()
            box = found.bounding_box()
            assert box is not None
            assert box["height"] >= 44
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= width
            look.screenshot(path=str(ARTIFACTS / f"{shot}-{width}-{scheme}.png"))
            assert look.evaluate("window.__csp") == []
            context.close()


def test_sign_in_through_the_provider_and_chat(
    page: Page, browser: Browser, sso_site: str, provider: OidcProvider, fake_server: FakeUpstream
) -> None:
    base = sso_site
    provider.set_user(
        "ada@example.com",
        email="ada@example.com",
        email_verified=True,
        preferred_username="ada",
        name="Ada Lovelace",
    )
    fake_server.enqueue(Stream(["Signed ", "in ", "through ", "the ", "provider."], interval=0.05))
    _look_at_the_sign_in_page(browser, base)

    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.frame.url, r.url)))
    errors: list[tuple[str, str]] = []
    page.on("console", lambda m: errors.append((page.url, m.text)) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append((page.url, str(exc))))
    page.add_init_script(CSP_WATCH)
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/accounts/login/?next=/")
    page.get_by_role("button", name="Sign in with Example SSO").click()

    # The provider's own page, on its own origin.
    page.wait_for_url(f"{provider.issuer}/oauth2/authorize?*")
    assert "code_challenge=" in page.url
    assert "state=" in page.url
    assert CLIENT_SECRET not in page.url
    page.get_by_placeholder("sub").fill("ada@example.com")
    page.get_by_role("button", name="Authorize").click()

    # Back, signed in, where the sign-in started.
    page.wait_for_url(f"{base}/")
    expect(page.locator(".whoami")).to_have_text("ada")
    expect(page.get_by_role("link", name="Admin")).to_be_visible()  # the first account
    ask(page, base, "Hello from single sign-on")
    answer = page.locator('#messages [data-role="assistant"][data-status="complete"]').last
    expect(answer.locator(".message-text")).to_have_text("Signed in through the provider.")
    assert fake_server.completions()[-1].body["messages"][-1]["content"] == (
        "Hello from single sign-on"
    )

    # The admin works for the superuser the provider signed in.
    page.goto(f"{base}/admin/")
    expect(page.locator("#site-name, h1").first).to_be_visible()
    assert "/admin/login/" not in page.url

    assert page.evaluate("window.__csp") == []
    assert CLIENT_SECRET not in page.content()
    # The site's pages ask nothing of any other host (the provider's own page is its own).
    assert [
        url
        for frame, url in requests
        if frame.startswith(base) and not url.startswith((base, provider.issuer, "ws://127.0.0.1"))
    ] == []
    # No error on the site's pages (the provider's page fetches a stylesheet from a CDN that
    # this machine cannot reach: its own business).
    assert [(url, text) for url, text in errors if url.startswith(base)] == []


@pytest.fixture
def sso_only_site(provider: OidcProvider, tmp_path: Path) -> Iterator[str]:
    env = {
        **provider.env(name="Example SSO"),
        "CHATSITE_LOCAL_SIGNIN_ENABLED": "0",
        "CHATSITE_SSO_EMAIL_DOMAINS": "example.com",
    }
    with live_site(tmp_path, env) as base:
        yield base


def test_sso_only_and_a_refused_domain(
    page: Page, sso_only_site: str, provider: OidcProvider, tmp_path: Path
) -> None:
    base = sso_only_site
    provider.set_user("eve", email="eve@elsewhere.org", email_verified=True)
    page.add_init_script(CSP_WATCH)
    page.goto(f"{base}/accounts/login/")
    expect(page.locator("input[type=password]")).to_have_count(0)
    expect(page.get_by_text("No account yet?")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sso-signin-provider-only.png"))
    assert page.evaluate("window.__csp") == []

    page.get_by_role("button", name="Sign in with Example SSO").click()
    page.wait_for_url(f"{provider.issuer}/oauth2/authorize?*")
    page.get_by_placeholder("sub").fill("eve")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{base}/accounts/oidc/corp/login/callback/?*")
    expect(page.get_by_role("heading", name="This address cannot sign in here")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("verified addresses at example.com only")
    page.screenshot(path=str(ARTIFACTS / "sso-refused-domain.png"))
    assert page.evaluate("window.__csp") == []
    with sqlite3.connect(tmp_path / "site.sqlite3") as db:
        assert db.execute("select count(*) from auth_user").fetchone() == (0,)
        assert db.execute("select count(*) from socialaccount_socialaccount").fetchone() == (0,)


@pytest.fixture(scope="module")
def github() -> Iterator[GitHub]:
    with GitHub() as running:
        yield running


@pytest.fixture
def github_site(fake_server: FakeUpstream, github: GitHub, tmp_path: Path) -> Iterator[str]:
    fake_server.reset()
    env = {
        "OPENAI_BASE_URL": fake_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "fake-model",
        **github.env(),
    }
    with live_site(tmp_path, env) as base:
        yield base
    fake_server.reset()


def test_sign_in_with_github_and_chat(
    page: Page, browser: Browser, github_site: str, github: GitHub, fake_server: FakeUpstream
) -> None:
    base = github_site
    github.set_user(
        "octocat", id=583231, name="The Octocat", emails=[("octocat@example.com", True, True)]
    )
    fake_server.enqueue(Stream(["Signed ", "in ", "through ", "GitHub."], interval=0.05))
    _look_at_the_sign_in_page(browser, base, "Sign in with GitHub", "sso-signin-github")

    errors: list[tuple[str, str]] = []
    page.on("console", lambda m: errors.append((page.url, m.text)) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append((page.url, str(exc))))
    page.add_init_script(CSP_WATCH)
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/accounts/login/?next=/")
    page.get_by_role("button", name="Sign in with GitHub").click()

    # GitHub's authorisation page, on its own origin (the form-action the policy allows).
    page.wait_for_url(f"{github.url}/login/oauth/authorize?*")
    assert "state=" in page.url
    assert "code_challenge=" in page.url
    assert GITHUB_SECRET not in page.url
    page.get_by_placeholder("login").fill("octocat")
    page.get_by_role("button", name="Authorize").click()

    # Back, signed in as GitHub's login, where the sign-in started.
    page.wait_for_url(f"{base}/")
    expect(page.locator(".whoami")).to_have_text("octocat")
    expect(page.get_by_role("link", name="Admin")).to_be_visible()  # the first account
    ask(page, base, "Hello from GitHub")
    answer = page.locator('#messages [data-role="assistant"][data-status="complete"]').last
    expect(answer.locator(".message-text")).to_have_text("Signed in through GitHub.")
    assert page.evaluate("window.__csp") == []
    assert GITHUB_SECRET not in page.content()
    assert [(url, text) for url, text in errors if url.startswith(base)] == []
