"""What every import format is read with: the refusal (ImportRefused), the limits, the
drafts a format builds (plain objects, not rows), the file as a stream of JSON events with
its nesting capped, reading past what the import does not use, and each field's check.

A file is read as a stream of JSON events (ijson), never loaded whole: each conversation
is built from the events with every limit applied as it is read (conversations in the
file, messages and children per conversation, nesting depth, text length), and values
the import does not use are read past without being built. So the cost of a file is
bounded per byte of it, and memory by one conversation, whatever the file holds.

Pure: no database. The underscored names are this package's own (the format modules and
parsing.py read with them); nothing outside conversations.portability uses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any

import ijson
from django.conf import settings

from chatsite.errors import ActionRefused

from ..attachments import Inspected
from ..models import Conversation, Message


class ImportRefused(ActionRefused):
    """A file that cannot be imported; the message says why, for the person."""


MAX_DEPTH = 64  # nesting levels; a ChatGPT export needs about a dozen
MAX_ID_CHARS = 200
MAX_ID_NUMBER = 2**63 - 1
MAX_TOKENS = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL
# Moments must survive conversion to UTC and to any time zone they are shown in.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
_READ_SIZE = 64 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass
class DraftMessage:
    key: str
    parent: str | None
    role: str
    content: str
    status: str = Message.Status.COMPLETE
    finish_reason: str = ""
    error: str = ""
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    # A user message's files, checked as an upload is (chatsite_format.py).
    attachments: tuple[Inspected, ...] = ()
    attachment_names: tuple[str, ...] = ()


@dataclass
class Draft:
    title: str
    model: str
    title_source: str = Conversation.TitleSource.USER
    system_prompt: str = ""
    pinned: bool = False
    archived: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    current: str | None = None
    messages: list[DraftMessage] = field(default_factory=list)


@dataclass(frozen=True)
class _Limits:
    bytes: int
    conversations: int
    messages: int
    chars: int

    @classmethod
    def current(cls) -> _Limits:
        return cls(
            bytes=settings.CHATSITE_IMPORT_MAX_BYTES,
            conversations=settings.CHATSITE_IMPORT_MAX_CONVERSATIONS,
            messages=settings.CHATSITE_IMPORT_MAX_MESSAGES,
            chars=settings.CHATSITE_IMPORT_MAX_MESSAGE_CHARS,
        )


class _Tally:
    """Conversations counted as they start, across a whole upload (every file of a zip):
    the limit stops the reading, not a count of what was built."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def conversation(self) -> None:
        self.count += 1
        if self.count > self.limit:
            raise ImportRefused(
                f"That file holds more than {self.limit:,} conversations; at most "
                f"{self.limit:,} can be imported at once."
            )


class _Reader:
    """What the parser reads: a UTF-8 byte order mark dropped (some editors write one)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._start = True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if self._start:
            self._start = False
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
        return data


class _Skipped:
    """A list or an object read past where a field wanted a plain value: never built."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


_A_LIST = _Skipped("a list")
_AN_OBJECT = _Skipped("an object")
_Events = Iterator[tuple[str, Any]]


def _events(stream: IO[bytes], name: str) -> _Events:
    """A file's JSON as (event, value) pairs, its nesting depth capped; after the document
    one ("eof", None), and ImportRefused if more is asked for. Every reader below pulls
    from this with next(): a plain loop per event, the cheapest Python offers.

    ijson is fed a chunk at a time (its push interface) rather than iterated: its C
    iterator can hand out the events of a chunk whose parsing failed with the error still
    pending (a number past Python's 4,300-digit conversion limit), which then surfaces in
    whatever code runs next; send() raises it at once."""
    reader = _Reader(stream)
    pending = ijson.sendable_list()
    parser = ijson.basic_parse_coro(pending)
    depth = 0
    try:
        while True:
            chunk = reader.read(_READ_SIZE)
            if chunk:
                parser.send(chunk)
            else:
                parser.close()  # the end: a document cut short is refused here
            for event, value in pending:
                if event == "start_map" or event == "start_array":
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise ImportRefused(
                            f"{name} is not valid JSON for an import: it nests more than "
                            f"{MAX_DEPTH} levels deep."
                        )
                elif event == "end_map" or event == "end_array":
                    depth -= 1
                yield event, value
            del pending[:]
            if not chunk:
                break
    except ijson.JSONError as exc:
        raise ImportRefused(f"{name} is not valid JSON.") from exc
    except ValueError as exc:  # an escape that is no character, such as a lone "\udc00"
        raise ImportRefused(f"{name} is not valid JSON.") from exc
    except SystemError as exc:
        # How yajl2_c reports a number longer than Python converts (4,300 digits): the
        # ValueError underneath. Anything else is not ours to translate.
        if not isinstance(exc.__cause__ or exc.__context__, ValueError):
            raise
        raise ImportRefused(f"{name} holds a number too long to read.") from exc
    yield "eof", None
    raise ImportRefused(f"{name} ends too early.")


