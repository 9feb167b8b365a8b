"""The growing block in a real page: htmx applies each frame (settled text inserted before
a live element, the old live element deleted) and the reader never sees raw markdown,
doubled text or a stray live element, whatever the answer's shape."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from bench.render_cost import answer_text
from tests.browser.conftest import ARTIFACTS, sign_up
from tests.fake_openai import FakeUpstream, Stream

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'
RAW_MARKER = re.compile(r"\*\*|\*\w|`|~~|\]\(")

# After every websocket message: the answer's text and how many live elements it holds.
RECORD = """() => {
  window.__seen = [];
  document.body.addEventListener("htmx:wsAfterMessage", () => {
    const answers = document.querySelectorAll('#messages [data-role="assistant"]');
    const answer = answers[answers.length - 1];
    if (!answer) return;
    const text = answer.querySelector(".message-text");
    window.__seen.push({
      status: answer.dataset.status,
      text: text ? text.innerText : "",
      live: answer.querySelectorAll('[id*="-live-"]').length,
    });
  });
}"""


def squeezed(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("shape", ["paragraph", "list", "table", "code", "broken"])
def test_every_frame_of_a_growing_block_reads_cleanly(
    page: Page, site: str, fake_server: FakeUpstream, shape: str
) -> None:
    text = answer_text(2500, shape, whole=True)
    pieces = [text[i : i + 9] for i in range(0, len(text), 9)]
    fake_server.enqueue(Stream(pieces, interval=0.004))
    sign_up(page, site)
    page.evaluate(RECORD)
    page.fill("#new-message", f"a {shape} please")
    page.press("#new-message", "Enter")
    # Mid-answer, as a reader sees it (looked at, not compared: test-artifacts/).
    page.wait_for_function("() => window.__seen.length > 8")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"growing-{shape}-mid-answer.png"))
    done = page.locator(f'{ANSWER}[data-status="complete"]')
    expect(done).to_be_visible(timeout=30_000)
    final = squeezed(done.locator(".message-text").inner_text())
    seen = page.evaluate("window.__seen")
    streaming = [s for s in seen if s["status"] == "streaming" and s["text"].strip()]
    assert len(streaming) > 10, len(streaming)  # many frames, each checked
    for sample in streaming:
        assert not RAW_MARKER.search(sample["text"]), sample["text"][-200:]
        assert final.startswith(squeezed(sample["text"])), sample["text"][-200:]
        assert sample["live"] <= 1
    assert page.problems == []  # type: ignore[attr-defined]
