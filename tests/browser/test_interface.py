"""The chat as a person meets it, in headless Chromium: a phone first, quiet controls, the
home page as the empty chat, what each answer offers, folding, honest states, and no
serious accessibility violation (axe-core) or CSP violation anywhere."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import ARTIFACTS, ask, sign_up
from tests.fake_openai import FakeUpstream, Stream
from tests.live import free_port, live_site

ANSWER = '#messages [data-role="assistant"]'
DONE = f'{ANSWER}[data-status="complete"]'
AXE = Path(__file__).resolve().parent.parent / "vendor" / "axe-4.14.1.min.js"
SLOW = [f"w{i} " for i in range(400)]
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


def context_for(browser: Browser, width: int, height: int, **extra: Any) -> BrowserContext:
    return browser.new_context(viewport={"width": width, "height": height}, **extra)


def watched(context: BrowserContext) -> Page:
    """A page that records console errors (a CSP violation is one) and page errors."""
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


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"interface-{name}.png"))


def no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url


def small_targets(page: Page) -> list[str]:
    """Visible controls smaller than 44 px in either direction (a finger's size)."""
    found: list[str] = page.evaluate(
        """() => Array.from(document.querySelectorAll(
            'button, a[href], summary, select, input:not([type=hidden]), textarea'
        )).filter(el => {
            const box = el.getBoundingClientRect();
            const style = getComputedStyle(el);
            if (!box.width || !box.height || style.visibility === 'hidden') return false;
            if (el.closest('.markdown, .visually-hidden, [hidden]')) return false;
            if (el.matches('.message-text a, p a, li > a + time')) return false;  // links in text
            return box.height < 43.5 || box.width < 43.5;
        }).map(el => el.outerHTML.slice(0, 120))"""
    )
    return found


def share_of_height(page: Page, selector: str) -> float:
    return float(
        page.evaluate(
            f"document.querySelector('{selector}').getBoundingClientRect().height"
            " / window.innerHeight"
        )
    )


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = context_for(browser, 360, 740, has_touch=True, is_mobile=True)
    page = watched(context)
    yield page
    context.close()


def test_on_a_phone_the_messages_get_the_screen_and_every_control_fits_a_finger(
    phone: Page, site: str, fake_server: FakeUpstream
) -> None:
    page = phone
    sign_up(page, site)
    no_sideways_scroll(page)
    assert small_targets(page) == [], small_targets(page)
    fake_server.enqueue(Stream(["# A heading\n\n", "Some words.\n\n", "More words."]))
    ask(page, site, "hello from a phone")
    assert share_of_height(page, "#messages") >= 0.6  # idle
    no_sideways_scroll(page)
    assert small_targets(page) == [], small_targets(page)
    # The header keeps one row: actions are folded into its menu.
    header = page.locator(".chat-header").bounding_box()
    assert header is not None
    assert header["height"] <= 60
    shot(page, "phone-idle")
    fake_server.enqueue(Stream(SLOW, interval=0.02))
    page.fill("#composer-input", "and now a long one")
    page.press("#composer-input", "Enter")
    expect(page.locator(f'{ANSWER}[data-status="streaming"]')).to_be_visible()
    expect(page.locator(f"{ANSWER} .message-text").last).to_contain_text("w20 ")
    assert share_of_height(page, "#messages") >= 0.6  # while streaming
    no_sideways_scroll(page)
    shot(page, "phone-streaming")
    page.click("#stop-button")
    expect(page.locator(f'{ANSWER}[data-status="stopped"]')).to_be_visible()
    # The drawer and the menus open within the screen, and fit fingers too.
    page.click("#sidebar-toggle")
    expect(page.locator("#sidebar")).to_be_visible()
    assert small_targets(page) == []
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).to_be_hidden()
    page.click("#conversation-menu summary")
    panel = page.locator("#conversation-menu .menu-panel").bounding_box()
    assert panel is not None
    assert panel["x"] >= 0
    assert panel["x"] + panel["width"] <= 360
    page.set_viewport_size({"width": 320, "height": 640})
    no_sideways_scroll(page)
    page.goto(f"{site}/")
    no_sideways_scroll(page)
    assert page.problems == []  # type: ignore[attr-defined]


