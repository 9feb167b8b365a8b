"""Taking data away: one conversation as chatsite's JSON (every version, status, model,
usage and timestamp) or as Markdown (what the reader sees), a download's file name, and a
zip written a piece at a time so a streamed download holds one conversation, never the
archive. Pure: the caller reads the conversations (selectors) and sends the bytes.

A message hidden by moderation is exported without its text (kept for moderators only).
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.text import slugify

from chatsite.types import Account

from .. import attachment_selectors, message_selectors, selectors
from ..models import Attachment, Conversation, Message

FORMAT = "chatsite"
VERSION = 1


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def conversation_document(
    conversation: Conversation,
    messages: list[Message],
    files: dict[int, list[tuple[Attachment, bytes]]] | None = None,
) -> dict[str, Any]:
    """One conversation with every version of every message, in id order (parents first).
    `files`: each message's attachments (with an image's bytes), exported with it."""
    local = {m.pk: n for n, m in enumerate(messages, start=1)}
    document: dict[str, Any] = {
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
    for entry, m in zip(document["messages"], messages, strict=True):
        if files and files.get(m.pk) and not m.hidden:  # hidden: kept for moderators only
            entry["attachments"] = [_attachment_entry(row, data) for row, data in files[m.pk]]
    return document


def _attachment_entry(row: Attachment, data: bytes) -> dict[str, Any]:
    """A file as the model was sent it: text files and PDFs as their text (not the PDF
    itself), images as their bytes in base64."""
    entry: dict[str, Any] = {"name": row.name, "kind": row.kind, "size": row.size}
    if row.kind == Attachment.Kind.IMAGE:
        entry["content_type"] = row.content_type
        entry["data"] = base64.b64encode(data).decode("ascii")
    else:
        entry["text"] = row.text
    return entry


def envelope(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "conversations": documents,
    }


def to_json(documents: list[dict[str, Any]]) -> bytes:
    return json.dumps(envelope(documents), ensure_ascii=False, indent=1).encode()


def _markdown_safe(name: str) -> str:
    return re.sub(r"([\\`*_{}\[\]()#+!|<>])", r"\\\1", name)


def to_markdown(
    conversation: Conversation,
    path: list[Message],
    versions: int,
    files: dict[int, list[str]] | None = None,
) -> str:
    """The conversation as the reader sees it (the current version of each turn).

    Each turn opens with a rule and the speaker in bold, never a heading: an answer's own
    headings, at any level, cannot be taken for a turn, and each message's text is as it
    was written (no heading demoted), except that a code fence left open (a stopped
    answer) is closed, so that it does not swallow the turns after it."""
    lines = [f"# {conversation.display_title}", ""]
    if conversation.system_prompt:
        lines += ["> Instructions: " + conversation.system_prompt.replace("\n", "\n> "), ""]
    for message in path:
        if message.role == Message.Role.USER:
            speaker = "**You**"
        else:
            speaker = f"**Assistant** ({message.model})" if message.model else "**Assistant**"
        text = "*(Hidden by moderation.)*" if message.hidden else _fences_closed(message.content)
        lines += ["---", "", speaker, "", text.strip("\n"), ""]
        for name in (files or {}).get(message.pk, []):
            lines += [f"*(Attached: {_markdown_safe(name)})*", ""]
        if message.role == Message.Role.ASSISTANT and message.status != Message.Status.COMPLETE:
            lines += [f"*({message.get_status_display()})*", ""]
    extra = versions - len(path)
    if extra > 0:
        lines += ["---", "", f"*{extra} other version(s) of messages are in the JSON export.*"]
    return "\n".join(lines).rstrip() + "\n"


_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def _fences_closed(text: str) -> str:
    """The text with a code fence it leaves open closed (CommonMark's rules: the closing
    fence is the opening character, at least as many, and nothing else on its line)."""
    opened = ""
    for line in text.split("\n"):
        fence = _FENCE_LINE.match(line)
        if fence is None:
            continue
        marker, rest = fence.groups()
        if not opened:
            if not (marker[0] == "`" and "`" in rest):  # a backtick fence's info has none
                opened = marker
        elif marker[0] == opened[0] and len(marker) >= len(opened) and not rest.strip():
            opened = ""
    return f"{text.rstrip()}\n{opened}" if opened else text


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


EXPORT_BATCH = 20  # conversations read per query while the zip of all of them streams


def batches(ids: list[int]) -> list[list[int]]:
    return [ids[start : start + EXPORT_BATCH] for start in range(0, len(ids), EXPORT_BATCH)]


def zip_add_batch(*, user: Account, ids: list[int], archive: ZipStream) -> bytes:
    """A batch of the user's conversations into the zip (JSON with every version, and
    Markdown as shown); the bytes ready to send."""
    out = b""
    for conversation, messages in selectors.conversation_batch(user=user, ids=ids):
        stem = "conversations/" + file_stem(conversation)
        files = attachment_selectors.attachments_for_export(message_ids=[m.pk for m in messages])
        document = conversation_document(conversation, messages, files)
        out += archive.add(f"{stem}.json", to_json([document]))
        path = [item.message for item in message_selectors.message_list(conversation=conversation)]
        names = {pk: [row.name for row, _ in rows] for pk, rows in files.items()}
        markdown = to_markdown(conversation, path, len(messages), names)
        out += archive.add(f"{stem}.md", markdown.encode())
    return out
