"""Formulas in answers: LaTeX to MathML on the server, through the allow-list, in frames.

Rendering (each delimiter, inline and display; what does not parse shows as code; prices
stay prices), the cleaner (MathML kept, hostile attributes and namespace tricks gone),
streaming (the splitter keeps a formula whole, the growing block shows its source until it
closes, frames stay flat), and the words of a formula where words are wanted (announcements,
search snippets, the markdown export).
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client

from bench.render_cost import MATH_SHAPES, answer_text, frames_of, measure
from conversations import fragments, selectors, services, turn_services
from conversations.formulas import MATHML_TAGS, MAX_FORMULA
from conversations.growing import GrowingBlock, render_tail
from conversations.models import Conversation
from conversations.rendering import plain_text, render, sanitize
from conversations.splitting import BlockSplitter
from tests.conftest import make_user
from tests.frames import Dom, Node, PageView, norm

ALLOWED = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
    "pre", "code", "span", "em", "strong", "del", "s", "a", "table", "thead", "tbody",
    "tr", "th", "td", "div", "button",
} | MATHML_TAGS  # fmt: skip
TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>")
ATTRIBUTE = re.compile(r'\s([^\s=>"]+)="([^"]*)"')
HARMLESS_ATTRIBUTES = {
    "class", "href", "title", "target", "rel", "start", "type", "aria-label", "display",
    "alttext", "mathvariant", "stretchy", "fence", "separator", "form", "lspace", "rspace",
    "largeop", "movablelimits", "accent", "accentunder", "minsize", "maxsize", "symmetric",
    "displaystyle", "scriptlevel", "mathsize", "linethickness", "columnalign", "rowalign",
    "columnspacing", "rowspacing", "columnlines", "rowlines", "frame", "columnspan",
    "rowspan", "width", "height", "depth", "linebreak", "voffset", "notation",
}  # fmt: skip


def assert_inert(html: str) -> None:
    """Only allowed elements, only harmless attributes: no script, img, style, href to
    anything but the web, no event handler, no mglyph or annotation-xml."""
    for name, attributes in TAG.findall(html):
        assert name.lower() in ALLOWED, html
        for attribute, value in ATTRIBUTE.findall(attributes):
            assert attribute.lower() in HARMLESS_ATTRIBUTES, html
            if attribute == "href":
                assert re.match(r"^(https?://|mailto:)", value, re.I), html
    assert sanitize(html) == html  # read again, it means the same: no mutation to come


def math_elements(html: str) -> list[str]:
    return re.findall(r"<math\b[^>]*>", html)


# --- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("Euler: $e^{i\\pi} + 1 = 0$ holds.", "inline"),
        ("Pythagoras: \\(a^2 + b^2 = c^2\\) holds.", "inline"),
        ("$$\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n$$", "block"),
        ("\\[\n\\sum_{i=1}^n i = \\frac{n(n+1)}{2}\n\\]", "block"),
        ("$$\\sqrt{2}$$", "block"),
        ("\\[ \\sqrt{2} \\]", "block"),
    ],
)
def test_each_delimiter_becomes_mathml(text: str, display: str) -> None:
    html = render(text)
    [element] = math_elements(html)
    assert f'display="{display}"' in element
    assert "<msup>" in html or "<mfrac>" in html or "<msqrt>" in html or "<munderover>" in html
    if display == "block":
        assert html.startswith('<div class="math-display"><math display="block"')
    else:
        assert html.startswith("<p>")
        assert "<math" in html
    assert "style=" not in html  # the CSP forbids inline styles
    assert_inert(html)


def test_display_math_may_follow_a_line_of_text_directly() -> None:
    html = render("The integral is\n$$\n\\int f\n$$\nand then\n\\[\nx^2\n\\]\nthe end.")
    assert html.count('<div class="math-display">') == 2
    assert "<p>The integral is</p>" in html
    assert "<p>and then</p>" in html
    assert "<p>the end.</p>" in html
    assert "$$" not in html
    assert "\\[" not in html


def test_double_dollars_inside_a_line_are_a_display_formula_in_the_paragraph() -> None:
    html = render("so $$x^2$$ is a square")
    assert html.startswith('<p>so <math display="block"')
    assert html.endswith(" is a square</p>\n")


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5 and $10.",
        "Between $5 and $10, or $20.",
        "A $ 5 $ space after the dollar.",
        "Not closed: $x^2 and more.",
        "Escaped: \\$x\\$ stays.",
        "A digit after the closing one: $x$5.",
        "Empty: $$ and nothing.",
    ],
)
def test_prices_and_lone_dollars_are_not_math(text: str) -> None:
    html = render(text)
    assert "<math" not in html
    assert "$" in plain_text(html)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("A $\\left( x$ broken one.", "$\\left( x$"),
        ("An \\(x^2^3\\) double power.", "\\(x^2^3\\)"),
        ("Unbalanced $\\begin{matrix} a$ here.", "$\\begin{matrix} a$"),
    ],
)
def test_an_inline_formula_that_does_not_parse_shows_its_source_as_code(
    text: str, code: str
) -> None:
    html = render(text)
    assert "<math" not in html
    assert f'<code class="math-source">{code}</code>' in html


def test_a_display_formula_that_does_not_parse_shows_as_a_code_block() -> None:
    html = render("$$\n\\left( \\frac{a}{b}\n$$")
    assert "<math" not in html
    assert '<span class="code-lang">latex</span>' in html
    assert '<code class="code">\\left( \\frac{a}{b}</code>' in html


def test_huge_or_deep_formulas_show_as_code_without_burning_cpu() -> None:
    long_one = "$" + "x+" * (MAX_FORMULA // 2) + "y$"
    deep = "$" + "{" * 300 + "x" + "}" * 300 + "$"
    recursive = "$" + "\\frac" * 400 + "$"
    started = time.perf_counter()
    for text in (long_one, deep, recursive):
        html = render(text)
        assert "<math" not in html
        assert '<code class="math-source">' in html
    assert time.perf_counter() - started < 1.0
    # Just under the limit, it is still a formula.
    assert math_elements(render("$" + "x+" * (MAX_FORMULA // 2 - 2) + "y$"))


def test_math_inside_code_stays_code() -> None:
    html = render("Use `$x^2$` literally:\n\n```\n$$\nx\n$$\n```")
    assert "<math" not in html
    assert "<code>$x^2$</code>" in html


# --- the cleaner ---------------------------------------------------------------------------

LATEX_PAYLOADS = [
    "$\\text{<img src=x onerror=alert(1)>}$",
    "$\\text{</mtext><img src=x onerror=alert(1)>}$",
    "$\\href{javascript:alert(1)}{click}$",
    "$\\style{background:url(https://evil.example/)}{x}$",
    "$\\color{red}{x} \\colorbox{red}{y} \\textcolor{blue}{z}$",
    "$\\hspace{9999em} x$",
    "$\\rule{100em}{100em}$",
    "$\\mathrm{&lt;script&gt;alert(1)&lt;/script&gt;}$",
    "$\\text{&#x3C;img src=x onerror=alert(1)&#x3E;}$",
    "$$\n\\text{<style>body{display:none}</style>}\n$$",
    "\\(\\operatorname{<svg onload=alert(1)>}\\)",
]


@pytest.mark.parametrize("text", LATEX_PAYLOADS)
def test_what_a_formula_says_never_becomes_live_markup(text: str) -> None:
    html = render(text)
    assert_inert(html)
    for live in ("<img", "<script", "<style", "<svg", "href=", "style="):
        assert live not in html, (live, html)
    for colour in ("mathcolor", "mathbackground"):
        assert colour not in html
    assert 'width="9999em"' not in html


@pytest.mark.parametrize(
    ("text", "attribute"),
    [
        ("${a \\above 999em b}$", "linethickness"),
        ("$\\lower{99em}{x}$", "voffset"),
        ("$\\raise{99em}{x}$", "voffset"),
        ("$\\moveleft{99em}{x}$", "lspace"),
        ("$\\hspace{-99em}x$", "width"),
    ],
)
def test_no_length_in_a_formula_can_push_it_across_the_page(text: str, attribute: str) -> None:
    html = render(text)
    assert "<math" in html
    assert f"{attribute}=" not in html  # the source stays in alttext, the length goes


def test_the_sizes_latex_uses_are_kept() -> None:
    html = render("$\\Huge x \\, \\bigg( \\binom ab \\! \\quad y$")
    for kept in (
        'mathsize="2.49em"',
        'width="0.167em"',
        'minsize="2.047em"',
        'linethickness="0"',
        'width="negativethinmathspace"',
        'width="1em"',
    ):
        assert kept in html, kept


NAMESPACE_TRICKS = [
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<math><mtext><table><mglyph><style><!--</style><img title="--&gt;&lt;/mglyph&gt;'
    '&lt;img&Tab;src=1&Tab;onerror=alert(1)&gt;">',
    '<math><annotation-xml encoding="text/html"><img src=x onerror=alert(1)></annotation-xml>',
    '<math><semantics><annotation-xml encoding="application/xhtml+xml"><style>'
    "<img src=x onerror=alert(1)></style></annotation-xml></semantics></math>",
    '<math><mtext><mglyph><svg><mtext><style><a title="</style><img src onerror=alert(1)>">',
    "<math><mi><table><tr><td><style><img src=x onerror=alert(1)></style></td></tr></table>",
    '<math><maction actiontype="statusline" onclick="alert(1)"><mi>x</mi></maction></math>',
    '<math><mi xlink:href="javascript:alert(1)" href="javascript:alert(2)">x</mi></math>',
    '<math><mo style="color:red" onmouseover="alert(1)">+</mo></math>',
    "<svg><p><style><img src=x onerror=alert(1)></style></p></svg>",
]


@pytest.mark.parametrize("html", NAMESPACE_TRICKS)
def test_the_cleaner_keeps_no_live_markup_through_mathml_namespace_tricks(html: str) -> None:
    cleaned = sanitize(html)
    assert_inert(cleaned)
    for live in ("<img", "<style", "<svg", "<mglyph", "<annotation", "onerror", "onclick"):
        assert live not in cleaned, (live, cleaned)
    assert "href" not in cleaned
    assert "style=" not in cleaned
    # And model text that says so is text: raw HTML is off in the renderer.
    assert "<math" not in render(html)


def test_the_cleaner_keeps_the_mathml_latex2mathml_makes() -> None:
    html = render(
        "$$\n\\begin{pmatrix} a & b \\\\ c & d \\end{pmatrix} \\overline{x} \\underbrace{y}_{z}"
        " \\sqrt[3]{\\frac{\\alpha}{\\beta}} \\sum_{i=1}^{n} \\left( x_i \\right) \\boxed{1}"
        " \\mathbb{R} \\displaystyle\\int \\,\\quad \\binom{n}{k}\n$$"
    )
    for tag in ("mtable", "mtr", "mtd", "mover", "munder", "mroot", "mfrac", "munderover",
                "msub", "mo", "mi", "mn", "menclose", "mspace", "mstyle"):  # fmt: skip
        assert f"<{tag}" in html, tag
    assert 'stretchy="true"' in html
    assert "\u211d" in html  # \mathbb{R}, double-struck
    assert 'notation="box"' in html
    assert_inert(html)


# --- words ---------------------------------------------------------------------------------


def test_a_formula_reads_as_its_latex_source() -> None:
    html = render("Euler: $e^{i\\pi}+1=0$ and $a<b$.\n\n$$\n\\frac{1}{2}\n$$")
    assert plain_text(html) == "Euler: e^{i\\pi}+1=0 and a<b . \\frac{1}{2}"
    assert fragments.announce_html(plain_text(html)).count("&lt;") == 1


# --- streaming: the splitter -----------------------------------------------------------


def feed_all(text: str, step: int) -> tuple[list[str], str]:
    splitter = BlockSplitter()
    finished: list[str] = []
    tail = ""
    for i in range(0, len(text), step):
        done, tail = splitter.feed(text[i : i + step])
        if done:
            finished.append(done)
    return finished, tail


STREAMED = [
    # Lines inside a formula that would start blocks elsewhere: a list, a heading, a quote.
    "Consider\n$$\nx\n- y\n# z\n> w\n1. v\n$$\nThen more.\n",
    "Consider\n\\[\na \\\\\n- b \\\\\n```\n\\]\nThen more.\n",
    "- item one\n  $$\n  x^2\n  $$\n- item two\n",
    "> quoted\n> $$\n> x\n> $$\n> still quoted\n",
    "Inline $x^2$ and \\(y\\) and $5 and $10.\n\nNext $$z$$ paragraph.\n",
    "$$\nblank line inside\n\nis not a formula\n$$\n\nafter\n",
    "$$x^2$$\nright after a one-line formula\n",
    "$$\n" + "".join(f"a_{i} +\n" for i in range(100)) + "$$\na formula of many lines\n",
    "$$\n" + "".join(f"a_{i} +\n" for i in range(500)) + "$$\ntoo long: shown as code\n",
    "Text\n$$ x\n$$ y\n\nText\n\\[ z\nmore\n$$\n",  # lines that open and never close
    "\\[x\\] and y\nmore\n\\]\n\n$$a$$ and b\nmore\n$$\n",  # closed inside the first line
]


@pytest.mark.parametrize("text", STREAMED)
@pytest.mark.parametrize("step", [1, 5, 64])
def test_finished_blocks_render_as_the_whole_answer_does(text: str, step: int) -> None:
    finished, tail = feed_all(text, step)
    assert "".join(finished) + tail == text
    # What the frames sent, block by block, is what the page shows once the answer is done.
    assert "".join(render(block) for block in [*finished, tail]) == render(text)


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_the_splitter_never_cuts_inside_an_open_display_formula(step: int) -> None:
    text = "Consider\n$$\nx\n- y\n# z\n$$\nThen more.\n\nEnd"
    finished, tail = feed_all(text, step)
    assert "".join(finished) == "Consider\n$$\nx\n- y\n# z\n$$\nThen more.\n\n"
    assert tail == "End"
    cuts = {len("".join(finished[: i + 1])) for i in range(len(finished))}
    start, end = text.index("$$"), text.index("$$\nThen") + 3
    assert not [cut for cut in cuts if start < cut < end]


def test_a_blank_line_ends_a_display_formula_as_it_does_in_latex() -> None:
    text = "$$\na\n\nb\n$$\n"
    assert "<math" not in render(text)  # blank lines are not allowed inside display math
    splitter = BlockSplitter()
    assert splitter.feed("$$\na\n\nb") == ("$$\na\n\n", "b")  # cut at the blank line


# --- streaming: the growing block --------------------------------------------------------


class _Balance(HTMLParser):
    VOID = {"br", "hr", "img", "input", "meta", "link"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def assert_well_formed(html: str) -> None:
    parser = _Balance()
    parser.feed(html)
    parser.close()
    assert parser.errors == [], (parser.errors, html)
    assert parser.stack == [], (parser.stack, html)


def count_tag(node: Node, tag: str) -> int:
    return sum(
        (child.tag == tag) + count_tag(child, tag)
        for child in node.children
        if isinstance(child, Node)
    )


FORMULAS = (
    "Euler's $e^{i\\pi} + 1 = 0$ and \\(a^2\\) for $5 and $10.\n"
    "The integral\n$$\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n$$\n"
    "and the sum\n\\[\n\\sum_{i=1}^n i\n\\]\nend.\n"
)


def test_a_formula_streamed_char_by_char_shows_well_formed_frames_and_no_raw_delimiters() -> None:
    page = PageView(1)
    mathml_at = []
    for _length, frame, _ in frames_of(FORMULAS, 1):
        assert_well_formed(frame)
        page.apply(frame)
        assert page.dom.misses == [], frame
        # A display formula's delimiters never show: its source while open, then MathML.
        shown = page.text
        for delimiter in ("$$", "\\[", "\\]"):
            assert delimiter not in shown, shown
        mathml_at.append(count_tag(page.dom.root, "math"))
    assert mathml_at[-1] == 4
    # Each formula turns into MathML as soon as it is closed (its line ended, for display).
    # (mathml_at[n] is the page after n + 1 characters: here, one past the closing.)
    for formula_end in ("0$", "a^2\\)", "{3}\n$$\n", "i\n\\]\n"):
        at = FORMULAS.index(formula_end) + len(formula_end)
        assert mathml_at[at] == mathml_at[at - len(formula_end)] + 1, formula_end
    assert "$5 and $10" in page.text


@pytest.mark.parametrize(
    ("tail", "shown"),
    [
        ("The value $x^2", "The value $x^2"),
        ("The value \\(x_1 + y_2", "The value \\(x_1 + y_2"),
        ("So **bold $a*b", "So bold $a*b"),
        ("Prices: $5 and $1", "Prices: $5 and $1"),
    ],
)
def test_an_unclosed_inline_formula_shows_provisionally_as_text(tail: str, shown: str) -> None:
    html = GrowingBlock(key="k").restart(tail)
    assert "<math" not in html
    assert norm(Dom(f'<div id="t">{html}</div>').text("t") or "") == shown
    assert_well_formed(html)


def test_an_inline_formula_becomes_mathml_once_closed() -> None:
    growing = GrowingBlock(key="k")
    growing.restart("The value $x^")
    html, _ = growing.grow("The value $x^2$ is")
    assert "<math" in html
    assert "$" not in norm(Dom(f'<div id="t">{growing.html()}</div>').text("t") or "")


def test_an_open_display_formula_shows_its_source_growing_in_small_frames() -> None:
    growing = GrowingBlock(key="k")
    text = "$$\n"
    growing.restart(text)
    sizes = []
    for i in range(400):
        text += f"a_{{{i}}} + "
        if i % 5 == 4:
            text += "\\\\\n"
        html, whole = growing.grow(text)
        assert not whole
        sizes.append(len(html))
    assert max(sizes[-50:]) < 300  # the new text, not the formula so far
    snapshot = growing.html()
    assert snapshot.startswith('<pre class="math-pending">')
    assert "a_{399}" in snapshot
    assert "<math" not in snapshot
    assert_well_formed(snapshot)
    # The closing "$$" arriving is not shown as text.
    growing.grow(text + "\n$")
    assert "$" not in (Dom(f'<div id="t">{growing.html()}</div>').text("t") or "")


@pytest.mark.parametrize("shape", MATH_SHAPES)
def test_frames_of_answers_full_of_formulas_do_not_grow_with_the_answer(shape: str) -> None:
    rows = measure(frame_chars=400, window=3, shape=shape)
    first, last = rows[0], rows[-1]
    assert last["answer_kb"] == 100
    assert last["bytes_per_frame"] < 2 * first["bytes_per_frame"], rows
    assert last["naive_bytes_per_frame"] > 5 * first["naive_bytes_per_frame"]


@pytest.mark.parametrize("shape", MATH_SHAPES)
def test_an_answer_full_of_formulas_is_cut_where_it_renders_the_same(shape: str) -> None:
    text = answer_text(6000, shape, whole=True)
    finished, tail = feed_all(text, 37)
    assert "".join(render(b) for b in [*finished, tail]) == render(text)
    page = PageView(1)
    for _, frame, _ in frames_of(text, 37):
        page.apply(frame)
    assert page.dom.misses == []
    if shape == "math":  # every formula closed: the page shows what the whole answer shows
        whole = Dom(f'<div id="w">{render(text)}</div>').text("w")
        assert norm(page.text) == whole


@pytest.mark.parametrize("text", LATEX_PAYLOADS)
def test_formula_payloads_in_the_growing_block_render_inert(text: str) -> None:
    for tail in (text, f"{text} and more", text[:-1], f"$$\n{text}\n"):
        assert_inert(render_tail(tail))
        html = GrowingBlock(key="k").restart(tail)
        assert "<img" not in html
        assert "<style" not in html
        assert "href=" not in html


@pytest.mark.parametrize(
    "unit", ["$$ x\n", "\\[ x\n", "a \\( b ", "a $b ", "$5 and ", "a $$ b ", "$$\nx\n\n"]
)
def test_many_delimiters_that_never_close_cost_linear_time(unit: str) -> None:
    text = "Text\n" + unit * 8000  # searched again from each of them, this would take minutes
    started = time.perf_counter()
    render(text)
    feed_all(text, 200)
    assert time.perf_counter() - started < 3.0


# --- where the words of a formula go: search snippets, the export, the page -----------

ANSWER_WITH_MATH = (
    "The energy $E_{n} = m c^2$ of a kiwi, with \\(\\alpha_1\\), costs $5 and $10.\n"
    "Where\n$$\n\\frac{a_1}{b_2}\n$$\n"
)


def _answered(owner: Any, answer: str) -> Conversation:
    conversation = services.conversation_create(owner=owner, model="m", title="Formulas")
    turn = turn_services.turn_start(conversation=conversation, text="q", generation_channel="c")
    services.message_finalize(message_id=turn.answer.pk, content=answer, status="complete")
    return conversation


@pytest.mark.django_db
def test_a_search_snippet_reads_a_formula_as_its_latex_source() -> None:
    alice = make_user("alice")
    _answered(alice, ANSWER_WITH_MATH)
    [result] = selectors.conversation_search(user=alice, query="kiwi")
    # Subscripts keep their "_" (no emphasis is read in a formula); delimiters go.
    assert str(result.snippet) == (
        "…energy E_{n} = m c^2 of a <mark>kiwi</mark>, with \\alpha_1, costs $5 and $10. "
        "Where \\frac{a_1}{b_2}"
    )


@pytest.mark.django_db
def test_the_markdown_export_keeps_formulas_as_written() -> None:
    alice = make_user("alice")
    conversation = _answered(alice, ANSWER_WITH_MATH)
    client = Client()
    client.force_login(alice)
    text = client.get(f"/conversations/{conversation.public_id}/export.md").content.decode()
    assert ANSWER_WITH_MATH.strip() in text


@pytest.mark.django_db
def test_the_conversation_page_shows_the_formulas_as_mathml() -> None:
    alice = make_user("alice")
    conversation = _answered(alice, ANSWER_WITH_MATH)
    client = Client()
    client.force_login(alice)
    html = client.get(f"/conversations/{conversation.public_id}/").content.decode()
    assert html.count("<math ") == 3
    assert '<div class="math-display"><math display="block"' in html
    assert "costs $5 and $10." in html


def test_a_long_line_of_an_open_display_formula_is_not_sent_again_in_every_frame() -> None:
    growing = GrowingBlock(key="k")
    text = "$$\n"
    growing.restart(text)
    sizes = []
    for i in range(300):
        text += f"a_{{{i}}} x^{{{i}}} + "  # one line, no newline
        html, _ = growing.grow(text)
        sizes.append(len(html))
    assert max(sizes[-50:]) < 300
    assert "a_{299} x^{299} +" in (Dom(f'<div id="t">{growing.html()}</div>').text("t") or "")
