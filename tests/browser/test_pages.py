"""In the browser: the screens around the chat (settings, sign-in, sign-up, search, the 404
page) fit a 320 px phone without sideways scrolling, their touch targets are at least
44 px tall, and they render under the Content-Security-Policy in light and dark; the admin
overview and a flag's page too. Screenshots at 360 and 1280 px, light and dark, land in
test-artifacts/pages-<screen>-<width>-<scheme>.png."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from django.template.loader import render_to_string
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
)

from tests.browser.conftest import API_KEY, ARTIFACTS
from tests.fake_openai import FakeUpstream, Stream
from tests.live import ROOT, LiveSite, SiteClient

pytestmark = pytest.mark.browser

SIZES: dict[int, ViewportSize] = {
    360: {"width": 360, "height": 740},
    1280: {"width": 1280, "height": 800},
}
SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
# What a thumb presses on these pages: every control of main, and its links that act.
TOUCH_TARGETS = (
    "main button, main input:not([type=hidden]), main select, main textarea, main form a,"
    " main a.button, main a.back-link, main .auth-switch a, main .search-result a"
)
ANSWER = (
    "## Staying well\n\nSome **immune boosters**! A little *rest*, water and `sleep()`:\n\n"
    "```bash\necho rest\n```\n"
)
# After the page has loaded: what the policy refused (the listener is added before any
# script of the page runs, so it sees every refusal).
WATCH_POLICY = (
    "window.__refused = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__refused.push(e.violatedDirective + ' ' + e.blockedURI));"
)


@pytest.fixture
def pages_site(fake_server: FakeUpstream, tmp_path: Path) -> Iterator[LiveSite]:
    fake_server.reset()
    env = {
        "OPENAI_BASE_URL": fake_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "fake-model",
    }
    site = LiveSite(tmp_path, env)
    site.migrate()
    site.start()
    try:
        yield site
    finally:
        site.stop()
        fake_server.reset()


def _answers_final(site: LiveSite, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        [(done,)] = site.query(
            "SELECT count(*) FROM conversations_message"
            " WHERE role = 'assistant' AND status != 'streaming'"
        )
        if done >= count:
            return
        time.sleep(0.1)
    raise AssertionError(site.log())


def _seed(site: LiveSite, script: str) -> str:
    """Run Django code against the live site's database (what a browser cannot make)."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=site.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


# Thirty days of use for the overview's charts, and a second version of the first answer,
# flagged, for the flag page.
SEED = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from accounts.models import UsageEvent
from conversations import services, turn_services
from conversations.models import Message
from moderation.models import Flag
ada = get_user_model().objects.get(username="ada")
now = timezone.now()
for day in range(1, 30):
    for n in range((day * 7) % 11):
        event = UsageEvent.objects.create(user=ada, kind="message")
        UsageEvent.objects.filter(pk=event.pk).update(at=now - timedelta(days=day))
    event = UsageEvent.objects.create(user=ada, kind="tokens", model="fake-model",
                                      tokens=(day * 7919) % 5000 + (40 if day % 9 else 0))
    UsageEvent.objects.filter(pk=event.pk).update(at=now - timedelta(days=day))
first = Message.objects.filter(role="assistant").order_by("id").first()
again = turn_services.answer_retry(conversation=first.conversation, message_id=first.pk,
                                   generation_channel="c")
services.message_finalize(message_id=again.pk, status="complete",
    content="# The moon\\n\\n## Is it cheese?\\n\\nNo. It is **rock**:\\n\\n"
            "```bash\\necho rock\\n```\\n\\n- one\\n- two")
flag = Flag.objects.create(conversation=first.conversation, message=again,
                           subject=first.conversation.owner, source="report",
                           category="misinformation", excerpt=again.content[:500])
