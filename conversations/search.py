"""Full-text search, on the database the site runs on: SQLite's FTS5 or PostgreSQL's
text search. No extra service. Callers go through selectors.conversation_search, which
scopes every query to its owner.

Ranking: relevance (bm25 on SQLite, ts_rank on PostgreSQL) among the user's most recent
matches (POOL of them). Ranking every match of a word found in most messages would cost
time in proportion to the whole history; bounding the pool keeps a search in tens of
milliseconds at any size, and in a chat history recent matches are the likely ones.

Conversations of an import still being written (c.importing) are left out: their owner
sees an import only once it is complete.

Snippets are cut here, not by the database (SQLite's snippet() re-reads every match,
PostgreSQL's ts_headline drops tag-like words): escaped text with the matching words in
<mark>, so stored text can never put markup into the results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

MAX_WORDS = 8
POOL = 2000  # most recent matches ranked per query
CANDIDATES = 60  # best of them considered before keeping one per conversation
SNIPPET_WORDS = 24

_WORD = re.compile(r"\w+", re.UNICODE)


def query_words(text: str) -> list[str]:
    """The words to look for: letters and digits only, so no query syntax gets through."""
    return [w.lower() for w in _WORD.findall(text or "")][:MAX_WORDS]


@dataclass(frozen=True)
class Hit:
    conversation_id: int
    message_id: int | None  # None: the title matched (rows come best first)


@dataclass(frozen=True)
class Result:
    public_id: str
    title: str
    message_id: int | None
    snippet: SafeString
    archived: bool
    updated_at: datetime


def snippet_html(
    text: str, words: list[str], *, width: int = SNIPPET_WORDS, markdown: bool = False
) -> SafeString:
    """A window of the text around the first matching word, escaped, matches marked.
    markdown: the text is an answer's markdown, shown as the plain text a reader sees
    (`**bold**` reads "bold"), never as markup."""
    pattern = _words_pattern(words)
    text, cut_before, cut_after = _around(text, pattern, markdown=markdown)
    if pattern is None:
        return mark_safe(escape(text[:200]))  # noqa: S308  # escaped
    first = pattern.search(text)
    at = first.start() if first else 0
    # About `width` words: some before the match, the rest after it.
    before = text[max(0, at - 400) : at]
    lead = [m.start() for m in _WORD.finditer(before)][-(width // 3) :] if before else []
    start = max(0, at - 400) + lead[0] if lead else at
    if not _WORD.search(text, 0, start):
        start = 0  # only punctuation before: "<script", not "…script"
    tail = list(_WORD.finditer(text, at, min(len(text), at + 600)))
    end = tail[min(len(tail), width - len(lead)) - 1].end() if tail else len(text)
    if not _WORD.search(text, end):
        end = len(text)  # only punctuation left: "bold?", not "bold…"
    window = text[start:end]
    out = ["…" if start > 0 or cut_before else ""]
    position = 0
    for match in pattern.finditer(window):
        out.append(escape(window[position : match.start()]))
        out.append(f"<mark>{escape(match.group(0))}</mark>")
        position = match.end()
    out.append(escape(window[position:]))
    out.append("…" if end < len(text) or cut_after else "")
    return mark_safe("".join(out))  # noqa: S308  # every piece of text above is escaped


def _words_pattern(words: list[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\w*", re.IGNORECASE)


# How much of a long text around the first match is looked at (and made plain): a snippet
# costs the same for a 200 KB answer as for a short one.
AROUND_BEFORE, AROUND_AFTER = 600, 1500


def _around(
    text: str, pattern: re.Pattern[str] | None, *, markdown: bool
) -> tuple[str, bool, bool]:
    """The part of the text a snippet is cut from, on one line, and whether text was left
    out before and after it. It starts at a line's start when one is near, so that the
    markdown of that line (a heading, a list item) is read as such."""
    first = pattern.search(text) if pattern is not None else None
    at = first.start() if first else 0
    start = max(0, at - AROUND_BEFORE)
    if start > 0:
        line = text.rfind("\n", max(0, start - AROUND_BEFORE), start)
        start = line + 1 if line >= 0 else start
    end = min(len(text), at + AROUND_AFTER)
    part = text[start:end]
    if markdown:
        # Inside a code fence that opened before the part: its lines are code, not markdown.
        in_fence = len(_FENCE.findall(text, 0, start)) % 2 == 1
        part = markdown_plain(part, in_fence=in_fence)
    return " ".join(part.split()), start > 0, end < len(text)


_FENCE = re.compile(r"^ {0,3}(?:`{3,}|~{3,})", re.MULTILINE)
# Lines that are markup only: thematic breaks, setext underlines, a table's alignment row.
_RULE = re.compile(
    r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:_[ \t]*){3,}|(?:-[ \t]*){3,}|=+[ \t]*|-+[ \t]*)$"
    r"|^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$"
)
# What opens a line: block quotes, a heading's hashes, list markers, a task's box.
_LINE_START = re.compile(
    r"^[ \t]*(?:>[ \t]?|#{1,6}(?=[ \t]|$)|[-+*](?=[ \t])|\d{1,9}[.)](?=[ \t])"
    r"|\[[ xX]\](?=[ \t]))[ \t]*"
)
_HEADING_CLOSE = re.compile(r"[ \t]+#+[ \t]*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
# Code spans and formulas (as formulas.py reads them: "$5 and $10" is no formula) keep
# their characters: a formula reads as its LaTeX source, without its delimiters.
_CODE_OR_MATH = re.compile(
    _CODE_SPAN.pattern
    + r"|\$\$(.+?)\$\$"
    + r"|(?<![\\\d])\$(?![\s$])((?:[^$\\]|\\.)*?)(?<!\s)\$(?!\d)"
    + r"|\\\((.+?)\\\)|\\\[(.+?)\\\]"
)
# A display formula's own lines: "$$" or "\\[" opening it, "$$" or "\\]" closing it.
_MATH_OPEN = re.compile(r"^ {0,3}(\$\$|\\\[)[ \t]*$")
_MATH_CLOSE = re.compile(r"(\$\$|\\\])[ \t]*$")
_LINK = re.compile(
    r"!?\[([^\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)"  # [text](url), ![alt](src)
    r"|!?\[([^\]\n]+)\]\[[^\]\n]*\]"  # [text][reference]
    r"|<((?:https?|mailto):[^<>\s]+)>"  # <https://…>
)
# A run of emphasis markers that opens (nothing word-like before, text after) or closes
# (text before, nothing word-like after), as CommonMark's flanking rules have it; `2*3` or
# snake_case keep theirs. A backslash-escaped marker is text.
_EMPHASIS = re.compile(
    r"(?<![\w\\*_~])(?:\*{1,3}|_{1,3}|~~)(?=[^\s*_~])"
    r"|(?<=[^\s*_~\\])(?:\*{1,3}|_{1,3}|~~)(?![\w*_~])"
)
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def markdown_plain(text: str, *, in_fence: bool = False) -> str:
    """The words of markdown without its markers, line by line: headings, quotes, list
    markers, rules and fences dropped, emphasis markers removed, links and images reduced
    to their text, code as it is. Linear, and tolerant of a part cut from a longer text
    (an emphasis opened before the cut loses its closing marker too). Raw HTML stays
    text, as the renderer shows it."""
    lines = []
    math_close = ""
    for line in text.split("\n"):
        if math_close:
            closing = _MATH_CLOSE.search(line)
            if closing and closing.group(1) == math_close:
                line, math_close = line[: closing.start()], ""
            lines.append(line)
            continue
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            lines.append(line)
            continue
        opening = _MATH_OPEN.match(line)
        if opening:
            math_close = "$$" if opening.group(1) == "$$" else "\\]"
            continue
        if _RULE.match(line):
            continue
        heading = line.lstrip(" ").startswith("#")
        for _ in range(4):  # "> 1. [ ] text": a quote, a list, a task
            stripped = _LINE_START.sub("", line, count=1)
            if stripped == line:
                break
            line = stripped
        if heading:
            line = _HEADING_CLOSE.sub("", line)
        if line.lstrip().startswith("|"):  # a table row: its cells, apart
            line = " · ".join(cell.strip() for cell in line.strip().strip("|").split("|"))
        lines.append(_inline_plain(line))
    return "\n".join(lines)


def _inline_plain(line: str) -> str:
    out, position = [], 0
    for span in _CODE_OR_MATH.finditer(line):
        out.append(_markers_plain(line[position : span.start()]))
        out.append(next(group for group in span.groups()[1:] if group is not None))
        position = span.end()
    out.append(_markers_plain(line[position:]))
    return "".join(out)


def _markers_plain(text: str) -> str:
    text = _LINK.sub(lambda m: m.group(1) or m.group(2) or m.group(3) or "", text)
    return _ESCAPE.sub(r"\1", _EMPHASIS.sub("", text))


def hits(*, owner_id: int, words: list[str], limit: int) -> list[Hit]:
    """Best matches first: titles, then messages, at most one per conversation."""
    if not words:
        return []
    if connection.vendor == "postgresql":
        rows = _postgres(owner_id, words)
    else:
        rows = _sqlite(owner_id, words)
    seen: set[int] = set()
    best: list[Hit] = []
    for hit in rows:
        if hit.conversation_id in seen:
            continue
        seen.add(hit.conversation_id)
        best.append(hit)
        if len(best) >= limit:
            break
    return best


def _sqlite(owner_id: int, words: list[str]) -> list[Hit]:
    # Each word quoted (it is only letters and digits anyway) and prefix-matched, all
    # required: results while the user is still typing the last word.
    match = " ".join(f'"{w}"*' for w in words)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, s FROM ("
            " SELECT c.id, bm25(conversations_title_fts) AS s"
            " FROM conversations_title_fts f JOIN conversations_conversation c ON c.id = f.rowid"
            " WHERE conversations_title_fts MATCH %s AND c.owner_id = %s AND NOT c.importing"
            " ORDER BY f.rowid DESC LIMIT %s"
            ") ORDER BY s LIMIT %s",
            [match, owner_id, POOL, CANDIDATES],
        )
        titles = [Hit(cid, None) for cid, _score in cursor.fetchall()]
        cursor.execute(
            "SELECT id, conversation_id, s FROM ("
            " SELECT m.id, m.conversation_id, bm25(conversations_message_fts) AS s"
            " FROM conversations_message_fts f"
            " JOIN conversations_message m ON m.id = f.rowid"
            " JOIN conversations_conversation c ON c.id = m.conversation_id"
            " WHERE conversations_message_fts MATCH %s AND c.owner_id = %s AND NOT c.importing"
            " ORDER BY f.rowid DESC LIMIT %s"
            ") ORDER BY s LIMIT %s",
            [match, owner_id, POOL, CANDIDATES],
        )
        messages = [Hit(cid, mid) for mid, cid, _score in cursor.fetchall()]
    return titles + messages


def _postgres(owner_id: int, words: list[str]) -> list[Hit]:
    tsquery = " & ".join(f"{w}:*" for w in words)
    # The tsvector column and expression are exactly those of the GIN indexes (migration 0006).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, ts_rank(to_tsvector('simple'::regconfig, title), q) AS r"
            " FROM (SELECT c.id, c.title FROM conversations_conversation c"
            "  WHERE c.owner_id = %s AND NOT c.importing"
            "  AND to_tsvector('simple'::regconfig, c.title) @@ to_tsquery('simple', %s)"
            "  ORDER BY c.id DESC LIMIT %s) pool, to_tsquery('simple', %s) q"
            " ORDER BY r DESC LIMIT %s",
            [owner_id, tsquery, POOL, tsquery, CANDIDATES],
        )
        titles = [Hit(cid, None) for cid, _rank in cursor.fetchall()]
        cursor.execute(
            "SELECT id, conversation_id, ts_rank(search_vector, q) AS r"
            " FROM (SELECT m.id, m.conversation_id, m.search_vector FROM conversations_message m"
            "  JOIN conversations_conversation c ON c.id = m.conversation_id"
            "  WHERE c.owner_id = %s AND NOT c.importing"
            "  AND m.search_vector @@ to_tsquery('simple', %s)"
            "  ORDER BY m.id DESC LIMIT %s) pool, to_tsquery('simple', %s) q"
            " ORDER BY r DESC LIMIT %s",
            [owner_id, tsquery, POOL, tsquery, CANDIDATES],
        )
        messages = [Hit(cid, mid) for mid, cid, _rank in cursor.fetchall()]
    return titles + messages


def conversation_ids_staff_wide(*, words: list[str], limit: int) -> list[int]:
    """Not scoped to an owner (staff only, each result logged by the caller): the
    conversations with a message holding every word (prefixes too), newest match first.
    Only the newest POOL matching messages are looked at, so a common word costs the same
    on any site. Hidden messages count: moderators keep their text."""
    if not words:
        return []
    if connection.vendor == "postgresql":
        match = " & ".join(f"{w}:*" for w in words)
        pool = (
            "SELECT m.id, m.conversation_id FROM conversations_message m"
            " WHERE m.search_vector @@ to_tsquery('simple', %s) ORDER BY m.id DESC LIMIT %s"
        )
    else:
        match = " ".join(f'"{w}"*' for w in words)  # query_words: letters and digits only
        pool = (
            "SELECT m.id, m.conversation_id FROM conversations_message_fts f"
            " JOIN conversations_message m ON m.id = f.rowid"
            " WHERE conversations_message_fts MATCH %s ORDER BY f.rowid DESC LIMIT %s"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pool.conversation_id FROM ({pool}) pool"  # noqa: S608  # constants only
            " GROUP BY pool.conversation_id ORDER BY MAX(pool.id) DESC LIMIT %s",
            [match, POOL, limit],
        )
        return [row[0] for row in cursor.fetchall()]
