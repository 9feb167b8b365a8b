"""End to end in headless Chromium: sign up, ask, watch it stream, stop, reload."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import API_KEY, sign_up
from tests.fake_openai import FakeUpstream, Stream

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'


def test_ask_watch_it_grow_stop_and_find_it_after_reload(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    pieces = [f"token{i} " for i in range(400)]
    fake_server.enqueue(Stream(pieces, interval=0.03, first_delay=0.8))
    sign_up(page, site)

    page.fill("#new-message", "Tell me a long story")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{site}/conversations/*/")

    # The typing indicator shows until the first text arrives.
    expect(page.locator(f"{ANSWER} .typing")).to_be_visible()
    expect(page.locator('#messages [data-role="user"]')).to_contain_text("Tell me a long story")
    expect(page.locator("#stop-button")).to_be_visible()

    # The answer grows in more than one step.
    text = page.locator(f"{ANSWER} .message-text")
    lengths: list[int] = []
    deadline = time.monotonic() + 10
    while len(set(lengths)) < 4 and time.monotonic() < deadline:
        lengths.append(len(text.inner_text()))
        time.sleep(0.1)
    assert len({n for n in lengths if n > 0}) >= 3, lengths
    assert lengths == sorted(lengths)
    expect(page.locator(f"{ANSWER} .typing")).to_be_hidden()

    page.click("#stop-button")
    stopped = page.locator(f'{ANSWER}[data-status="stopped"]')
    expect(stopped).to_be_visible()
    expect(stopped.locator(".message-status")).to_have_text("Stopped")
    expect(page.locator("#send-button")).to_be_visible()
    partial = stopped.locator(".message-text").inner_text().strip()
    assert partial
    assert "".join(pieces).startswith(partial)
    assert len(partial) < len("".join(pieces))
    assert fake_server.completions()[-1].wait_closed(2.0)  # Stop hung up the upstream

    page.reload()
    after = page.locator(f'{ANSWER}[data-status="stopped"] .message-text')
    expect(after).to_have_text(partial)
    assert API_KEY not in page.content()
    assert page.problems == []  # type: ignore[attr-defined]


def test_enter_sends_shift_enter_breaks_line_and_focus_returns(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(["First ", "answer."]), Stream(["Second ", "answer."]))
    sign_up(page, site)
    page.fill("#new-message", "hello")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{site}/conversations/*/")
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_have_count(1)

    composer = page.locator("#composer-input")
    composer.click()
    composer.type("line one")
    composer.press("Shift+Enter")
    composer.type("line two")
    assert composer.input_value() == "line one\nline two"
    composer.press("Enter")
    expect(page.locator('#messages [data-role="user"] .message-text').nth(1)).to_have_text(
        "line one\nline two", use_inner_text=True
    )
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_have_count(2)
    expect(composer).to_have_value("")
    expect(composer).to_be_focused()
    assert page.problems == []  # type: ignore[attr-defined]