print(flag.pk)
"""


def _context(
    browser: Browser,
    width: int,
    scheme: Literal["light", "dark"],
    cookies: list[Any] | None = None,
) -> BrowserContext:
    context = browser.new_context(viewport=SIZES[width], color_scheme=scheme)
    if cookies:
        context.add_cookies(cookies)
    context.add_init_script(WATCH_POLICY)
    return context


def _look(
    browser: Browser,
    name: str,
    url: str,
    *,
    cookies: list[Any] | None = None,
    act: Callable[[Page], None] | None = None,
    phone: bool = True,
) -> None:
    """The screen in both schemes at both widths: screenshots, nothing refused by the
    policy, no page error; on a phone, no sideways scroll at 320 px and no small target."""
    for scheme in SCHEMES:
        for width in SIZES:
            context = _context(browser, width, scheme, cookies)
            page, errors = _open(context, url)
            if act is not None:
                act(page)
            page.wait_for_load_state("networkidle")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(
                path=str(ARTIFACTS / f"pages-{name}-{width}-{scheme}.png"), full_page=True
            )
            assert page.evaluate("window.__refused") == [], (name, width, scheme)
            assert errors == [], (name, width, scheme, errors)
            if phone and width == 360:
                _fits_a_phone(page, name)
            context.close()


def _open(context: BrowserContext, url: str) -> tuple[Page, list[str]]:
    """A page at `url`, and the errors it reports (a 404 page's own status aside)."""
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "404" not in message.text:
            errors.append(message.text)

    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", console)
    page.goto(url)
    return page, errors


def _fits_a_phone(page: Page, name: str) -> None:
    small = page.evaluate(
        """(selector) => [...document.querySelectorAll(selector)]
            .filter(el => el.getClientRects().length)
            .filter(el => getComputedStyle(el).visibility !== 'hidden')
            .map(el => [el.outerHTML.slice(0, 90), el.getBoundingClientRect().height])
            .filter(([, height]) => height < 44)""",
        TOUCH_TARGETS,
    )
    assert small == [], f"{name}: touch targets under 44 px: {small}"
    page.set_viewport_size({"width": 320, "height": 740})
    wider = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wider <= 0, f"{name} scrolls sideways at 320 px: {wider} px too wide"
    page.set_viewport_size(SIZES[360])


def _sign_in_wrongly(username: str) -> Callable[[Page], None]:
    def act(page: Page) -> None:
        page.fill("#id_username", username)
        page.fill("#id_password", "not-the-password")
        page.click("main button[type=submit]")
        expect(page.locator("main [role=alert]")).to_contain_text("correct username and password")

    return act


def _sign_up_weakly(page: Page) -> None:
    page.fill("#id_username", "grace")
    page.fill("#id_password1", "password")
    page.fill("#id_password2", "password")
    page.click("main button[type=submit]")
    # Under the password, where a person looks for it; the confirmation has nothing to say.
    expect(page.locator("#id_password1_error")).to_contain_text("too common")
    expect(page.locator("#id_password2_error")).to_have_count(0)


def test_the_screens_around_the_chat_fit_a_phone_and_read_in_both_schemes(
    browser: Browser, pages_site: LiveSite, fake_server: FakeUpstream
) -> None:
    base = pages_site.base
    fake_server.enqueue(
        Stream([ANSWER[:40], ANSWER[40:]], report_usage=False),  # llama.cpp: no usage
        Stream(
            ["Tides follow the moon."],
            usage={"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        ),
    )
    ada = SiteClient(base)
    ada.sign_up("ada")  # the first account: a superuser
    first = ada.new_conversation("How do I stay well?")
    _answers_final(pages_site, 1)
    ada.new_conversation("Why do tides happen?")
    _answers_final(pages_site, 2)
    bob = SiteClient(base)
    bob.sign_up("bob")
    signed_in = {
        "ada": [_cookie(base, ada.session_cookie())],
        "bob": [_cookie(base, bob.session_cookie())],
    }

    _look(browser, "settings", f"{base}/settings/", cookies=signed_in["ada"])
    _look(browser, "signin", f"{base}/accounts/login/", act=_sign_in_wrongly("ada"))
    _look(browser, "signup", f"{base}/accounts/signup/", act=_sign_up_weakly)
    _look(browser, "search", f"{base}/search/?q=boosters", cookies=signed_in["ada"])
    _look(browser, "404", f"{base}/conversations/{first}/", cookies=signed_in["bob"])

    # The 500 page stands alone (no request, no user): drawn in a page of the site, so that
    # its stylesheet loads from there and the site's policy applies to it.
    error_page = render_to_string("500.html")
    for scheme in SCHEMES:
        for width in SIZES:
            context = _context(browser, width, scheme)
            page = context.new_page()
            page.goto(f"{base}/accounts/login/")
            page.set_content(error_page, wait_until="networkidle")
            expect(page.locator("h1")).to_have_text("Something went wrong")
            page.screenshot(path=str(ARTIFACTS / f"pages-500-{width}-{scheme}.png"), full_page=True)
            if width == 360:
                _fits_a_phone(page, "500")
            context.close()

    # What the screens say, once.
    context = _context(browser, 1280, "light", signed_in["ada"])
    page = context.new_page()
    page.goto(f"{base}/settings/")
    row = page.locator('.usage-table tr[data-model="fake-model"]')
    expect(row.locator("td").nth(1)).to_have_text("2")
    expect(row.locator("td").nth(2)).to_contain_text("≈")  # one answer was not reported
    expect(page.locator(".danger-zone button")).to_have_css("color", "rgb(255, 255, 255)")
    page.goto(f"{base}/search/?q=boosters")
    snippet = page.locator(".search-page .search-snippet")
    expect(snippet).to_contain_text("Some immune boosters! A little rest, water and sleep()")
    expect(snippet.locator("mark")).to_have_text("boosters")
    response = page.goto(f"{base}/conversations/{first}/")
    assert response is not None
    assert response.status == 200  # hers: no 404
    context.close()


def _cookie(base: str, session: str) -> dict[str, str]:
    return {"name": "sessionid", "value": session, "url": base}


def test_the_admin_overview_and_a_flag_page_read_well(
    browser: Browser, pages_site: LiveSite, fake_server: FakeUpstream
) -> None:
    base = pages_site.base
    fake_server.enqueue(Stream([ANSWER]))
    ada = SiteClient(base)
    ada.sign_up("ada")  # the first account: a superuser
    ada.new_conversation("Is the moon cheese?")
    _answers_final(pages_site, 1)
    flag = _seed(pages_site, SEED).splitlines()[-1]
    cookies = [_cookie(base, ada.session_cookie())]

    _look(browser, "admin-overview", f"{base}/admin/overview/", cookies=cookies, phone=False)
    _look(
        browser,
        "admin-flag",
        f"{base}/admin/moderation/flag/{flag}/change/",
        cookies=cookies,
        phone=False,
    )

    context = _context(browser, 1280, "light", cookies)
    page = context.new_page()
    page.goto(f"{base}/admin/overview/")
    expect(page.locator("#content h1")).to_have_count(1)
    bars = page.locator("#chart-messages .chart-bars rect")
    assert bars.count() >= 25  # a bar for every day with messages, not one at the far right
    box = bars.first.bounding_box()
    assert box is not None
    assert box["height"] >= 1
    expect(page.locator("#chart-messages .chart-day")).to_have_count(5)
    page.goto(f"{base}/admin/moderation/flag/{flag}/change/")
    flagged = page.locator(".flag-turn--flagged")
    expect(flagged).to_contain_text("Version 2 of 2")
    expect(flagged.locator(".copy-button")).to_be_hidden()
    heading = flagged.locator("h2")
    expect(heading).to_have_text("Is it cheese?")
    expect(heading).to_have_css("background-color", "rgba(0, 0, 0, 0)")  # not admin's blue bar
    expect(page.locator(".flag-turn").first).to_contain_text("Is the moon cheese?")  # its question
    context.close()
