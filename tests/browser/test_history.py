"""In the browser: search as you type, versions (regenerate, flip, edit), export and the
model picker."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ask, sign_up
from tests.fake_openai import FakeUpstream, Stream

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'


def test_search_as_you_type_finds_message_text_and_opens_the_conversation(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(
        Stream(["Bake at 220 degrees for a crisp <b>sourdough</b> crust."]),
        Stream(["Tides follow the moon."]),
    )
    sign_up(page, site)
    ask(page, site, "bread tips")
    bread = page.url
    ask(page, site, "why tides")
    page.fill("#search-input", "sourd")  # a prefix, as typed
    results = page.locator("#search-results .search-result")
    expect(results).to_have_count(1)
    expect(results.locator("mark")).to_have_text("sourdough")
    expect(page.locator("#sidebar-list")).to_be_hidden()  # results take the list's place
    assert page.locator("#search-results b").count() == 0  # snippet is text, not HTML
    results.first.locator("a").click()
    page.wait_for_url(f"{bread}#message-*")
    page.fill("#search-input", "")
    page.locator("#search-input").dispatch_event("search")
    expect(page.locator("#sidebar-list")).to_be_visible()
    assert page.problems == []  # type: ignore[attr-defined]


def test_regenerate_flip_versions_and_edit_a_message(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(
        Stream(["First answer."]), Stream(["Second answer."]), Stream(["Answer to the edit."])
    )
    sign_up(page, site)
    ask(page, site, "original question")
    other = page.context.new_page()
    other.goto(page.url)

    page.click(f"{ANSWER} [data-action=regenerate]")
    expect(page.locator(f"{ANSWER} .message-text")).to_have_text("Second answer.")
    expect(page.locator(f'{ANSWER}[data-status="complete"] .version-count')).to_have_text("2/2")
    page.click(f"{ANSWER} [data-action=version-previous]")
    expect(page.locator(f"{ANSWER} .message-text")).to_have_text("First answer.")
    expect(page.locator(f"{ANSWER} .version-count")).to_have_text("1/2")
    expect(other.locator(f"{ANSWER} .message-text")).to_have_text("First answer.")  # live
    page.reload()  # the path shown is remembered
    expect(page.locator(f"{ANSWER} .message-text")).to_have_text("First answer.")

    page.click('#messages [data-role="user"] [data-action=edit]')
    editor = page.locator('#messages [data-role="user"] .edit-form textarea')
    expect(editor).to_be_focused()
    editor.fill("better question")
    editor.press("Enter")
    expect(page.locator(f'{ANSWER}[data-status="complete"] .message-text')).to_have_text(
        "Answer to the edit."
    )
    expect(page.locator('#messages [data-role="user"] .version-count')).to_have_text("2/2")
    assert fake_server.completions()[-1].body["messages"] == [
        {"role": "user", "content": "better question"}
    ]
    other.close()
    assert page.problems == []  # type: ignore[attr-defined]


def test_export_downloads_and_the_model_picker(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(["Exported words."]), Stream(["From the mini model."]))
    sign_up(page, site)
    ask(page, site, "export me")
    with page.expect_download() as download:
        page.click("#conversation-menu summary")  # the rare actions live in a menu
        page.click("text=Export JSON")
    document = json.loads(open(download.value.path(), encoding="utf-8").read())  # noqa: SIM115
    assert document["format"] == "chatsite"
    assert document["conversations"][0]["messages"][1]["content"] == "Exported words."
    with page.expect_download() as markdown:
        page.click("#conversation-menu summary")
        page.click("text=Export Markdown")
    assert "**Assistant** (fake-model)" in open(markdown.value.path(), encoding="utf-8").read()  # noqa: SIM115

    page.select_option("#model-select", "fake-model-mini")
    expect(page.locator("#configure-form [role=status]")).to_have_text("Saved.")
    page.fill("#composer-input", "again")
    page.press("#composer-input", "Enter")
    last = page.locator(f'{ANSWER}[data-status="complete"]').last
    expect(last.locator(".message-text")).to_have_text("From the mini model.")
    expect(last.locator(".message-model")).to_have_text("fake-model-mini")
    assert fake_server.completions()[-1].body["model"] == "fake-model-mini"
    assert page.problems == []  # type: ignore[attr-defined]
