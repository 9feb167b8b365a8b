"""render()'s short cut for plain paragraphs, headings and lists gives, to the byte, the
HTML that the parser and the cleaner give: a finished block of a streaming answer and
the same answer rendered whole later must never differ."""

from __future__ import annotations

import random

import pytest

from conversations import rendering
from conversations.rendering import _MD, inline_simple, render, render_inline, sanitize


def slow(text: str) -> str:
    return sanitize(_MD.render(text))


SIMPLE = [
    "Just words here.\n\n",
    " zq49 zq50 zq51.\n\n",
    "First line\nsecond line\n  third, indented\n",
    'He said "yes" and it\'s fine!\n',
    "## Part zq0\n\n",
    "# Title\n",
    "###### Six\n\n",
    "## Trailing spaces   \n\n",
    "- item one\n- item two\n- item three\n\n",
    "* a\n* b\n",
    "+ only\n",
    "Unicode: café, 東京, emoji 🙂\n",
    " zq1 zq2 **zq3 zq4 zq5**, zq6 `zq8` [zq12](https://example.com/12) zq13.\n\n",
    "**Note:** the `x < y` case, see [the docs](https://docs.example.com/a/b?c=d#e).\n",
    "- **Item**: text\n- `code` here\n- plain\n",
]

# Each falls back to the parser, or must come out the same if the short cut takes it.
TRICKY = [
    "- a\n+ b\n",  # two lists
    "-  two spaces\n- b\n",
    "- - nested\n",
    "- 1. nested\n",
    "- # heading in an item\n",
    "- a\n\n- loose\n",
    "- a\ncontinued lazily\n",
    "- \n- b\n",
    "## closing #\n",
    "##no space\n",
    "####### seven\n",
    "##   many spaces\n",
    "# 1. numbered heading\n",
    "Title\n=====\n",
    "Title\n---\n",
    "line  \nhard break\n",
    "tab\tinside\n",
    "nbsp\xa0inside\n",
    "zero\u200bwidth\n",
    "line\u2028separator\n",
    "nul\x00byte\n",
    "cr\r\nlf\n",
    "    indented code\n",
    "1. ordered\n2. list\n",
    "> quote\n",
    "a & b < c\n",
    "price $5 and $10\n",
    "x | y\n--|--\n1 | 2\n",
    "***\n",
    "- ***\n",
    "\nleading newline\n",
    "   three spaces\n",
    "trailing\n\n\n\n",
    "   \n",
    "",
    "**a**b\n",
    "a**b**\n",
    "**a **\n",
    "** a**\n",
    "**a:**.\n",
    "a ![b](https://e.com/x) d\n",
    "[a](javascript:alert(1))\n",
    "[a](/relative)\n",
    "[a](https://e.com/%zz)\n",
    "`` x ``\n",
    "` x `\n",
    "```\n",
    "**x**\n**y**\n",
    "    **indented**\n",
    "- **a**\n- b  \n",
    "* **a**\n",
    "**\n",
    "(**x**)\n",
    "\u3000**a** b\n",
    "**a** b\u3000\n",
    "- **a**\u2003\n",
]


@pytest.mark.parametrize("text", SIMPLE)
def test_common_blocks_take_the_short_cut_and_match_the_parser(text: str) -> None:
    assert rendering._render_simple(text) is not None
    assert render(text) == slow(text)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_blocks_render_as_the_parser_does(text: str) -> None:
    assert render(text) == slow(text)


def test_random_blocks_render_as_the_parser_does() -> None:
    # Words, markers and odd characters thrown together: every text the short cut takes
    # must come out as the parser's.
    rng = random.Random(18)
    pieces = [
        "word", "two words", " ", "  ", "\n", "\n\n", "- ", "* ", "+ ", "# ", "## ", "1. ",
        "`", "*", "_", "[", "]", "(", ")", "<", ">", "&", "~", "|", "$", "\\", "!", "=",
        "---", "\t", "\xa0", "é", "🙂", '"', "'", "#", "    ", "\u200b",
    ]  # fmt: skip
    taken = 0
    for _ in range(4000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.5:
            text += "\n\n"
        if rendering._render_simple(text) is not None:
            taken += 1
        assert render(text) == slow(text), repr(text)
    assert taken > 200  # the short cut was exercised, not only the fallback


INLINE_PIECES = [
    "word", "two words", " ", "  ", "**", "`", "[", "]", "(", ")", "!", ":", ".", ",",
    "https://e.com/a", "[link](https://e.com/x)", "**bold**", "`code`", "*", "_", "<", "&",
    '"', "'", "\xa0", "é", "\t", "#", "-", "1.", "$", "\\", "~~",
]  # fmt: skip


def test_random_inline_markup_renders_as_the_parser_does() -> None:
    rng = random.Random(180)
    taken = 0
    for _ in range(6000):
        text = "".join(rng.choice(INLINE_PIECES) for _ in range(rng.randint(1, 10)))
        fast = inline_simple(text)
        if fast is not None:
            taken += 1
            assert fast == render_inline(text), repr(text)
        block = text + "\n"
        assert render(block) == slow(block), repr(block)
        items = f"- {text}\n- **b** `c`\n"
        assert render(items) == slow(items), repr(items)
    assert taken > 500
