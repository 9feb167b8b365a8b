"""Where the text of a streaming answer can be cut. Pure string scanning: no HTML here.

`BlockSplitter` finds the places where the text so far can be cut into finished blocks
(a blank line outside a code fence, not inside a list), so a frame sends each finished
block once and re-renders only the block still growing (growing.py). The cost of a frame
depends on the size of that block, never on the length of the answer.

`InlineScan` does the same inside a growing paragraph: it finds the last place where no
code span, emphasis, link or formula is open, and `closed_inline` shows the unfinished
end as it should look for now (open markers closed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .formulas import CLOSING, MAX_FORMULA

FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:\s|$)")
# Lines that begin a block of their own even right under a paragraph's line (CommonMark:
# a bullet or "1." item with text, an ATX heading, a block quote, a fence).
_INTERRUPTS_PARAGRAPH = re.compile(
    r"^ {0,3}(?:(?:[-+*]|1[.)])[ \t]+\S|#{1,6}(?:[ \t]|$)|>|`{3,}|~{3,}|\$\$|\\\[)"
)
_ENDS_LIST = re.compile(r"^(?:#{1,6}(?:[ \t]|$)|`{3,}|~{3,}|>|\$\$|\\\[)")  # at column 0
MATH_OPEN = re.compile(r"^ {0,3}(\$\$|\\\[)")
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")


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
        match = FENCE_OPEN.match(line)
        if match:
            self._fence = match.group(1)
            return
        math = MATH_OPEN.match(line)
        if math:
            close = CLOSING[math.group(1)]
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
        elif (len(line) >= 3 or MATH_OPEN.match(line)) and self._begins_own_block(line):
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


# --- inside a growing paragraph --------------------------------------------------------


@dataclass
class InlineScan:
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


_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")  # ASCII punctuation: what "\\" escapes


def _run(text: str, i: int, c: str) -> int:
    j = i
    while j < len(text) and text[j] == c:
        j += 1
    return j - i


def closed_inline(text: str) -> str:
    """The unfinished end of a paragraph as it should look now: emphasis and code spans
    still open are closed, an unfinished link shows its text, a trailing marker waits."""
    text = text.rstrip("*_~`\\[]($")
    if not text:
        return ""
    scan = InlineScan()
    scan.feed(text, len(text))
    if scan.paren:
        start = scan.paren_at
        close = text.find("](", start)
        text = text[:start] + text[start + 1 : close]  # the link's text, for now
        scan = InlineScan()
        scan.feed(text, len(text))
    for at in reversed(scan.bracket_at):
        text = text[:at] + text[at + 1 :]
    if scan.bracket_at:
        scan = InlineScan()
        scan.feed(text, len(text))
    if scan.code:
        return text + "`" * scan.code
    if scan.math:
        # A formula not closed yet shows as the text it is so far, no markup read in it.
        at = scan.math_at
        text = text[:at] + _PUNCTUATION.sub(r"\\\g<0>", text[at:])
    return text.rstrip() + "".join(reversed(scan.stack)) + text[len(text.rstrip()) :]
