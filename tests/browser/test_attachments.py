"""Attaching files in Chromium: the picker uploads, a chip shows, the message goes with its
files, the answer streams, and the sent message keeps its chips after a reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from tests import attachment_files as files
from tests.browser.conftest import API_KEY, ARTIFACTS, SETTLED, sign_up
from tests.browser.test_sharing import DONE, SCHEMES, create_link, open_share_dialog, watched
from tests.fake_openai import FakeUpstream, Stream
from tests.live import live_site

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'
SENT_CHIPS = '#messages [data-role="user"] .chips--sent .chip'


@pytest.fixture
def files_site(fake_server: FakeUpstream, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    fake_server.reset()
    root = tmp_path / "files"
    env = {
        "OPENAI_BASE_URL": fake_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "fake-model",
        "CHATSITE_ATTACHMENTS_ROOT": str(root),
        "CHATSITE_VISION_MODELS": "fake-model",
    }
    with live_site(tmp_path, env) as base:
        yield base, root
    fake_server.reset()


def attach(page: Page, name: str, data: bytes, mime: str) -> None:
    payload: FilePayload = {"name": name, "mimeType": mime, "buffer": data}
    page.set_input_files("#attach-input", files=[payload])
    expect(page.locator("#composer-chips .chip", has_text=name)).to_be_visible()


def test_a_file_attached_in_the_composer_is_a_chip_goes_with_the_message_and_stays_on_it(
    page: Page, browser: Browser, files_site: tuple[str, Path], fake_server: FakeUpstream
) -> None:
    base, root = files_site
    fake_server.enqueue(
        Stream([f"part{i} " for i in range(40)], interval=0.03),
        Stream(["A small red square."]),
    )
    sign_up(page, base)

    # The paper clip is reached from the keyboard too.
    page.focus("#new-message")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "attach-input"

    # The home page's composer: a code file, then the first message.
    attach(page, "tide.py", b"def tide(hour):\n    return hour % 12\n", "text/x-python")
    chip = page.locator("#composer-chips .chip").first
    expect(chip).to_contain_text("Text")
    page.fill("#new-message", "What does this do?")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")
    # The answer streams (words arrive while it is still being written).
    expect(page.locator(f'{ANSWER}[data-status="streaming"] .message-text')).to_contain_text(
        "part1 "
    )
    expect(page.locator(f'{ANSWER}[data-status="complete"]').last).to_be_visible()
    sent = fake_server.completions()[0].body["messages"][-1]["content"]
    assert "File: tide.py" in sent
    assert "return hour % 12" in sent
    assert sent.endswith("What does this do?")
    expect(page.locator(SENT_CHIPS, has_text="tide.py")).to_be_visible()
    page.wait_for_function(SETTLED)

    # The conversation's composer: an image for a model that reads images.
    attach(page, "square.png", files.png(40, 40), "image/png")
    expect(page.locator("#composer-chips .chip", has_text="square.png")).to_contain_text("Image")
    page.fill("#composer-input", "And this?")
    page.press("#composer-input", "Enter")
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_have_count(2)
    expect(page.locator("#composer-chips .chip")).to_have_count(0)  # sent: the chips go
    parts = fake_server.completions()[1].body["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "And this?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    stored = [p for p in root.rglob("*") if p.is_file()]
    assert len(stored) == 2

    # After a reload the sent messages still carry their chips, each a download.
    page.reload()
    expect(page.locator(SENT_CHIPS)).to_have_count(2)
    href = page.locator(SENT_CHIPS, has_text="tide.py").get_attribute("href")
    assert href is not None
    download = page.request.get(base + href)
    assert download.body() == b"def tide(hour):\n    return hour % 12\n"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert not page.problems  # type: ignore[attr-defined]

    # Look at it: phone and desktop, light and dark, a chip waiting in the composer.
    ARTIFACTS.mkdir(exist_ok=True)
    url = page.url
    schemes: tuple[Literal["light", "dark"], ...] = ("light", "dark")
    for width in (360, 1280):
        for scheme in schemes:
            context = browser.new_context(
                viewport={"width": width, "height": 740}, color_scheme=scheme
            )
            cookies: list[Any] = list(page.context.cookies())
            context.add_cookies(cookies)
            look = context.new_page()
            look.goto(url)
            look.wait_for_function(SETTLED)
            if width == 360 and scheme == "light":
                attach(look, "notes.md", b"# Notes\n", "text/markdown")
            else:  # a file waiting to be sent keeps its chip on every page of its owner
                expect(look.locator("#composer-chips .chip", has_text="notes.md")).to_be_visible()
            look.fill("#composer-input", "One more question about these notes")
            look.screenshot(path=str(ARTIFACTS / f"attachments-{width}-{scheme}.png"))
            context.close()


def test_an_image_for_a_model_that_cannot_read_images_is_refused_in_the_page(
    page: Page, files_site: tuple[str, Path], fake_server: FakeUpstream
) -> None:
    base, _root = files_site
    fake_server.models = ["fake-model", "text-only"]
    sign_up(page, base)
    page.goto(f"{base}/")
    page.select_option("#new-model", "text-only")
    attach(page, "square.png", files.png(), "image/png")
    page.fill("#new-message", "What is it?")
    page.press("#new-message", "Enter")
    expect(page.locator(".feedback.error")).to_contain_text(
        "text-only cannot read images, so nothing was sent"
    )
    # The chip is still there, and nothing went upstream.
    expect(page.locator("#composer-chips .chip", has_text="square.png")).to_be_visible()
    assert fake_server.completions() == []
    # A file that is not what its name says is refused under the composer, with no chip.
    page.wait_for_function(SETTLED)  # the refusal's page is swapped in: let htmx bind it
    payload: FilePayload = {"name": "photo.png", "mimeType": "image/png", "buffer": b"text"}
    page.set_input_files("#attach-input", files=[payload])
    expect(page.locator("#attach-feedback")).to_contain_text(
        "photo.png is not a PNG, JPEG, WebP or GIF image"
    )
    expect(page.locator("#composer-chips .chip")).to_have_count(1)
    # The browser logs each refusal's 422 (htmx swaps them in on purpose); nothing else.
    problems = [p for p in page.problems if "status of 422" not in p]  # type: ignore[attr-defined]
    assert not problems


def test_a_shared_messages_files_are_chips_that_are_not_links_and_settings_shows_the_files(
    browser: Browser, files_site: tuple[str, Path], fake_server: FakeUpstream
) -> None:
    base, _root = files_site
    page = watched(browser.new_context())
    fake_server.enqueue(Stream(["Noted: sow them in March."]))
    sign_up(page, base)
    page.goto(f"{base}/")
    attach(page, "seed plan <2027>.txt", b"Tomatoes in March\n" * 400, "text/plain")
    page.fill("#new-message", "Here is my plan")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")
    expect(page.locator(DONE)).to_be_visible()
    page.wait_for_function(SETTLED)
    open_share_dialog(page)
    link = create_link(page)
    cookies: list[Any] = list(page.context.cookies())
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (360, 1280):
        for scheme in SCHEMES:
            viewport: Any = {"width": width, "height": 740}
            signed_out = browser.new_context(viewport=viewport, color_scheme=scheme)
            reader = watched(signed_out)
            reader.goto(link)
            chip = reader.locator(".shared-messages .chip--not-shared")
            expect(chip).to_contain_text("seed plan <2027>.txt")
            expect(chip).to_contain_text("not shared")
            assert reader.locator("a[href*='/attachments/']").count() == 0
            box, column = chip.bounding_box(), reader.locator(".shared-messages").bounding_box()
            assert box is not None
            assert column is not None
            assert column["x"] <= box["x"]  # a long chip stays inside the column
            assert box["x"] + box["width"] <= column["x"] + column["width"]
            assert reader.evaluate("document.documentElement.scrollWidth") <= width
            reader.screenshot(
                path=str(ARTIFACTS / f"share-page-files-{width}-{scheme}.png"), full_page=True
            )
            owner = browser.new_context(viewport=viewport, color_scheme=scheme)
            owner.add_cookies(cookies)
            settings_page = watched(owner)
            settings_page.goto(f"{base}/settings/")
            usage = settings_page.locator("[data-files-usage]")
            expect(usage).to_have_text("Files: 7.0\xa0KB of 190.7\xa0MB, 1 of 1000 files")
            assert settings_page.evaluate("document.documentElement.scrollWidth") <= width
            settings_page.locator("#data-heading").scroll_into_view_if_needed()
            settings_page.screenshot(path=str(ARTIFACTS / f"settings-files-{width}-{scheme}.png"))
            assert reader.problems == []  # type: ignore[attr-defined]
            assert settings_page.problems == []  # type: ignore[attr-defined]
            signed_out.close()
            owner.close()
