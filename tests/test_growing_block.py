"""The growing block of a streaming answer, frame by frame, as a page applies the frames.

Five shapes (paragraphs with blank lines, one endless paragraph, one long list, one long
table, one open code block), and two of formulas, are cut into frames of several sizes;
after every frame the page's text is checked against the whole answer rendered at once,
and for markdown markers that should never show; a page that joins mid-answer from a
snapshot must end up the same; and a frame's size must not grow with the answer.
"""

from __future__ import annotations

import re

import pytest

from bench.render_cost import MATH_SHAPES, SHAPES, answer_text, frames_of, measure
from conversations import fragments
from conversations.growing import GrowingBlock
from conversations.rendering import render
from conversations.splitting import BlockSplitter
from tests.frames import Dom, PageView, norm

RAW_MARKER = re.compile(r"\*\*|\*\w|`|~~|\]\(")


def squeezed(text: str) -> str:
    return "".join(text.split())


def final_text(text: str) -> str:
    dom = Dom(f'<div id="whole">{render(text)}</div>')
    return dom.text("whole") or ""


# A formula shows its LaTeX source until it closes, then MathML: not a prefix of the final
# text (tests/test_math.py follows formulas frame by frame).
@pytest.mark.parametrize("shape", [shape for shape in SHAPES if shape not in MATH_SHAPES])
@pytest.mark.parametrize("frame_chars", [7, 40, 333])
def test_every_frame_shows_a_clean_prefix_of_the_answer(shape: str, frame_chars: int) -> None:
    text = answer_text(4000, shape)
    final = squeezed(final_text(text))
    page = PageView(1)
    for length, frame, _ in frames_of(text, frame_chars):
        page.apply(frame)
        shown = page.text
        assert not RAW_MARKER.search(shown), (length, shown[-200:])
        assert final.startswith(squeezed(shown)), (length, shown[-200:])
        assert page.dom.misses == [], (length, frame)
    # Nearly everything is on the page before the final frame (the unsettled end shows).
    assert len(squeezed(page.text)) > 0.97 * len(final)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_page_that_joins_from_a_snapshot_continues_with_the_same_text(shape: str) -> None:
    text = answer_text(3000, shape)
    splitter = BlockSplitter()
    growing = GrowingBlock(key="message-1-live")
    sealed: list[str] = []
    early = PageView(1)
    late: PageView | None = None
    for i, start in enumerate(range(0, len(text), 50)):
        finished, tail = splitter.feed(text[start : start + 50])
        if finished:
            sealed.append(finished)
            tail_html, whole = growing.restart(tail), True
        else:
            tail_html, whole = growing.grow(tail)
        frame = fragments.answer_growth_html(1, render(finished), tail_html, whole=whole)
        early.apply(frame)
        if late is not None:
            late.apply(frame)
        if i == 20:  # a page opened now gets the snapshot: sealed blocks, the block so far
            late = PageView(1)
            late.apply(
                f'<div id="message-1-text"><div id="message-1-blocks">{render("".join(sealed))}'
                f'</div><div id="message-1-tail">{growing.html()}</div></div>'
            )
            assert norm(late.text) == norm(early.text)
    assert late is not None
    assert late.dom.misses == []
    assert norm(late.text) == norm(early.text)


@pytest.mark.parametrize("shape", SHAPES)
def test_frame_bytes_do_not_grow_with_the_answer(shape: str) -> None:
    rows = measure(frame_chars=400, window=3, shape=shape)
    first, last = rows[0], rows[-1]
    assert last["answer_kb"] == 100
    assert last["bytes_per_frame"] < 2 * first["bytes_per_frame"], rows
    assert last["naive_bytes_per_frame"] > 5 * first["naive_bytes_per_frame"]


def test_a_lead_in_line_then_a_list_or_code_starts_a_block_of_its_own() -> None:
    splitter = BlockSplitter()
    finished, tail = splitter.feed("Here are the options:\n- one\n- two\n")
    assert finished == "Here are the options:\n"
    assert tail == "- one\n- two\n"
    finished, tail = splitter.feed("\nAnd the code:\n```python\nx = 1\n")
    assert finished == "- one\n- two\n\nAnd the code:\n"
    assert tail == "```python\nx = 1\n"
    finished, tail = splitter.feed("```\n## Heading\nText under it\n")
    assert finished == "```python\nx = 1\n```\n## Heading\n"
    assert tail == "Text under it\n"


def test_a_quote_keeps_its_lines_together() -> None:
    splitter = BlockSplitter()
    finished, tail = splitter.feed("> one\n> two\n")
    assert (finished, tail) == ("", "> one\n> two\n")


@pytest.mark.parametrize(
    ("tail", "shown"),
    [
        ("Some **bold wor", "Some bold wor"),
        ("Some *emphasis", "Some emphasis"),
        ("a `code sp", "a code sp"),
        ("see [the docs](https://exa", "see the docs"),
        ("ends with a marker **", "ends with a marker"),
        ("snake_case_name and more", "snake_case_name and more"),
        ("~~struck thr", "struck thr"),
    ],
)
def test_the_unsettled_end_of_a_paragraph_shows_no_markers(tail: str, shown: str) -> None:
    growing = GrowingBlock(key="k")
    html = growing.restart(tail)
    assert norm(Dom(f'<div id="t">{html}</div>').text("t") or "") == shown


def test_a_paragraph_after_a_code_block_shows_while_it_grows() -> None:
    splitter = BlockSplitter()
    finished, tail = splitter.feed("```py\nx = 1\n```\n\n words after the")
    assert finished == "```py\nx = 1\n```\n\n"
    html = GrowingBlock(key="k").restart(tail)
    assert norm(Dom(f'<div id="t">{html}</div>').text("t") or "") == "words after the"
