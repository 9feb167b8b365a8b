"""LaTeX -> MathML. A pure function of text: no Django models, no I/O.

LaTeX between `$…$` or `\\(…\\)` (inline) and `$$…$$` or `\\[…\\]` (display) becomes
MathML on the server (latex2mathml), which browsers lay out natively: no script, no
inline style. Dollar signs follow the usual rules, so that prices stay prices: no space
after the opening `$` nor before the closing one, no digit right after the closing one.
A formula that does not parse, or is too long or too deep to be worth it, shows its
source as code. `math_plugin` teaches rendering.py's parser these delimiters; the
cleaner there lets through only the MathML elements and attributes the converter makes
(`MATHML_TAGS`, `MATHML_ATTRIBUTES`, `length_allowed`: no href, no style, no colours, no
annotation-xml or mglyph).
"""

from __future__ import annotations

import re
from html import escape
from typing import Any
from xml.etree.ElementTree import tostring

from latex2mathml.converter import convert_to_element
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.ruler import RuleOptionsType
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.dollarmath.index import math_block_dollar, math_inline_dollar

from .code_blocks import code_block

# What latex2mathml makes, nothing more: no annotation-xml, mglyph, maction or semantics
# (the ways into HTML, and the mXSS tricks, go through those).
MATHML_TAGS = {
    "math", "mrow", "mi", "mn", "mo", "mtext", "mspace", "ms", "msup", "msub", "msubsup",
    "mfrac", "msqrt", "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd",
    "mstyle", "menclose", "mpadded", "mphantom",
}  # fmt: skip
# Every attribute that takes a length: a large one (or a large shift) could push a formula
# across the page or draw it over other messages.
_MATHML_SIZES = {
    "width", "height", "depth", "lspace", "rspace", "voffset", "mathsize", "linethickness",
    "minsize", "maxsize", "columnspacing", "rowspacing",
}  # fmt: skip
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
# A MathML length, small: "\\hspace{9999em}" or "\\lower{99em}" must not push the page
# sideways or draw over other messages. Under 6 of any unit (latex2mathml's largest, the
# \\Huge size, is 2.49em), a named space or thickness, or a few such (table spacing).
_ONE_LENGTH = (
    r"(?:[+-]?(?:[0-5](?:\.\d{1,4})?|\.\d{1,4})(?:em|ex|mu|pt|px|%)?"
    r"|(?:negative)?(?:very){0,2}(?:thin|thick)mathspace|thin|medium|thick)"
)
_SMALL_LENGTH = re.compile(rf"^{_ONE_LENGTH}(?: {_ONE_LENGTH}){{0,3}}$")


def length_allowed(tag: str, attribute: str, value: str) -> bool:
    """False for a MathML size too large to be harmless (the cleaner drops it)."""
    if attribute in _MATHML_SIZES and tag in MATHML_TAGS:
        return bool(_SMALL_LENGTH.match(value))
    return True


# Past these a formula shows as code: latex2mathml is a recursive pure-Python parser, and
# formulas are rendered inside the frames of a streaming answer.
MAX_FORMULA = 2000  # characters
_MAX_FORMULA_DEPTH = 40  # groups, \left…\right and environments inside one another
_DEPTH_TOKEN = re.compile(r"\\\\|\\[{}]|[{}]|\\(?:left|right|begin|end)\b")
_CHARACTER_REFERENCE = re.compile(r"&#x([0-9a-fA-F]{1,6});")
# A formula's closing delimiter, by its opening one.
CLOSING = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}


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
    close = CLOSING.get(token.markup, token.markup)
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
        return code_block("latex", escape(token.content.strip("\n"), quote=False))
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
        begin = state.bMarks[start_line] + state.tShift[start_line]
        if not state.src.startswith(opening, begin):
            return False  # asked of every line of every block: the common answer, first
        failed = state.env.get(failed_key)
        if failed is not None and failed[0] < start_line < failed[1]:
            return False  # no line up to the blank one below closes a formula
        tokens, line = len(state.tokens), state.line
        matched = bool(rule(state, start_line, end_line, silent))
        if silent:
            del state.tokens[tokens:]
            state.line = line
        if not matched:
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


def math_plugin(md: MarkdownIt) -> None:
    """Formulas for a markdown-it parser: their syntax and their render rules."""
    # "$5 and $10" stays text: no space inside the dollars, no digit after the closing
    # one (nor before the opening one); "$$…$$" inside a line is display math.
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
