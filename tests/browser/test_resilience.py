"""In the browser: reconnect after a network drop, and Stop from another tab."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import API_KEY, ask, sign_up
from tests.fake_openai import FakeUpstream, Json, Stream
from tests.live import LiveSite
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'
PIECES = [f"word{i} " for i in range(150)]
FULL = "".join(PIECES)


@pytest.fixture
def proxied_site(fake_server: FakeUpstream, tmp_path: Path) -> Iterator[TcpProxy]:
    fake_server.reset()
    site = LiveSite(
        tmp_path,
        {"OPENAI_BASE_URL": fake_server.base_url, "OPENAI_API_KEY": API_KEY, "OPENAI_MODEL": "m"},
    )
    site.migrate()
    site.start()
    proxy = TcpProxy(site.port).start()
    yield proxy
    proxy.stop()
    site.stop()


def test_after_a_network_drop_the_page_reconnects_and_catches_up(
    page: Page, proxied_site: TcpProxy, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(PIECES, interval=0.03))
    base = proxied_site.base
    sign_up(page, base)
    page.fill("#new-message", "keep talking")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")
    text = page.locator(f"{ANSWER} .message-text")
    expect(text).to_contain_text("word10 ")

    proxied_site.cut(block_for=1.0)  # the network is gone for a second; the answer goes on
    samples = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shown = text.inner_text()
        samples.append(shown)
        if page.locator(f'{ANSWER}[data-status="complete"]').count():
            break
        time.sleep(0.05)
    expect(page.locator(f'{ANSWER}[data-status="complete"] .message-text')).to_have_text(
        FULL.strip()
    )
    # What the reader saw was always a prefix of the answer: nothing twice, nothing skipped.
    assert all(FULL.startswith(s.rstrip()) for s in samples if s)
    # The only complaints are the browser's own about the lost connection.
    problems = page.problems  # type: ignore[attr-defined]
    assert all("WebSocket" in p or "[object Event]" in p for p in problems), problems


def test_stop_from_another_tab_stops_the_answer_everywhere(
    browser: Browser, page: Page, proxied_site: TcpProxy, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(PIECES * 3, interval=0.03))
    base = proxied_site.base
    sign_up(page, base)
    page.fill("#new-message", "two tabs")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")
    expect(page.locator(f"{ANSWER} .message-text")).to_contain_text("word3 ")

    other = page.context.new_page()  # same browser, same sign-in: a second tab
    other.goto(page.url)
    other_text = other.locator(f"{ANSWER} .message-text")
    expect(other_text).to_contain_text("word20 ")  # it follows the stream live
    other.click("#stop-button")

    for tab in (page, other):
        expect(tab.locator(f'{ANSWER}[data-status="stopped"]')).to_be_visible()
        expect(tab.locator("#send-button")).to_be_visible()
    first = page.locator(f"{ANSWER} .message-text").inner_text()
    assert first == other_text.inner_text()
    assert fake_server.completions()[0].wait_closed(2.0)
    other.close()


def test_continue_button_extends_an_interrupted_answer_in_the_page(
    page: Page, proxied_site: TcpProxy, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(PIECES, drop_after=3), Stream(["and ", "more."]))
    base = proxied_site.base
    sign_up(page, base)
    page.fill("#new-message", "flaky")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")
    interrupted = page.locator(f'{ANSWER}[data-status="interrupted"]')
    expect(interrupted).to_be_visible()
    expect(interrupted.locator(".message-status")).to_contain_text("Interrupted")

    interrupted.locator('[data-action="continue"]').click()
    done = page.locator(f'{ANSWER}[data-status="complete"] .message-text')
    expect(done).to_have_text("".join(PIECES[:3]) + "and more.")
    expect(page.locator('[data-action="retry"]')).to_have_count(0)  # complete: nothing to redo


def test_the_sidebar_of_another_tab_shows_the_live_marker_and_the_new_title(
    page: Page, proxied_site: TcpProxy, fake_server: FakeUpstream
) -> None:
    base = proxied_site.base
    fake_server.enqueue(Stream(["First."]))
    sign_up(page, base)
    ask(page, base, "an earlier conversation")
    earlier = page.url

    fake_server.enqueue(Stream(PIECES, interval=0.02))
    fake_server.enqueue_plain(
        Json(
            {
                "id": "t",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Live Title"},
                        "finish_reason": "stop",
                    }
                ],
            }
        )
    )
    page.goto(f"{base}/")
    page.fill("#new-message", "answer me at length")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")
    public_id = page.url.rstrip("/").rsplit("/", 1)[1]

    other = page.context.new_page()
    errors: list[str] = []
    other.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    other.goto(earlier)  # a tab on the earlier conversation
    marker = other.locator(f"#nav-live-{public_id}")
    expect(marker).to_be_visible()  # the new conversation is answering
    expect(marker).to_be_hidden(timeout=20_000)  # and then it is not
    expect(other.locator(f"#nav-title-{public_id}")).to_have_text("Live Title")
    assert errors == []
    other.close()


def test_rename_inline_and_delete_with_confirmation_reach_other_tabs(
    page: Page, proxied_site: TcpProxy, fake_server: FakeUpstream
) -> None:
    base = proxied_site.base
    fake_server.enqueue(Stream(["Hi."]))
    sign_up(page, base)
    ask(page, base, "rename me")
    other = page.context.new_page()
    other.goto(page.url)

    # Esc cancels.
    page.click("#conversation-menu summary")  # rename lives in the conversation's menu
    page.click("#rename-button")
    page.fill("#rename-input", "Not this")
    page.press("#rename-input", "Escape")
    expect(page.locator("#rename-form")).to_be_hidden()
    expect(page.locator("#conversation-title")).not_to_have_text("Not this")
    # Empty is refused with a message; Enter saves.
    page.click("#conversation-menu summary")
    page.click("#rename-button")
    page.fill("#rename-input", "   ")
    page.press("#rename-input", "Enter")
    expect(page.locator("#rename-form [role=alert]")).to_contain_text("cannot be empty")
    page.fill("#rename-input", "Renamed by me")
    page.press("#rename-input", "Enter")
    expect(page.locator("#conversation-title")).to_have_text("Renamed by me")
    expect(other.locator("#conversation-title")).to_have_text("Renamed by me")  # live

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#conversation-menu summary")
    page.click("#conversation-menu >> text=Delete")
    page.wait_for_url(f"{base}/")
    expect(other.locator(".gone-notice")).to_contain_text("This conversation was deleted.")
    # The other tab keeps nothing that still acts on it: no menu, no picker, no composer.
    expect(other.locator("#conversation-menu")).to_have_count(0)
    expect(other.locator("#model-select")).to_have_count(0)
    expect(other.locator("#composer-input")).to_have_count(0)
    expect(other.locator("#conversation-title")).to_have_text("Deleted conversation")
    expect(other.locator('#sidebar a[aria-current="page"]')).to_have_count(0)
    expect(page.locator("#sidebar-list .nav-item")).to_have_count(0)  # nothing left in the list
    other.close()


def test_forms_sent_before_htmx_takes_them_over_still_work_and_leak_nothing(
    page: Page, proxied_site: TcpProxy, fake_server: FakeUpstream
) -> None:
    # htmx takes over swapped-in content only after its settle delay (20 ms); Enter before
    # that submits the form natively. It must still rename, not reload the page unchanged.
    base = proxied_site.base
    fake_server.enqueue(Stream(["Hi."]))
    sign_up(page, base)
    ask(page, base, "rename me fast")
    page.evaluate(
        """() => new MutationObserver((changes, observer) => {
            const form = document.querySelector("#rename-form:not([hidden])");
            if (!form) return;
            observer.disconnect();
            form.querySelector("#rename-input").value = "Renamed at once";
            form.requestSubmit();  // in this microtask: before htmx has processed the form
        }).observe(document.body, {childList: true, subtree: true})"""
    )
    page.click("#conversation-menu summary")
    page.click("#rename-button")
    page.fill("#rename-input", "")
    page.press("#rename-input", "Enter")  # refused: the form comes back with its error
    expect(page.locator("#conversation-title")).to_have_text("Renamed at once")
    expect(page.locator("#rename-form")).to_be_hidden()

    # A form without an action of its own (the composer, a report) waits for htmx instead:
    # natively it would GET this page with the typed text in the address (and history).
    # The rename above may have loaded a whole new page: its scripts run by DOMContentLoaded.
    page.wait_for_load_state("domcontentloaded")
    url = page.url
    page.evaluate(
        """() => {
            const form = document.createElement("form");
            form.setAttribute("ws-send", "");
            form.innerHTML = '<input name="message" value="a private question">';
            document.body.append(form);
            form.requestSubmit();
        }"""
    )
    page.wait_for_timeout(500)
    assert page.url == url
    expect(page.locator("#conversation-title")).to_have_text("Renamed at once")