def test_controls_are_named_icons_and_the_header_does_not_shift(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(["An answer."]))
    sign_up(page, site)
    ask(page, site, "icons please")
    unnamed = page.evaluate(
        """() => Array.from(document.querySelectorAll('button, summary, a[href]'))
            .filter(el => !(el.getAttribute('aria-label') || el.textContent.trim()))
            .map(el => el.outerHTML.slice(0, 100))"""
    )
    assert unnamed == []
    untitled = page.evaluate(
        """() => Array.from(document.querySelectorAll('.icon-button'))
            .filter(el => !el.title).map(el => el.outerHTML.slice(0, 100))"""
    )
    assert untitled == []  # a tooltip on every icon
    assert not EMOJI.search(page.locator("body").inner_text())  # no emoji as icons
    # Seven text buttons used to sit in the header; now the rare ones are in a menu.
    assert page.locator(".chat-header > button:visible, .chat-header > a:visible").count() <= 2
    # Pinning from the menu does not move anything in the header.
    before = page.evaluate(
        "Array.from(document.querySelectorAll('.chat-header summary, #model-select'))"
        ".map(el => Math.round(el.getBoundingClientRect().x))"
    )
    page.click("#conversation-menu summary")
    page.click("#conversation-menu >> text=Pin")
    page.click("#conversation-menu summary")
    expect(page.locator("#conversation-menu")).to_contain_text("Unpin")
    after = page.evaluate(
        "Array.from(document.querySelectorAll('.chat-header summary, #model-select'))"
        ".map(el => Math.round(el.getBoundingClientRect().x))"
    )
    assert after == before
    expect(page.locator("#sidebar .pin-mark")).to_have_count(1)
    assert page.problems == []  # type: ignore[attr-defined]


def test_the_sidebar_item_menu_renames_pins_archives_and_deletes(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(["First."]), Stream(["Second."]))
    sign_up(page, site)
    ask(page, site, "the first conversation")
    ask(page, site, "the second conversation")
    # The one not being read (titles come from the model: "Hello, world!" for both).
    first = page.locator("#sidebar .nav-item:not(:has(a[aria-current]))")
    first.locator("summary").click()
    first.locator("text=Rename").click()
    dialog = page.locator("#rename-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input[name=title]").fill("Renamed from the sidebar")
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()
    renamed = page.locator("#sidebar .nav-item", has_text="Renamed from the sidebar")
    expect(renamed).to_have_count(1)
    # The conversation being read stays on screen: the other one was renamed.
    expect(page.locator("#conversation-title")).not_to_have_text("Renamed from the sidebar")
    renamed.locator("summary").click()
    renamed.locator("text=Pin").click()
    expect(page.locator("#sidebar .nav-item").first).to_contain_text("Renamed from the sidebar")
    page.locator("#sidebar .nav-item").first.locator("summary").click()
    page.locator("#sidebar .nav-item").first.locator("text=Archive").click()
    expect(page.locator("#sidebar .nav-item", has_text="Renamed")).to_have_count(0)
    page.once("dialog", lambda d: d.accept())
    current = page.locator("#sidebar .nav-item:has(a[aria-current])")
    current.locator("summary").click()
    current.locator("text=Delete").click()
    page.wait_for_url(f"{site}/")
    expect(page.locator("#sidebar .nav-item")).to_have_count(0)
    assert page.problems == []  # type: ignore[attr-defined]


