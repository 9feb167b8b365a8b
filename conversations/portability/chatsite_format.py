"""chatsite's own export read back into drafts: {"format": "chatsite", "version": 1,
"conversations": [...]}, its keys in any order (judged at the end when they come after
the conversations; nothing is written before the whole file has been read). Every
version of every message, parents first, each field checked as it is read. Pure.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from .. import attachments
from ..attachments import Inspected
from ..models import Conversation, Message
from .exports import FORMAT, VERSION
from .reading import (
    Draft,
    DraftMessage,
    ImportRefused,
    _describe,
    _Events,
    _flag,
    _identifier,
    _keys,
    _Limits,
    _moment,
    _opens,
    _past,
    _Source,
    _Tally,
    _text,
    _tokens,
    _value,
)


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
    files: list[tuple[str, Inspected]] = []
    # The hot loop of a large export: events pulled directly, no helper per field.
    while True:
        event, key = next(events)
        if event != "map_key":  # end_map
            break
        event, value = next(events)
        if event == "start_map" or event == "start_array":
            if key == "attachments" and event == "start_array":
                files = _attachments(events, at)
                continue
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
    if files and role != Message.Role.USER:
        raise ImportRefused(f"{at}: only a user's message carries attached files.")
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
        attachments=tuple(inspected for _name, inspected in files),
        attachment_names=tuple(name for name, _inspected in files),
    )
    keys.add(key)
    return message


def _attachments(events: _Events, at: str) -> list[tuple[str, Inspected]]:
    """A message's files, each checked as an upload is: text and PDFs come as their text
    (the export carries what the model was sent), images as base64, decoded and checked
    again (type, pixels) and re-encoded. A refusal names the message and the file."""
    found: list[tuple[str, Inspected]] = []
    limit = settings.CHATSITE_ATTACHMENTS_PER_MESSAGE
    while True:
        event, _ = next(events)
        if event == "end_array":
            return found
        if event != "start_map":
            raise ImportRefused(f"{at}: an attached file must be an object.")
        raw: dict[str, Any] = {}
        for name in _keys(events):
            raw[name] = _value(events)
        if len(found) >= limit:
            raise ImportRefused(f"{at} carries more than {limit} attached files.")
        found.append(_attachment(raw, at))


def _attachment(raw: dict[str, Any], at: str) -> tuple[str, Inspected]:
    name = attachments.name_clean(_text(raw.get("name"), at, "an attached file's name", 1000))
    kind = raw.get("kind")
    where = f"{at}, attached file {name}"
    if kind in (attachments.TEXT, attachments.PDF):
        text = _text(raw.get("text"), where, "text", settings.CHATSITE_ATTACHMENT_TEXT_CHARS)
        if not text:
            raise ImportRefused(f"{where} has no text.")
        if kind == attachments.PDF and not name.lower().endswith(".txt"):
            # An export carries a PDF's text, not the PDF: it comes back as its text,
            # named so (its download is a text file, which a `.pdf` name would belie).
            name = attachments.name_clean(f"{name}.txt")
        inspected = Inspected(
            kind=kind,
            content_type="text/plain; charset=utf-8",
            data=text.encode(),
            text=text,
            pages=None,
        )
    elif kind == attachments.IMAGE:
        encoded = raw.get("data")
        # base64 is 4/3 of the bytes: a longer string is refused before decoding it.
        if not isinstance(encoded, str) or len(encoded) > (attachments.file_ceiling() * 4 // 3 + 4):
            raise ImportRefused(f"{where}: its data is missing or too large.")
        try:
            data = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ImportRefused(f"{where}: its data is not base64.") from None
        try:
            inspected = attachments.inspect(name=name, data=data)
        except ValidationError as exc:
            raise ImportRefused(f"{at}: {' '.join(exc.messages)}") from None
        if inspected.kind != attachments.IMAGE:
            raise ImportRefused(f"{where} is not an image.")
    else:
        raise ImportRefused(f'{where}: kind must be "text", "pdf" or "image".')
    # The owner's own limit on one file (a quota) is checked as the files are written.
    if len(inspected.data) > attachments.file_ceiling():
        raise ImportRefused(f"{where} is larger than a file may be.")
    return name, inspected
