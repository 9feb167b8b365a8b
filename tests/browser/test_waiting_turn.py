"""A local model server with one slot (CHATSITE_UPSTREAM_CONCURRENCY=1): a second answer
waits its turn, says so on the page, and streams as soon as the first one ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import API_KEY, ARTIFACTS, SETTLED, sign_up
from tests.fake_openai import FakeUpstream, Stream
from tests.live import live_site

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'


@pytest.fixture
def one_slot_site(fake_server: FakeUpstream, tmp_path: Path) -> Iterator[str]:
    fake_server.reset()
    env = {
        "OPENAI_BASE_URL": fake_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "fake-model",
        "CHATSITE_UPSTREAM_CONCURRENCY": "1",
    }
    with live_site(tmp_path, env) as base:
        yield base
    fake_server.reset()


def start(page: Page, base: str, text: str) -> None:
    page.goto(f"{base}/")
    page.wait_for_function(SETTLED)
    page.fill("#new-message", text)
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")


def test_a_second_answer_waits_for_the_one_slot_says_so_and_streams_when_it_frees(
    page: Page, browser: Browser, one_slot_site: str, fake_server: FakeUpstream
) -> None:
    base = one_slot_site
    fake_server.enqueue(
        Stream([f"w{i} " for i in range(600)], interval=0.03),
        Stream([f"second{i} " for i in range(20)], interval=0.02),
    )
    sign_up(page, base)
    start(page, base, "the first question")
    expect(page.locator(f"{ANSWER} .message-text").last).to_contain_text("w3 ")
    first_url = page.url

    second = page.context.new_page()
    start(second, base, "the second question")
    note = second.locator(f"{ANSWER} .message-note").last
    expect(note).to_have_text("Waiting for the model: 1 answer ahead…")
    assert len(fake_server.completions()) == 1  # nothing of it was sent meanwhile

    # Look at it: phone and desktop, light and dark.
    ARTIFACTS.mkdir(exist_ok=True)
    url = second.url
    schemes: tuple[Literal["light", "dark"], ...] = ("light", "dark")
    for width in (360, 1280):
        for scheme in schemes:
            context = browser.new_context(
                viewport={"width": width, "height": 740}, color_scheme=scheme
            )
            cookies: list[Any] = list(page.context.cookies())
            context.add_cookies(cookies)
            look = context.new_page()
            look.goto(url)  # a reload while waiting shows the wait too
            expect(look.locator(f"{ANSWER} .message-note").last).to_have_text(
                "Waiting for the model: 1 answer ahead…"
            )
            look.screenshot(path=str(ARTIFACTS / f"waiting-turn-{width}-{scheme}.png"))
            context.close()

    page.goto(first_url)
    page.click("#stop-button")  # the first answer ends: the slot is the second's
    expect(second.locator(f"{ANSWER} .message-text").last).to_contain_text("second19")
    expect(second.locator(f'{ANSWER}[data-status="complete"]').last).to_be_visible()
    expect(second.get_by_text("Waiting for the model")).to_have_count(0)
    assert len(fake_server.completions()) == 2
    second.close()