def test_the_home_page_is_the_empty_chat_and_the_first_answer_streams_in_place(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    sign_up(page, site)
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator("#new-message")).to_be_focused()
    expect(page.locator(".suggestion")).to_have_count(4)
    page.evaluate("window.notReloaded = true")
    fake_server.enqueue(Stream(SLOW[:80], interval=0.03))
    page.fill("#new-message", "stream here")
    page.press("#new-message", "Enter")
    # The first words arrive while the answer streams, on the same page (no full load).
    expect(page.locator(f"{ANSWER} .message-text")).to_contain_text("w5 ")
    expect(page.locator(f'{ANSWER}[data-status="streaming"]')).to_have_count(1)
    assert page.evaluate("window.notReloaded") is True
    assert re.search(r"/conversations/[0-9a-f-]{36}/$", page.evaluate("location.href"))
    expect(page.locator(DONE)).to_contain_text("w79")
    expect(page.locator("#composer-input")).to_be_focused()
    # A suggestion starts a conversation too.
    page.goto(f"{site}/")
    fake_server.enqueue(Stream(["A suggested answer."]))
    page.locator(".suggestion").first.click()
    expect(page.locator(DONE)).to_contain_text("A suggested answer.")
    assert page.problems == []  # type: ignore[attr-defined]


def test_an_answer_is_copied_as_markdown_or_as_plain_text(
    browser: Browser, site: str, fake_server: FakeUpstream
) -> None:
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page = watched(context)
    fake_server.enqueue(Stream(["Some **bold** words.\n\n", "- one\n- two"]))
    sign_up(page, site)
    ask(page, site, "copy me")
    answer = page.locator(DONE)
    answer.hover()
    answer.locator(".copy-menu summary").click()
    answer.locator("[data-copy=markdown]").click()
    expect(page.locator("#composer-feedback")).to_have_text("Copied as Markdown.")
    assert page.evaluate("navigator.clipboard.readText()") == "Some **bold** words.\n\n- one\n- two"
    answer.locator(".copy-menu summary").click()
    answer.locator("[data-copy=text]").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "**" not in copied
    assert "Some bold words." in copied
    assert "one" in copied
    assert page.problems == []  # type: ignore[attr-defined]
    context.close()


def test_regenerate_with_another_model_and_edit_in_place(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(["By the usual model."]), Stream(["By the mini model."]))
    sign_up(page, site)
    ask(page, site, "which model?")
    page.locator(DONE).hover()
    page.click(f"{DONE} [data-action=regenerate-with]")
    dialog = page.locator("#regenerate-dialog")
    dialog.locator("select").select_option("fake-model-mini")
    dialog.locator("button[type=submit]").click()
    expect(page.locator(f"{DONE} .message-text")).to_have_text("By the mini model.")
    expect(page.locator(f"{DONE} .message-model")).to_have_text("fake-model-mini")
    expect(page.locator(f"{ANSWER} .version-count")).to_have_text("2/2")
    assert fake_server.completions()[-1].body["model"] == "fake-model-mini"
    expect(page.locator("#model-select")).to_have_value("fake-model")  # the conversation's own
    # Edit in place: the text becomes the editor where it stood; Esc brings it back.
    user = page.locator('#messages [data-role="user"]')
    user.hover()
    user.locator("[data-action=edit]").click()
    editor = user.locator(".edit-form textarea")
    expect(editor).to_be_focused()
    expect(user.locator(".message-body")).to_be_hidden()  # in place, not a second box
    editor.fill("something else")
    editor.press("Escape")
    expect(user.locator(".message-body")).to_be_visible()
    expect(user.locator(".message-text")).to_have_text("which model?")
    user.locator("[data-action=edit]").click()
    expect(editor).to_have_value("which model?")  # the original, not what was typed
    assert page.problems == []  # type: ignore[attr-defined]


def test_feedback_is_saved_shown_again_and_counted_per_model_for_the_operator(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(["A helpful answer."]))
    sign_up(page, site)  # the first account: it may open the overview
    ask(page, site, "rate me")
    answer = page.locator(DONE)
    answer.hover()
    answer.locator("button[aria-label=Helpful]").click()
    expect(answer.locator("button[aria-label=Helpful]")).to_have_attribute("aria-pressed", "true")
    comment = answer.locator(".rating-comment textarea")
    expect(comment).to_be_visible()  # a fresh verdict asks for a comment
    comment.fill("Clear and short.")
    answer.locator(".rating-form button[type=submit]").click()
    expect(answer.locator(".rating-comment summary")).to_have_text("Your comment")
    page.reload()
    answer = page.locator(DONE)
    expect(answer.locator("button[aria-label=Helpful]")).to_have_attribute("aria-pressed", "true")
    expect(answer.locator(".rating-comment textarea")).to_have_value("Clear and short.")
    page.goto(f"{site}/admin/overview/")
    feedback = page.locator("#feedback-per-model")
    expect(feedback).to_contain_text("fake-model")
    expect(feedback).to_contain_text("1")
    assert page.problems == []  # type: ignore[attr-defined]