def _past(events: _Events, event: str) -> _Skipped:
    """Read past the list or object this event opened, building nothing."""
    depth = 1
    while depth:
        inner, _ = next(events)
        if inner == "start_map" or inner == "start_array":
            depth += 1
        elif inner == "end_map" or inner == "end_array":
            depth -= 1
    return _AN_OBJECT if event == "start_map" else _A_LIST


def _value(events: _Events) -> Any:
    """The next value if it is a plain one; a list or an object is read past (_Skipped)."""
    event, value = next(events)
    if event == "start_map" or event == "start_array":
        return _past(events, event)
    return value


def _keys(events: _Events) -> Iterator[str]:
    """The keys of the object just opened; the caller reads (or skips) each one's value."""
    while True:
        event, key = next(events)
        if event != "map_key":  # end_map
            return
        yield key


def _describe(value: Any) -> str:
    if isinstance(value, _Skipped):
        return value.kind
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        text = str(value) if not isinstance(value, int) or value.bit_length() < 128 else "…"
        return f"the number {text[:24]}"
    if isinstance(value, str):
        return "text"
    return "something else"


def _opens(events: _Events, event_name: str, where: str, name: str, *, null: bool = True) -> bool:
    """Whether the next value opens a list or an object as the field needs (False for
    null, when null is allowed); anything else is refused, naming the field."""
    event, value = next(events)
    if event == event_name:
        return True
    if event == "null" and null:
        return False
    if event == "start_map" or event == "start_array":
        value = _past(events, event)
    shape = "a list" if event_name == "start_array" else "an object"
    raise ImportRefused(f"{where}: {name} must be {shape}, not {_describe(value)}.")


def _text(value: Any, where: str, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImportRefused(f"{where}: {name} must be text, not {_describe(value)}.")
    if len(value) > limit:
        raise ImportRefused(f"{where}: {name} is longer than {limit:,} characters.")
    return value.replace("\x00", "") if "\x00" in value else value  # PostgreSQL refuses NUL


def _flag(value: Any, where: str, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ImportRefused(f"{where}: {name} must be true or false, not {_describe(value)}.")
    return value


def _identifier(value: Any, where: str, name: str) -> str | None:
    """An id as the file gives it (a whole number or text), as text; None for null."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_ID_NUMBER:
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS:
        return value
    raise ImportRefused(
        f"{where}: {name} must be an id (a whole number, or text of 1 to {MAX_ID_CHARS} "
        f"characters), not {_describe(value)}."
    )


def _tokens(value: Any, where: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    raise ImportRefused(
        f"{where}: {name} must be a whole number from 0 to {MAX_TOKENS:,}, not {_describe(value)}."
    )


_EARLIEST_SECONDS = EARLIEST.timestamp()
_LATEST_SECONDS = LATEST.timestamp()


def _out_of_range(where: str, name: str) -> ImportRefused:
    return ImportRefused(
        f"{where}: {name} is out of range (dates must fall between {EARLIEST.year} and "
        f"{LATEST.year - 1})."
    )


def _moment(value: Any, where: str, name: str) -> datetime | None:
    """A date: ISO 8601 text (UTC when it gives no offset) or seconds since 1970."""
    if value is None:
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        # Compared as numbers before any conversion: 1e300 must not reach fromtimestamp.
        if not _EARLIEST_SECONDS <= value < _LATEST_SECONDS:
            raise _out_of_range(where, name)
        return datetime.fromtimestamp(float(value), tz=UTC)
    if not isinstance(value, str):
        raise ImportRefused(f"{where}: {name} must be a date, not {_describe(value)}.")
    try:
        moment = datetime.fromisoformat(value) if len(value) <= 64 else None
    except ValueError:
        moment = None
    if moment is None:
        raise ImportRefused(f"{where}: {name} is not a date ({value[:40]!r}).")
    try:
        # Out of range once converted: 0001-01-01T00:00:00+14:00 is in year 0.
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise _out_of_range(where, name) from None
    if not EARLIEST <= moment < LATEST:
        raise _out_of_range(where, name)
    return moment


@dataclass(frozen=True)
class _Source:
    """How refusals name what they refer to: the upload, or a file of a zip."""

    entry: str  # the name of the file in a zip; "" for the uploaded file itself

    def file(self) -> str:
        return f"{self.entry} in that archive" if self.entry else "That file"

    def export(self) -> str:
        return f"{self.entry} in that archive" if self.entry else "That chatsite export"

    def conversation(self, number: int) -> str:
        return f"Conversation {number} of {self.entry}" if self.entry else f"Conversation {number}"

    def neither(self) -> ImportRefused:
        return ImportRefused(
            f"{self.file()} is neither a chatsite export nor a ChatGPT conversations.json."
        )
