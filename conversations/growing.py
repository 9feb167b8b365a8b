"""The block still growing at the end of a streaming answer, as HTML in frames that do
not grow with it. A pure function of text: no Django models, no I/O.

splitting.py tells where the answer's finished blocks end; each finished block is
rendered whole by rendering.py. The block after them, still growing, is a `GrowingBlock`:
what of it can no longer change is sent once, and each frame re-renders only its
unsettled end (`render_tail` when it is re-rendered whole), so a frame's size follows
the new text, not the block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

from .code_blocks import code_block, language
from .formulas import CLOSING
from .rendering import (
    inline_simple,
    opens_nothing,
    render,
    render_inline,
)
from .splitting import FENCE_OPEN, MATH_OPEN, InlineScan, closed_inline

_FENCE_START = re.compile(r"^ {0,3}(`{3,}|~{3,})([^\n`]*)\n")


def render_tail(text: str) -> str:
    """render() for the block still growing at the end of a streaming answer: the code
    of a fence still open without highlighting; any other block goes through render()
    (which writes a plain paragraph without the parser). A finished block is always
    rendered whole by render(), highlighting included."""
    if not text.strip():
        return ""
    fence = _FENCE_START.match(text)
    if fence is not None:
        code = text[fence.end() :]
        marker = fence.group(1)
        closing_line = rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$"
        closing = re.search(closing_line, code, re.MULTILINE)
        if closing is None:
            # Highlighted once the fence closes: Pygments on every frame of a long block
            # would cost more than all the rest of the frame.
            lang = language(fence.group(2))
            return code_block(lang, escape(code, quote=False))
    return render(text)


_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_ITEM_START = re.compile(r"^( {0,3})(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)", re.MULTILINE)
_OUTER_LIST = re.compile(r"^\s*(<(?:ul|ol)\b[^>]*>)\n?(.*)</(?:ul|ol)>\s*$", re.DOTALL)
_SIMPLE_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])[ \t]+([^\n]*)\n?$")
_ONE_SPACE_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)]) \S")
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
    simple = inline_simple(text)
    return render_inline(text) if simple is None else simple


_CLOSING_ARRIVING = re.compile(r"(?:\$+|\\\]?)[ \t]*$")


def _closed_last_line(text: str) -> str:
    """A block whose last line is unfinished, that line's open inline markup closed."""
    start = text.rfind("\n") + 1
    return text[:start] + closed_inline(text[start:])


def _kind_of(text: str) -> str:
    """What kind of block a growing block's text is: "pending" while its first line
    cannot tell yet."""
    first_end = text.find("\n")
    first = text if first_end < 0 else text[:first_end]
    if not first.strip():
        return "other" if text.strip() else "pending"
    if _FENCE_START.match(text):
        return "code"
    if FENCE_OPEN.match(first):
        return "pending"  # the fence's first line is not complete yet
    math = MATH_OPEN.match(first)
    if math:
        # A display formula still open shows its source, growing; on one line, or once
        # closed, it is re-rendered whole (BlockSplitter finishes it at its closing line).
        close = CLOSING[math.group(1)]
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
    _scan: InlineScan = field(default_factory=InlineScan)
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
        self._scan, self._checked_table, self._first_line_done = InlineScan(), False, False
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
            return code_block(self._head, settled + live)
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
            self._head = language(fence.group(2))
            self._settled = fence.end()
        elif self.kind == "math":
            math = MATH_OPEN.match(self.text)
            assert math is not None
            self._head = CLOSING[math.group(1)]
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
                self._parts.append(_inline(closed_inline(text[self._settled : last_space])))
                self._settled = last_space
                self._scan = InlineScan(balanced=last_space, scanned=last_space)
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
            return f'<span id="{live_id}">{_inline(closed_inline(rest))}</span>'
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
        if simple is not None and _ONE_SPACE_ITEM.match(text):
            words = simple.group(1).rstrip()
            inline = inline_simple(words) if opens_nothing(words) else None
            if inline is not None:  # "- **Name**: words" and the like
                return f"<li>{inline}</li>\n"
        match = _OUTER_LIST.match(render(_closed_last_line(text) if live else text))
        return match.group(2) if match else f"<li>{_inline(closed_inline(text.strip()))}</li>"

    def _rows(self, text: str) -> str:
        match = _TBODY.search(render(self._head + text))
        return match.group(1) if match else ""