def test_sections_and_long_code_fold_while_the_answer_streams(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    code = "```python\n" + "".join(f"x{i} = {i}\n" for i in range(30)) + "```\n\n"
    pieces = ["# First\n\n", "Alpha text.\n\n", "# Second\n\n", code]
    pieces += [f"Tail word {i}.\n\n" for i in range(60)]
    fake_server.enqueue(Stream(["warm up"]), Stream(pieces, interval=0.05))
    sign_up(page, site)
    ask(page, site, "warm up")
    page.fill("#composer-input", "fold me")
    page.press("#composer-input", "Enter")
    streaming = page.locator(f'{ANSWER}[data-status="streaming"]')
    expect(streaming.locator("h1", has_text="Second")).to_be_visible()
    first = streaming.locator("h1", has_text="First").locator(".fold-toggle")
    first.click()  # by mouse
    expect(first).to_have_attribute("aria-expanded", "false")
    expect(streaming.locator("p", has_text="Alpha text.")).to_be_hidden()
    expect(streaming.locator("h1", has_text="Second")).to_be_visible()  # its own section
    expect(streaming).to_contain_text("Tail word 10.")  # frames went on arriving
    expect(streaming.locator("p", has_text="Alpha text.")).to_be_hidden()  # still folded
    # The second section holds a long code block, folded on its own by keyboard.
    code_toggle = page.locator(f"{ANSWER} .code-block .fold-toggle").last
    code_toggle.focus()
    page.keyboard.press("Enter")
    expect(page.locator(f"{ANSWER} .code-block").last).to_have_class(re.compile("is-folded"))
    finished = page.locator(DONE).last
    expect(finished).to_contain_text("Tail word 59.")
    # The final frame replaced the whole answer; what the reader folded stays folded.
    expect(finished.locator("p", has_text="Alpha text.")).to_be_hidden()
    expect(finished.locator(".code-block").last).to_have_class(re.compile("is-folded"))
    toggle = finished.locator("h1", has_text="First").locator(".fold-toggle")
    toggle.focus()
    page.keyboard.press("Space")
    expect(finished.locator("p", has_text="Alpha text.")).to_be_visible()
    assert page.problems == []  # type: ignore[attr-defined]


def test_states_are_honest(page: Page, site: str, fake_server: FakeUpstream) -> None:
    fake_server.enqueue(Stream(["No usage reported."], report_usage=False))
    sign_up(page, site)
    ask(page, site, "count me")
    usage = page.locator(f"{DONE} .usage")
    expect(usage).to_contain_text("≈")  # an estimate, marked
    assert " 0 " not in f" {usage.inner_text()} "
    # Enter while an answer streams says so, and keeps the draft.
    fake_server.enqueue(Stream(SLOW, interval=0.02))
    page.fill("#composer-input", "first")
    page.press("#composer-input", "Enter")
    expect(page.locator(f'{ANSWER}[data-status="streaming"]')).to_be_visible()
    page.fill("#composer-input", "my next question")
    page.press("#composer-input", "Enter")
    expect(page.locator("#composer-feedback")).to_contain_text("still being written")
    expect(page.locator("#composer-input")).to_have_value("my next question")
    page.click("#stop-button")
    expect(page.locator(f'{ANSWER}[data-status="stopped"]')).to_be_visible()
    assert page.problems == []  # type: ignore[attr-defined]


def test_a_model_service_that_cannot_be_reached_is_said_before_anyone_types(
    browser: Browser, tmp_path: Path
) -> None:
    env = {
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        "OPENAI_API_KEY": "sk-unreachable",
        "OPENAI_MODEL": "fake-model",
        "CHATSITE_RETRY_BUDGET": "0",
    }
    with live_site(tmp_path, env) as base:
        context = browser.new_context()
        page = context.new_page()
        sign_up(page, base)
        expect(page.locator(".service-problem")).to_contain_text(
            "Could not reach the model service"
        )
        page.fill("#new-message", "hello?")
        page.press("#new-message", "Enter")
        failed = page.locator(f'{ANSWER}[data-status="error"]')
        expect(failed).to_contain_text("Could not reach the model service.")
        expect(failed).not_to_contain_text("lost")
        shot(page, "unreachable")
        context.close()


def test_editing_boxes_and_redraws_break_no_csp_rule(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    """htmx used to copy a resized edit box's style attribute across a redraw: four
    "Applying inline style violates style-src" errors."""
    fake_server.enqueue(Stream(["One."]), Stream(["Two."]))
    sign_up(page, site)
    ask(page, site, "resize me")
    user = page.locator('#messages [data-role="user"]')
    user.hover()
    user.locator("[data-action=edit]").click()
    user.locator(".edit-form textarea").evaluate("el => { el.style.height = '240px'; }")
    user.locator("[data-action=edit-cancel]").click()
    page.locator(DONE).hover()
    page.click(f"{DONE} [data-action=regenerate]")
    expect(page.locator(f"{DONE} .message-text")).to_have_text("Two.")
    assert page.problems == []  # type: ignore[attr-defined]


# --- accessibility, measured ---------------------------------------------------------------


def axe_violations(page: Page, shot_name: str = "") -> list[dict[str, Any]]:
    if shot_name:
        shot(page, shot_name)  # what was measured, to look at
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate(
        """async () => {
            const found = await axe.run(document);
            return {
                checked: found.passes.length + found.violations.length,
                serious: found.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => ({id: v.id, impact: v.impact,
                                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})),
            };
        }"""
    )
    assert result["checked"] > 20, result  # axe really looked at the page
    return list(result["serious"])


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [360, 1280])
def test_no_serious_accessibility_violations_on_any_page(
    browser: Browser,
    site: str,
    fake_server: FakeUpstream,
    scheme: Literal["light", "dark"],
    width: int,
) -> None:
    # bypass_csp: only so that axe-core itself can be injected into the page under test.
    context = browser.new_context(
        viewport={"width": width, "height": 800}, color_scheme=scheme, bypass_csp=True
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    found: dict[str, Any] = {}
    page.goto(f"{site}/accounts/signup/")
    found["sign-up"] = axe_violations(page, f"sign-up-{width}-{scheme}")
    page.goto(f"{site}/accounts/login/")
    found["sign-in"] = axe_violations(page, f"sign-in-{width}-{scheme}")
    sign_up(page, site)
    found["home"] = axe_violations(page, f"home-{width}-{scheme}")
    fake_server.enqueue(Stream(["# Title\n\n", "Text with `code`.\n\n", "- a\n- b"]))
    ask(page, site, "check me")
    found["conversation"] = axe_violations(page, f"conversation-{width}-{scheme}")
    fake_server.enqueue(Stream(SLOW, interval=0.02))
    page.fill("#composer-input", "stream")
    page.press("#composer-input", "Enter")
    expect(page.locator(f'{ANSWER}[data-status="streaming"]')).to_be_visible()
    found["conversation, streaming"] = axe_violations(
        page, f"conversation-streaming-{width}-{scheme}"
    )
    page.click("#stop-button")
    page.goto(f"{site}/search/?q=check")
    found["search"] = axe_violations(page, f"search-{width}-{scheme}")
    page.goto(f"{site}/settings/")
    found["settings"] = axe_violations(page, f"settings-{width}-{scheme}")
    context.close()
    serious = {name: violations for name, violations in found.items() if violations}
    assert serious == {}, json.dumps(serious, indent=1)
