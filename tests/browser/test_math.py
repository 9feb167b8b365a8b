"""Formulas in an answer, as Chromium shows the server's MathML (no script, no inline style)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ARTIFACTS, sign_up
from tests.fake_openai import FakeUpstream, Stream

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'
MATH_ANSWER = (
    "Euler's identity $e^{i\\pi} + 1 = 0$ links five constants, and the legs of a right "
    "triangle satisfy \\(a^2 + b^2 = c^2\\). The tickets cost $5 and $10.\n"
    "The Gaussian integral:\n"
    "$$\n\\int_{-\\infty}^{\\infty} e^{-x^2}\\,dx = \\sqrt{\\pi}\n$$\n"
    "A long series, wider than a phone:\n"
    "\\[\n\\sum_{n=1}^{\\infty} \\frac{1}{n^2} = 1 + \\frac{1}{4} + \\frac{1}{9} + \\frac{1}{16}"
    " + \\frac{1}{25} + \\frac{1}{36} + \\frac{1}{49} + \\frac{1}{64} + \\cdots"
    " = \\frac{\\pi^2}{6}\n\\]\n"
    "And a matrix:\n\n$$\n\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix}"
    "^{-1} = \\frac{1}{ad - bc}\\begin{pmatrix} d & -b \\\\ -c & a \\end{pmatrix}\n$$\n\n"
    "One that does not parse stays its source: $\\left( x$.\n"
)


def test_formulas_render_as_mathml_inline_and_on_their_own_lines(
    page: Page, browser: Browser, site: str, fake_server: FakeUpstream
) -> None:
    # Streamed a few characters at a time: formulas open and close across frames.
    pieces = [MATH_ANSWER[i : i + 4] for i in range(0, len(MATH_ANSWER), 4)]
    fake_server.enqueue(Stream(pieces, interval=0.005))
    sign_up(page, site)
    page.fill("#new-message", "some formulas please")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{site}/conversations/*/")
    answer = page.locator(f"{ANSWER}[data-status='complete'] .message-text")
    expect(answer).to_be_visible()

    inline = answer.locator("p math:not([display='block'])")
    expect(inline).to_have_count(2)
    display = answer.locator(".math-display > math[display='block']")
    expect(display).to_have_count(3)
    # Laid out by Chromium's MathML (display: math), not left as unknown inline elements.
    assert display.first.evaluate("m => getComputedStyle(m).display") == "block math"
    # ("inline math" reads back as "math".)
    assert inline.first.evaluate("m => getComputedStyle(m).display") == "math"
    box = display.first.bounding_box()
    assert box is not None
    assert box["height"] > 24
    fraction = answer.locator("mfrac").first.bounding_box()
    assert fraction is not None
    assert fraction["height"] > 20
    expect(answer).to_contain_text("The tickets cost $5 and $10.")  # prices, not math
    expect(answer.locator("code.math-source")).to_have_text("$\\left( x$")
    assert "$$" not in answer.inner_text()
    assert "\\[" not in answer.inner_text()
    assert answer.locator("[style]").count() == 0
    assert page.problems == []  # type: ignore[attr-defined]  # no CSP violation, no error

    # Look at it: phone and desktop, light and dark.
    ARTIFACTS.mkdir(exist_ok=True)
    schemes: tuple[Literal["light", "dark"], ...] = ("light", "dark")
    for width in (360, 1280):
        for scheme in schemes:
            context = browser.new_context(
                viewport={"width": width, "height": 900}, color_scheme=scheme
            )
            cookies: list[Any] = list(page.context.cookies())
            context.add_cookies(cookies)
            look = context.new_page()
            look.goto(page.url)
            text = look.locator(f"{ANSWER} .message-text")
            expect(text.locator("math")).to_have_count(5)
            wide = text.locator(".math-display").nth(1)
            if width == 360:
                # The series is wider than a phone: its own block scrolls, not the page.
                assert wide.evaluate("d => d.scrollWidth > d.clientWidth")
                assert look.evaluate(
                    "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
                )
            text.locator(".math-display").first.scroll_into_view_if_needed()
            look.screenshot(path=str(ARTIFACTS / f"math-{width}-{scheme}.png"))
            context.close()


def test_a_display_formula_shows_its_source_while_it_streams_then_mathml(
    page: Page, site: str, fake_server: FakeUpstream
) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    lines = [f"a_{{{i}}} x^{{{i}}} + " for i in range(40)]
    pieces = ["The polynomial is\n", "$$\n", *lines, "a_{40}\n", "$$\n", "and that is all."]
    fake_server.enqueue(Stream(pieces, interval=0.06))
    sign_up(page, site)
    page.fill("#new-message", "a polynomial")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{site}/conversations/*/")
    text = page.locator(f"{ANSWER} .message-text")
    pending = text.locator(".math-pending")
    expect(pending).to_contain_text("a_{5} x^{5}")  # the source, growing, as text
    assert text.locator("math").count() == 0
    assert "$$" not in text.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "math-streaming-360-light.png"))
    expect(page.locator(f"{ANSWER}[data-status='complete']")).to_be_visible()
    expect(pending).to_have_count(0)
    expect(text.locator(".math-display > math")).to_have_count(1)
    expect(text).to_contain_text("and that is all.")
    assert page.problems == []  # type: ignore[attr-defined]
