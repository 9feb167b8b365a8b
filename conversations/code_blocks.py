"""Code -> a code block's HTML. A pure function of text: no Django models, no I/O.

A fenced (or indented) code block is highlighted by Pygments, with CSS classes only (no
inline styles: the page's CSP forbids them), under a header with the language and a copy
button. Past a size, or in a language Pygments does not know, the code is shown plain.
The growing block of a streaming answer, and a formula that does not parse, use the same
markup without the highlighting.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape

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

# The classes highlighted code carries: the cleaner's allow-list lets these through.
TOKEN_CLASSES = {f"tok-{name}" for name in STANDARD_TYPES.values() if name}


def language(info: str) -> str:
    """The language named on a fence's opening line ("py" of "```py title"), tamed."""
    return _LANG.sub("", info.strip().split(" ")[0])[:30]


@lru_cache(maxsize=256)
def _lexer(lang: str) -> Lexer | None:
    # Looking a lexer up by name scans Pygments' whole registry: do it once per language.
    try:
        return get_lexer_by_name(lang)
    except ClassNotFound:
        return None


def fence(
    renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """markdown-it's render rule for fenced and indented code."""
    token = tokens[idx]
    lang = language(token.info) if token.info else ""
    code = token.content
    body = escape(code)
    lexer = _lexer(lang.lower()) if lang and len(code) <= _MAX_HIGHLIGHT else None
    if lexer is not None:
        body = highlight(code, lexer, _FORMATTER)
    return code_block(lang, body)


def code_block(lang: str, body: str) -> str:
    """A code block's markup around `body`, which must already be safe HTML."""
    label = escape(lang or "text")
    return (
        '<div class="code-block"><div class="code-head">'
        f'<span class="code-lang">{label}</span>'
        '<button type="button" class="copy-button" aria-label="Copy code">Copy</button>'
        f'</div><pre class="highlight"><code class="code">{body}</code></pre></div>\n'
    )
