"""Taking data away and bringing it in: chatsite's JSON and Markdown exports, and the
parsing of imports (chatsite JSON or zip, ChatGPT's conversations.json).

Parsing is pure: a file becomes plain `Draft` objects, one conversation at a time, every
field and limit checked as it is read. The whole file is checked before a single row is
written (services.import_job_run then writes it in short transactions). Imported text is
stored as it is and, like any model text, only ever rendered through the sanitising
markdown renderer or escaped.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any

import ijson
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone
from django.utils.text import slugify

from .models import Conversation, Message

FORMAT = "chatsite"
VERSION = 1


class ImportRefused(Exception):
    """A file that cannot be imported; the message says why, for the person."""


# --- export ------------------------------------------------------------------------------


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def conversation_document(conversation: Conversation, messages: list[Message]) -> dict[str, Any]:
    """One conversation with every version of every message, in id order (parents first)."""
    local = {m.pk: n for n, m in enumerate(messages, start=1)}
    return {
        "title": conversation.title,
        "title_source": conversation.title_source,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "pinned": conversation.pinned,
        "archived": conversation.archived,
        "created_at": _stamp(conversation.created_at),
        "updated_at": _stamp(conversation.updated_at),
        "current_message": local.get(conversation.leaf_id) if conversation.leaf_id else None,
        "messages": [
            {
                "id": local[m.pk],
                "parent": local.get(m.parent_id) if m.parent_id else None,
                "role": m.role,
                # Hidden by moderation: kept for moderators, not handed out.
                "content": "" if m.hidden else m.content,
                "hidden": m.hidden,
                "status": m.status,
                "finish_reason": m.finish_reason,
                "error": m.error,
                "model": m.model,
                "usage": {
                    "prompt_tokens": m.prompt_tokens,
                    "completion_tokens": m.completion_tokens,
                    "total_tokens": m.total_tokens,
                },
                "created_at": _stamp(m.created_at),
                "completed_at": _stamp(m.completed_at),
            }
            for m in messages
        ],
    }


def envelope(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "conversations": documents,
    }


def to_json(documents: list[dict[str, Any]]) -> bytes:
    return json.dumps(envelope(documents), ensure_ascii=False, indent=1).encode()


def to_markdown(conversation: Conversation, path: list[Message], versions: int) -> str:
    """The conversation as the reader sees it (the current version of each turn)."""
    lines = [f"# {conversation.display_title}", ""]
    if conversation.system_prompt:
        lines += ["> Instructions: " + conversation.system_prompt.replace("\n", "\n> "), ""]
    for message in path:
        if message.role == Message.Role.USER:
            lines.append("## You")
        else:
            lines.append(f"## Assistant ({message.model})" if message.model else "## Assistant")
        text = "*(Hidden by moderation.)*" if message.hidden else message.content
        lines += ["", text or "", ""]
        if message.role == Message.Role.ASSISTANT and message.status != Message.Status.COMPLETE:
            lines += [f"*({message.get_status_display()})*", ""]
    extra = versions - len(path)
    if extra > 0:
        lines.append(f"*{extra} other version(s) of messages are in the JSON export.*")
    return "\n".join(lines).rstrip() + "\n"


def file_stem(conversation: Conversation) -> str:
    slug = slugify(conversation.display_title)[:50] or "conversation"
    return f"{conversation.created_at:%Y-%m-%d}-{slug}-{conversation.public_id.hex[:8]}"


class ZipStream:
    """A zip written to memory a piece at a time: drain() hands over what is ready, so a
    streaming response holds one conversation at a time, never the whole archive."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._written = 0
        self._zip = zipfile.ZipFile(self, "w", compression=zipfile.ZIP_DEFLATED)  # type: ignore[call-overload]  # a write-only stream is enough for "w"

    # The file-like side zipfile writes to: append-only, no seeking.
    def write(self, data: bytes) -> int:
        self._buffer.write(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def add(self, name: str, data: bytes) -> bytes:
        self._zip.writestr(name, data)
        return self.drain()

    def close(self) -> bytes:
        self._zip.close()
        return self.drain()

    def drain(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data


# --- import -----------------------------------------------------------------------------
#
# A file is read as a stream of JSON events (ijson), never loaded whole: each conversation
# is built from the events with every limit applied as it is read (conversations in the
# file, messages and children per conversation, nesting depth, text length), and values
# the import does not use are read past without being built. So the cost of a file is
# bounded per byte of it, and memory by one conversation, whatever the file holds.

MAX_DEPTH = 64  # nesting levels; a ChatGPT export needs about a dozen
MAX_ID_CHARS = 200
MAX_ID_NUMBER = 2**63 - 1
MAX_TOKENS = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL
# Moments must survive conversion to UTC and to any time zone they are shown in.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
_READ_SIZE = 64 * 1024
_BOM = b"\xef\xbb\xbf"
_COPY_IN_MEMORY = 1_000_000  # an upload's copy stays in memory up to this size


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


@dataclass
class ImportTotals:
    """What a checked file holds: the import's progress counts against these."""

    conversations: int = 0
    messages: int = 0


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


def upload_copy(upload: UploadedFile) -> IO[bytes]:
    """A private copy of an uploaded file, at most the import limit: the request's own
    file is gone when the response is sent, and a large import is written after that.
    The caller closes it."""
    limit = settings.CHATSITE_IMPORT_MAX_BYTES
    too_large = f"That file is larger than {limit // 1_000_000} MB."
    if upload.size is not None and upload.size > limit:
        raise ImportRefused(too_large)
    copy = tempfile.SpooledTemporaryFile(max_size=_COPY_IN_MEMORY)  # noqa: SIM115  # returned open
    size = 0
    for chunk in upload.chunks():
        size += len(chunk)
        if size > limit:
            copy.close()
            raise ImportRefused(too_large)
        copy.write(chunk)
    copy.seek(0)
    return copy


def import_check(upload: IO[bytes]) -> ImportTotals:
    """Read the whole file and check every field of it, or ImportRefused saying why
    not. Nothing is kept but the counts."""
    totals = ImportTotals()
    for draft in import_drafts(upload):
        totals.conversations += 1
        totals.messages += len(draft.messages)
        del draft  # not held while the next one is built
    return totals


def import_drafts(upload: IO[bytes]) -> Iterator[Draft]:
    """The conversations of an uploaded file (chatsite JSON or zip, ChatGPT's
    conversations.json), one at a time, each checked; ImportRefused at the first thing
    wrong. Deterministic: a file that passed import_check yields the same drafts again."""
    limits = _Limits.current()
    tally = _Tally(limits.conversations)
    upload.seek(0)
    archive = upload.read(4) == b"PK\x03\x04"
    upload.seek(0)
    drafts = (
        _zip_drafts(upload, tally, limits) if archive else _json_drafts(upload, "", tally, limits)
    )
    found = 0
    for draft in drafts:
        found += 1
        yield draft
        del draft  # memory holds the conversation being read, not the last one too
    if not found:
        raise ImportRefused(f"That {'archive' if archive else 'file'} holds no conversations.")


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


# What a damaged or hostile zip makes zipfile raise (ValueError: a negative seek, a name
# that is not UTF-8).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError)


def _zip_drafts(upload: IO[bytes], tally: _Tally, limits: _Limits) -> Iterator[Draft]:
    unreadable = "That file is not a readable zip archive."
    try:
        archive = zipfile.ZipFile(upload)
        entries = [i for i in archive.infolist() if i.filename.endswith(".json") and not i.is_dir()]
    except _ZIP_ERRORS as exc:
        raise ImportRefused(unreadable) from exc
    # Checked before inflating anything: a small zip must not unpack to gigabytes (and an
    # entry never inflates past the size it declares: zipfile stops there).
    if sum(i.file_size for i in entries) > limits.bytes:
        raise ImportRefused("That archive unpacks to more than the import limit.")
    if len(entries) > limits.conversations:
        raise ImportRefused("That archive holds too many files.")
    for info in entries:
        if info.flag_bits & 0x1:
            raise ImportRefused("That archive is encrypted.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ImportRefused("That archive uses a compression this site cannot read.")
    for info in entries:
        name = info.filename[:100]
        try:
            handle = archive.open(info)
        except _ZIP_ERRORS as exc:
            raise ImportRefused(unreadable) from exc
        with handle:
            try:
                # The same parser, fed as the entry inflates: nothing is unpacked whole.
                yield from _json_drafts(handle, name, tally, limits)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise ImportRefused(f"{name} in that archive is damaged.") from exc


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


def _json_drafts(stream: IO[bytes], entry: str, tally: _Tally, limits: _Limits) -> Iterator[Draft]:
    source = _Source(entry)
    events = _events(stream, source.file())
    event, _ = next(events)
    if event == "start_map":
        yield from _chatsite_document(events, source, tally, limits)
    elif event == "start_array":
        yield from _chatgpt_document(events, source, tally, limits)
    else:
        raise source.neither()
    next(events)  # the end: anything after the document is refused by the parser


# chatsite's own export: {"format": "chatsite", "version": 1, "conversations": [...]}, its
# keys in any order (judged at the end when they come after the conversations; nothing is
# written before the whole file has been read).


def _chatsite_document(
    events: _Events, source: _Source, tally: _Tally, limits: _Limits
) -> Iterator[Draft]:
    missing = object()
    form: Any = missing
    version: Any = missing
    listed = False

    def check(final: bool) -> None:
        if (form is not missing and form != FORMAT) or (final and form is missing):
            raise source.neither()
        wrong = version is missing or type(version) is not int or version != VERSION
        # A version read before the format is judged once the format is known.
        if wrong and (final or (form is not missing and version is not missing)):
            raise ImportRefused(f"{source.export()} comes from an unknown version.")

    for key in _keys(events):
        if key == "format":
            form = _value(events)
            check(final=False)
        elif key == "version":
            version = _value(events)
            check(final=False)
        elif key == "conversations":
            if not _opens(events, "start_array", source.export(), "conversations"):
                raise ImportRefused(f"{source.export()} has no list of conversations.")
            listed = True
            number = 0
            while True:
                event, value = next(events)
                if event == "end_array":
                    break
                number += 1
                tally.conversation()
                if event != "start_map":
                    found = _describe(_past(events, event) if event == "start_array" else value)
                    where = source.conversation(number)
                    raise ImportRefused(f"{where} is not a conversation, but {found}.")
                yield _chatsite_conversation(events, source.conversation(number), limits)
        else:
            _value(events)
    check(final=True)
    if not listed:
        raise ImportRefused(f"{source.export()} has no list of conversations.")


def _chatsite_conversation(events: _Events, where: str, limits: _Limits) -> Draft:
    draft = Draft(title="", model="")
    keys: set[str] = set()
    current: str | None = None
    has_messages = False
    for key in _keys(events):
        if key == "messages":
            _opens(events, "start_array", where, "messages", null=False)
            has_messages = True
            _chatsite_messages(events, where, draft, keys, limits)
        elif key == "title":
            draft.title = _text(_value(events), where, "title", 200)
        elif key == "title_source":
            source = _text(_value(events), where, "title_source", 16)
            # An unknown source is the person's own title (a model never overwrites it).
            known = source in Conversation.TitleSource.values
            draft.title_source = source if known else Conversation.TitleSource.USER
        elif key == "model":
            draft.model = _text(_value(events), where, "model", 200)
        elif key == "system_prompt":
            limit = settings.CHATSITE_MAX_SYSTEM_PROMPT_CHARS
            draft.system_prompt = _text(_value(events), where, "system_prompt", limit)
        elif key == "pinned":
            draft.pinned = _flag(_value(events), where, "pinned")
        elif key == "archived":
            draft.archived = _flag(_value(events), where, "archived")
        elif key == "created_at":
            draft.created_at = _moment(_value(events), where, "created_at")
        elif key == "updated_at":
            draft.updated_at = _moment(_value(events), where, "updated_at")
        elif key == "current_message":
            current = _identifier(_value(events), where, "current_message")
        else:
            _value(events)
    if not has_messages:
        raise ImportRefused(f"{where} is not a conversation with messages.")
    draft.current = current if current in keys else None
    return draft


def _chatsite_messages(
    events: _Events, where: str, draft: Draft, keys: set[str], limits: _Limits
) -> None:
    number = 0
    while True:
        event, value = next(events)
        if event == "end_array":
            return
        number += 1
        if number > limits.messages:
            raise ImportRefused(
                f"{where} has more than {limits.messages:,} messages; at most "
                f"{limits.messages:,} can be imported in one conversation."
            )
        at = f"{where}, message {number}"
        if event != "start_map":
            found = _describe(_past(events, event) if event == "start_array" else value)
            raise ImportRefused(f"{at} is not an object, but {found}.")
        draft.messages.append(_chatsite_message(events, at, keys, limits))


_MESSAGE_FIELDS = frozenset(
    {
        "id",
        "parent",
        "role",
        "content",
        "hidden",
        "status",
        "finish_reason",
        "error",
        "model",
        "created_at",
        "completed_at",
    }
)
_TOKEN_FIELDS = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})


def _chatsite_message(events: _Events, at: str, keys: set[str], limits: _Limits) -> DraftMessage:
    raw: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    # The hot loop of a large export: events pulled directly, no helper per field.
    while True:
        event, key = next(events)
        if event != "map_key":  # end_map
            break
        event, value = next(events)
        if event == "start_map" or event == "start_array":
            if key == "usage" and event == "start_map":
                for name in _keys(events):
                    if name in _TOKEN_FIELDS:
                        usage[name] = _value(events)
                    else:
                        _value(events)
                continue
            value = _past(events, event)
        if key in _MESSAGE_FIELDS:
            raw[key] = value
        elif key == "usage" and value is not None:
            raise ImportRefused(f"{at}: usage must be an object, not {_describe(value)}.")
    key = _identifier(raw.get("id"), at, "id")
    if key is None:
        raise ImportRefused(f"{at} has no id.")
    if key in keys:
        raise ImportRefused(f"{at}: two messages share the id {key[:20]}.")
    parent = _identifier(raw.get("parent"), at, "parent")
    if parent is not None and parent not in keys:
        # Parents come first in an export; anything else could hide a cycle.
        raise ImportRefused(f"{at} refers to a parent that comes later (or not at all).")
    role = raw.get("role")
    if not isinstance(role, str) or role not in (Message.Role.USER, Message.Role.ASSISTANT):
        raise ImportRefused(f'{at} has an unknown role (role must be "user" or "assistant").')
    status = raw.get("status") or Message.Status.COMPLETE
    if not isinstance(status, str) or (
        status not in Message.FINAL_STATUSES and status != Message.Status.STREAMING
    ):
        raise ImportRefused(f"{at} has an unknown status.")
    if role == Message.Role.USER:
        status = Message.Status.COMPLETE
    elif status == Message.Status.STREAMING:
        status = Message.Status.INTERRUPTED  # nothing is writing it any more
    _flag(raw.get("hidden"), at, "hidden")  # checked; a hidden message's text is not exported
    message = DraftMessage(
        key=key,
        parent=parent,
        role=role,
        content=_text(raw.get("content"), at, "content", limits.chars),
        status=status,
        finish_reason=_text(raw.get("finish_reason"), at, "finish_reason", 32),
        error=_text(raw.get("error"), at, "error", 2000),
        model=_text(raw.get("model"), at, "model", 200),
        prompt_tokens=_tokens(usage.get("prompt_tokens"), at, "usage.prompt_tokens"),
        completion_tokens=_tokens(usage.get("completion_tokens"), at, "usage.completion_tokens"),
        total_tokens=_tokens(usage.get("total_tokens"), at, "usage.total_tokens"),
        created_at=_moment(raw.get("created_at"), at, "created_at"),
        completed_at=_moment(raw.get("completed_at"), at, "completed_at"),
    )
    keys.add(key)
    return message


# ChatGPT's conversations.json: a list of conversations, each a tree of nodes ("mapping")
# linked both ways (parent, children). Only user and assistant text is kept; other nodes
# (system, tools, hidden) are skipped and their children re-attached to the nearest kept
# ancestor. Branches (several children) become versions.


@dataclass(slots=True)
class _Node:
    parent: str | None = None
    children: list[str] = field(default_factory=list)
    role: str | None = None
    text: str = ""
    hidden: bool = False
    model: str = ""
    created_at: datetime | None = None
    kept: bool = False
    text_field: str = "message.content.text"  # where the text came from, for a refusal


def _chatgpt_document(
    events: _Events, source: _Source, tally: _Tally, limits: _Limits
) -> Iterator[Draft]:
    number = 0
    while True:
        event, value = next(events)
        if event == "end_array":
            return
        number += 1
        tally.conversation()
        if event != "start_map":
            # Read past it first: a list nested absurdly deep is refused as such.
            found = _describe(_past(events, event) if event == "start_array" else value)
            if number == 1:
                raise source.neither()
            where = source.conversation(number)
            raise ImportRefused(f"{where} is not a ChatGPT conversation, but {found}.")
        # Without a message tree the first one says the file is no ChatGPT export at all.
        neither = source.neither() if number == 1 else None
        draft = _chatgpt_conversation(events, source.conversation(number), limits, neither)
        if draft is not None:
            yield draft


def _chatgpt_conversation(
    events: _Events, where: str, limits: _Limits, neither: ImportRefused | None
) -> Draft | None:
    draft = Draft(title="", model="")
    nodes: dict[str, _Node] | None = None
    current: str | None = None
    for key in _keys(events):
        if key == "mapping":
            if _opens(events, "start_map", where, "mapping"):
                nodes = _chatgpt_mapping(events, where, limits)
        elif key == "title":
            draft.title = _text(_value(events), where, "title", 200)
        elif key == "create_time":
            draft.created_at = _moment(_value(events), where, "create_time")
        elif key == "update_time":
            draft.updated_at = _moment(_value(events), where, "update_time")
        elif key == "current_node":
            current = _identifier(_value(events), where, "current_node")
        else:
            _value(events)
    if nodes is None:
        raise neither or ImportRefused(f"{where} has no message tree (mapping).")
    nearest = _chatgpt_walk(nodes, draft)
    if not draft.messages:
        return None
    draft.current = nearest.get(current) if current is not None else None
    return draft


def _chatgpt_mapping(events: _Events, where: str, limits: _Limits) -> dict[str, _Node]:
    nodes: dict[str, _Node] = {}
    references = 0
    for key in _keys(events):
        if len(nodes) >= limits.messages:
            raise ImportRefused(
                f"{where} has more than {limits.messages:,} messages; at most "
                f"{limits.messages:,} can be imported in one conversation."
            )
        at = f'{where}, node "{key[:40]}"'
        if key in nodes:
            raise ImportRefused(f"{at} appears twice.")
        _opens(events, "start_map", at, "the node", null=False)
        node = _Node()
        problem: str | None = None
        for name in _keys(events):
            if name == "parent":
                node.parent = _identifier(_value(events), at, "parent")
            elif name == "children":
                if not _opens(events, "start_array", at, "children"):
                    continue
                while True:
                    event, value = next(events)
                    if event == "end_array":
                        break
                    references += 1
                    # A tree of n nodes holds n - 1 links: past what the largest allowed
                    # tree holds, refuse at once rather than read (and walk) padding.
                    if references >= limits.messages:
                        raise ImportRefused(
                            f"{where}: its children lists name more messages than a "
                            f"conversation of at most {limits.messages:,} messages can hold."
                        )
                    if event != "string":
                        if event == "start_map" or event == "start_array":
                            value = _past(events, event)
                        found = _describe(value)
                        raise ImportRefused(f"{at}: children must list node ids, not {found}.")
                    node.children.append(value)
            elif name == "message":
                problem = _chatgpt_message(events, at, node)
            else:
                _value(events)
        if node.role in (Message.Role.USER, Message.Role.ASSISTANT):
            if problem:
                raise ImportRefused(problem)
            node.kept = bool(node.text.strip()) and not node.hidden
        if node.kept and len(node.text) > limits.chars:
            raise ImportRefused(
                f"{at}: {node.text_field} is longer than {limits.chars:,} characters."
            )
        if not node.kept:
            node.text = ""  # tool output and the like: not kept, not held
        nodes[key] = node
    if references > max(len(nodes) - 1, 0):
        raise ImportRefused(
            f"{where}: its children lists name {references:,} messages, more than a tree "
            f"of {len(nodes):,} messages can hold."
        )
    return nodes


def _chatgpt_message(events: _Events, at: str, node: _Node) -> str | None:
    """Fill the node from its message. Returns what is wrong with the content's shape,
    which matters only if the node is a user's or assistant's (tools' content varies)."""
    if not _opens(events, "start_map", at, "message"):
        return None
    problem: str | None = None
    texts: list[str] = []
    images = 0
    has_parts = False
    text = ""
    for name in _keys(events):
        if name == "author":
            if _opens(events, "start_map", at, "message.author"):
                for inner in _keys(events):
                    if inner == "role":
                        node.role = _text(_value(events), at, "message.author.role", 64) or None
                    else:
                        _value(events)
        elif name == "content":
            if not _opens(events, "start_map", at, "message.content"):
                continue
            for inner in _keys(events):
                if inner == "parts":
                    event, value = next(events)
                    if event == "start_array":
                        has_parts = True
                        while True:
                            event, value = next(events)
                            if event == "end_array":
                                break
                            if event == "string":
                                texts.append(value)
                            elif event == "start_map":
                                images += 1  # an image or a file: a marker, not its data
                                _past(events, event)
                            elif event == "start_array":
                                _past(events, event)  # anything else is no text
                    elif event != "null":
                        if event == "start_map":
                            value = _past(events, event)
                        found = _describe(value)
                        problem = f"{at}: message.content.parts must be a list, not {found}."
                elif inner == "text":
                    value = _value(events)
                    if isinstance(value, str):
                        text = value
                    elif value is not None:
                        found = _describe(value)
                        problem = f"{at}: message.content.text must be text, not {found}."
                else:
                    _value(events)
        elif name == "metadata":
            if _opens(events, "start_map", at, "message.metadata"):
                for inner in _keys(events):
                    if inner == "model_slug":
                        slug = _text(_value(events), at, "message.metadata.model_slug", 10_000)
                        node.model = slug[:200]
                    elif inner == "is_visually_hidden_from_conversation":
                        node.hidden = _flag(_value(events), at, f"message.metadata.{inner}")
                    else:
                        _value(events)
        elif name == "create_time":
            node.created_at = _moment(_value(events), at, "message.create_time")
        else:
            _value(events)
    if has_parts:
        text = "\n\n".join(t for t in texts if t) + ("\n\n[image]" * images if images else "")
        node.text_field = "message.content.parts"
    node.text = text.replace("\x00", "") if "\x00" in text else text
    return problem


def _chatgpt_walk(nodes: dict[str, _Node], draft: Draft) -> dict[str, str | None]:
    """Breadth first from the roots (parents before children), each node once: linear in
    the nodes and links, and a cycle cannot loop. Returns each node's nearest kept
    ancestor (or itself)."""
    roots = [k for k, node in nodes.items() if node.parent is None or node.parent not in nodes]
    queue: deque[tuple[str, str | None]] = deque((root, None) for root in roots)
    nearest: dict[str, str | None] = {}
    while queue:
        key, ancestor = queue.popleft()
        if key in nearest:
            continue
        node = nodes[key]
        if node.kept and node.role is not None:
            assistant = node.role == Message.Role.ASSISTANT
            draft.messages.append(
                DraftMessage(
                    key=key,
                    parent=ancestor,
                    role=node.role,
                    content=node.text,
                    model=node.model if assistant else "",
                    created_at=node.created_at,
                )
            )
            if assistant and not draft.model:
                draft.model = node.model
            ancestor = key
        nearest[key] = ancestor
        queue.extend((c, ancestor) for c in node.children if c in nodes and c not in nearest)
    return nearest
