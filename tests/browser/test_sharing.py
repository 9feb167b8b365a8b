"""Share links in Chromium: share an answer through the dialog, copy the link, read it in a
signed-out browser, revoke it on the settings page and find it gone."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import ARTIFACTS, SETTLED, ask, sign_up
from tests.fake_openai import FakeUpstream, Stream

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'
DONE = f'{ANSWER}[data-status="complete"]'
SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
REPLY = [
    "## Growing tomatoes\n\n",
    "They like **warmth**: about twenty degrees, and *never* frost.\n\n",
    "- sun for six hours\n- water at the roots\n\n",
    "```python\nprint('water the tomatoes')\n```\n\n",
    "A very long word to wrap: ",
    "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichenhersteller.",
]


def watched(context: BrowserContext) -> Page:
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.problems = problems  # type: ignore[attr-defined]
    return page


def open_share_dialog(page: Page) -> None:
    page.click("#conversation-menu summary")
    page.click('#conversation-menu [data-action="share"]')
    expect(page.locator("#share-dialog")).to_be_visible()


def create_link(page: Page) -> str:
    page.click("#share-dialog [data-share-submit]")
    url = page.locator("#share-dialog [data-share-url]")
    expect(url).to_be_visible()
    expect(page.locator("#share-dialog [data-share-submit]")).to_be_hidden()
    return url.input_value()


def test_share_an_answer_read_it_signed_out_revoke_it_and_it_is_gone(
    browser: Browser, site: str, fake_server: FakeUpstream
) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page = watched(context)
    fake_server.enqueue(Stream(REPLY, interval=0.02), Stream(["A later answer."]))
    sign_up(page, site)
    ask(page, site, "How do I grow tomatoes?")
    conversation_url = page.url

    open_share_dialog(page)
    assert not page.is_checked("#share-dialog [name=show_owner_name]")  # off by default
    link = create_link(page)
    assert link.startswith(f"{site}/share/")
    assert conversation_url.split("/")[-2] not in link
    page.click('#share-dialog [data-action="copy-share-link"]')
    expect(page.locator('#share-dialog [data-action="copy-share-link"]')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link
    page.click('#share-dialog [data-action="close-dialog"]')

    # Later messages do not reach the shared copy.
    page.fill("#composer-input", "And cucumbers?")
    page.press("#composer-input", "Enter")
    expect(page.locator(DONE).last).to_contain_text("A later answer.")

    # "Share up to here" from the first answer's own actions.
    first = page.locator(DONE).first
    first.hover()
    first.locator('[data-action="share"]').click()
    expect(page.locator("#share-dialog [data-share-what]")).to_have_text("up to this answer")
    up_to_link = create_link(page)
    page.click('#share-dialog [data-action="close-dialog"]')

    stranger = browser.new_context()  # signed out, nothing shared with the owner's
    reader = watched(stranger)
    reader.goto(link)
    expect(reader.locator(".message--assistant h2")).to_contain_text("Growing tomatoes")
    expect(reader.locator(".message--assistant strong").first).to_have_text("warmth")
    expect(reader.locator(".message--user")).to_have_text("How do I grow tomatoes?")
    assert "A later answer." not in reader.content()
    assert "ada" not in reader.inner_text("body")
    assert reader.locator('meta[name="robots"]').get_attribute("content") == "noindex, nofollow"
    assert reader.locator("[ws-connect], #composer-input").count() == 0
    reader.goto(up_to_link)
    expect(reader.locator(".message--assistant")).to_have_count(1)
    assert reader.problems == []  # type: ignore[attr-defined]

    page.goto(f"{site}/settings/")
    item = page.locator(".share-item").filter(has=page.locator(f'input[value="{link}"]'))
    expect(item).to_be_visible()
    item.get_by_role("button", name="Revoke").click()
    expect(page.locator("#shares [role=status]")).to_contain_text("Revoked")
    expect(page.locator(f'input[value="{link}"]')).to_have_count(0)
    response = reader.goto(link)
    assert response is not None
    assert response.status == 404
    expect(reader.locator("h1")).to_have_text("Page not found")
    assert page.problems == []  # type: ignore[attr-defined]
    stranger.close()
    context.close()


def test_the_share_dialog_and_the_shared_page_read_well_on_a_phone_and_a_desktop(
    browser: Browser, site: str, fake_server: FakeUpstream
) -> None:
    page = watched(browser.new_context())
    fake_server.enqueue(Stream(REPLY))
    sign_up(page, site)
    ask(page, site, "How do I grow tomatoes? " + "Tell me everything you know. " * 3)
    url = page.url
    cookies: list[Any] = list(page.context.cookies())
    link = ""
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (360, 1280):
        for scheme in SCHEMES:
            context = browser.new_context(
                viewport={"width": width, "height": 740}, color_scheme=scheme
            )
            context.add_cookies(cookies)
            look = watched(context)
            look.goto(url)
            look.wait_for_function(SETTLED)
            open_share_dialog(look)
            look.check("#share-dialog [name=show_owner_name]")
            link = create_link(look)
            look.screenshot(path=str(ARTIFACTS / f"share-dialog-{width}-{scheme}.png"))
            signed_out = browser.new_context(
                viewport={"width": width, "height": 740}, color_scheme=scheme
            )
            reader = watched(signed_out)
            reader.goto(link)
            expect(reader.locator(".shared-owner")).to_have_text("ada")
            # Nothing scrolls sideways on a phone.
            assert reader.evaluate("document.documentElement.scrollWidth") <= width
            reader.screenshot(
                path=str(ARTIFACTS / f"share-page-{width}-{scheme}.png"), full_page=True
            )
            assert look.problems == []  # type: ignore[attr-defined]
            assert reader.problems == []  # type: ignore[attr-defined]
            signed_out.close()
            context.close()
