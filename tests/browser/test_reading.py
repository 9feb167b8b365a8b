"""Reading an answer: scrolling that does not fight the reader, keys, accessibility, layout."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ARTIFACTS, sign_up
from tests.fake_openai import FakeUpstream, Stream

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'
PARAGRAPHS = [f"Paragraph {i} of a long answer that fills the screen.\n\n" for i in range(300)]

AT_BOTTOM = "(() => { const m = document.getElementById('messages');"
AT_BOTTOM += " return m.scrollHeight - m.scrollTop - m.clientHeight <= 48; })()"


def start(page: Page, site: str, fake: FakeUpstream, pieces: list[str], interval: float) -> None:
    fake.enqueue(Stream(pieces, interval=interval))
    sign_up(page, site)
    page.fill("#new-message", "a long one please")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{site}/conversations/*/")


def test_scrolling_follows_only_at_the_bottom_and_the_jump_button_resumes(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    page.set_viewport_size({"width": 900, "height": 600})
    start(page, site, fake_server, PARAGRAPHS, 0.02)
    expect(page.locator(f"{ANSWER} .message-text")).to_contain_text("Paragraph 30 ")
    assert page.evaluate(AT_BOTTOM)  # following while the reader is at the bottom
    expect(page.locator("#jump-latest")).to_be_hidden()

    page.locator("#messages").evaluate("m => { m.scrollTop = 100; }")  # the reader scrolls up
    page.wait_for_timeout(100)
    positions = []
    for _ in range(8):
        page.wait_for_timeout(100)
        positions.append(page.locator("#messages").evaluate("m => m.scrollTop"))
    assert positions == [100] * 8  # the text grows but the page does not move under the eyes
    expect(page.locator("#jump-latest")).to_be_visible()

    page.click("#jump-latest")
    expect(page.locator("#jump-latest")).to_be_hidden()
    page.wait_for_timeout(400)
    assert page.evaluate(AT_BOTTOM)  # following again as text keeps arriving


def test_esc_stops_and_focus_returns_to_the_composer(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    start(page, site, fake_server, PARAGRAPHS, 0.03)
    expect(page.locator(f"{ANSWER} .message-text")).to_contain_text("Paragraph 2 ")
    page.locator("#composer-input").focus()
    page.keyboard.press("Escape")
    expect(page.locator(f'{ANSWER}[data-status="stopped"]')).to_be_visible()
    expect(page.locator("#composer-input")).to_be_focused()


def test_screen_readers_hear_finished_blocks_not_tokens(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    start(
        page,
        site,
        fake_server,
        [p[i : i + 5] for p in PARAGRAPHS[:6] for i in range(0, len(p), 5)],
        0.01,
    )
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_be_visible()
    announcer = page.locator("#announcer")
    assert announcer.get_attribute("aria-live") == "polite"
    text = announcer.inner_text()
    assert text.startswith("Paragraph ")
    assert text.endswith("screen.")  # a whole block


def test_every_control_has_an_accessible_name(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    start(page, site, fake_server, ["Short ", "answer."], 0.01)
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_be_visible()
    nameless = page.evaluate(
        """() => [...document.querySelectorAll(
                'button, a[href], textarea, input:not([type=hidden])')]
            .filter(el => el.offsetParent !== null || el.id === 'sidebar-toggle')
            .filter(el => !((el.getAttribute('aria-label') || '').trim()
                || (el.labels && [...el.labels].some(l => l.textContent.trim()))
                || el.textContent.trim()))
            .map(el => el.outerHTML)"""
    )
    assert nameless == []


def test_reduced_motion_and_dark_mode_are_respected(
    browser: Browser, site: str, fake_server: FakeUpstream
) -> None:
    context = browser.new_context(reduced_motion="reduce", color_scheme="dark")
    page = context.new_page()
    fake_server.enqueue(Stream(["late"], first_delay=3))
    sign_up(page, site)
    page.fill("#new-message", "wait for it")
    page.press("#new-message", "Enter")
    dots = page.locator(f"{ANSWER} .typing span").first
    expect(dots).to_be_visible()
    assert page.evaluate("matchMedia('(prefers-reduced-motion: reduce)').matches")
    assert dots.evaluate("el => el.getAnimations().length") == 0  # the dots hold still
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in background[background.index("(") + 1 : -1].split(",")[:3])
    assert red + green + blue < 150, background  # dark
    context.close()


@pytest.mark.parametrize(("width", "height"), [(360, 740), (1280, 800)])
def test_layout_from_phone_to_desktop(
    browser: Browser, site: str, fake_server: FakeUpstream, width: int, height: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    fake_server.enqueue(
        Stream(
            [
                "# Heading\n\n",
                "Some text with a table:\n\n",
                "| a | b |\n|---|---|\n| 1 | 2 |\n\n",
                "```python\nprint('a fairly long line of code that must scroll inside its "
                "block, not the page')\n```\n",
            ]
        )
    )
    sign_up(page, site)
    page.fill("#new-message", "show me the layout")
    page.press("#new-message", "Enter")
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_be_visible()
    # Nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    sidebar, toggle = page.locator("#sidebar"), page.locator("#sidebar-toggle")
    if width < 760:
        expect(sidebar).to_be_hidden()
        expect(toggle).to_be_visible()
        toggle.click()
        expect(sidebar).to_be_visible()
        page.keyboard.press("Escape")
        expect(sidebar).to_be_hidden()
    else:
        expect(sidebar).to_be_visible()
        expect(toggle).to_be_hidden()
    expect(sidebar.locator('a[aria-current="page"]')).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"layout-{width}.png"))
    context.close()


def test_code_blocks_copy_and_htmx_is_locked_down(
    browser: Browser, site: str, fake_server: FakeUpstream
) -> None:
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page = context.new_page()
    fake_server.enqueue(Stream(["Try:\n\n", "```bash\n", "echo 'hello'\n", "```\n"]))
    sign_up(page, site)
    page.fill("#new-message", "a command please")
    page.press("#new-message", "Enter")
    block = page.locator(f'{ANSWER}[data-status="complete"] .code-block')
    expect(block.locator(".code-lang")).to_have_text("bash")
    block.locator(".copy-button").click()
    expect(block.locator(".copy-button")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "echo 'hello'\n"
    config = page.evaluate(
        "[htmx.config.allowEval, htmx.config.allowScriptTags, htmx.config.selfRequestsOnly]"
    )
    assert config == [False, False, True]
    context.close()


def test_sidebar_sections_and_the_new_conversation_shortcut(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    start(page, site, fake_server, ["Done."], 0.01)
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_be_visible()
    expect(page.locator("#sidebar .nav-section").first).to_have_text("Today")
    page.locator("#composer-input").focus()
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(f"{site}/")
    expect(page.locator("#new-message")).to_be_focused()
