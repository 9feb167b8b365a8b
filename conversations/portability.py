"""Taking data away and bringing it in: chatsite's JSON and Markdown exports, and the
parsing of imports (chatsite JSON or zip, ChatGPT's conversations.json).

Parsing is pure: a file becomes plain `Draft` objects, checked against limits, before a
single row is written (services.conversation_import writes them in one transaction).
Imported text is stored as it is and, like any model text, only ever rendered through
the sanitising markdown renderer or escaped.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
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


def parse_upload(name: str, data: bytes) -> list[Draft]:
    """The conversations in an uploaded file, or ImportRefused saying why not."""
    limit = settings.CHATSITE_IMPORT_MAX_BYTES
    if len(data) > limit:
        raise ImportRefused(f"That file is larger than {limit // 1_000_000} MB.")
    if data[:4] == b"PK\x03\x04":
        return _parse_zip(data)
    return parse_json(data)


def _parse_zip(data: bytes) -> list[Draft]:
    limit = settings.CHATSITE_IMPORT_MAX_BYTES
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = [i for i in archive.infolist() if i.filename.endswith(".json")]
        # Checked before inflating anything: a small zip must not unpack to gigabytes.
        if sum(i.file_size for i in entries) > limit:
            raise ImportRefused("That archive unpacks to more than the import limit.")
        if len(entries) > settings.CHATSITE_IMPORT_MAX_CONVERSATIONS:
            raise ImportRefused("That archive holds too many files.")
        drafts: list[Draft] = []
        for info in entries:
            with archive.open(info) as handle:
                body = handle.read(limit + 1)
            if len(body) > info.file_size or len(body) > limit:
                raise ImportRefused("That archive is damaged.")
            drafts += parse_json(body)
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise ImportRefused("That file is not a readable zip archive.") from exc
    if not drafts:
        raise ImportRefused("That archive holds no conversations.")
    _check_total(drafts)
    return drafts


def parse_json(data: bytes) -> list[Draft]:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ImportRefused("That file is not valid JSON.") from exc
    if isinstance(document, dict) and document.get("format") == FORMAT:
        if document.get("version") != VERSION:
            raise ImportRefused("That chatsite export comes from an unknown version.")
        items = document.get("conversations")
        if not isinstance(items, list):
            raise ImportRefused("That chatsite export has no list of conversations.")
        drafts = [_chatsite(item, n) for n, item in enumerate(items, start=1)]
    elif isinstance(document, list) and all(
        isinstance(item, dict) and "mapping" in item for item in document
    ):
        drafts = [d for n, item in enumerate(document, start=1) if (d := _chatgpt(item, n))]
    else:
        raise ImportRefused(
            "That file is neither a chatsite export nor a ChatGPT conversations.json."
        )
    if not drafts:
        raise ImportRefused("That file holds no conversations.")
    _check_total(drafts)
    return drafts


def _check_total(drafts: list[Draft]) -> None:
    if len(drafts) > settings.CHATSITE_IMPORT_MAX_CONVERSATIONS:
        raise ImportRefused(
            f"That file holds {len(drafts):,} conversations; at most "
            f"{settings.CHATSITE_IMPORT_MAX_CONVERSATIONS:,} can be imported at once."
        )


def _text(value: Any, what: str, *, limit: int | None = None, where: str = "") -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImportRefused(f"{where}: {what} must be text.")
    limit = limit or settings.CHATSITE_IMPORT_MAX_MESSAGE_CHARS
    if len(value) > limit:
        raise ImportRefused(f"{where}: {what} is longer than {limit:,} characters.")
    return value.replace("\x00", "")  # PostgreSQL refuses NUL in text


def _moment(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _tokens(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None


def _chatsite(item: Any, n: int) -> Draft:
    where = f"Conversation {n}"
    if not isinstance(item, dict) or not isinstance(item.get("messages"), list):
        raise ImportRefused(f"{where} is not a conversation with messages.")
    raw = item["messages"]
    if len(raw) > settings.CHATSITE_IMPORT_MAX_MESSAGES:
        raise ImportRefused(f"{where} has too many messages.")
    draft = Draft(
        title=_text(item.get("title"), "its title", limit=200, where=where),
        title_source=(
            item["title_source"]
            if item.get("title_source") in Conversation.TitleSource.values
            else Conversation.TitleSource.USER
        ),
        model=_text(item.get("model"), "its model", limit=200, where=where),
        system_prompt=_text(
            item.get("system_prompt"),
            "its instructions",
            limit=settings.CHATSITE_MAX_SYSTEM_PROMPT_CHARS,
            where=where,
        ),
        pinned=item.get("pinned") is True,
        archived=item.get("archived") is True,
        created_at=_moment(item.get("created_at")),
        updated_at=_moment(item.get("updated_at")),
    )
    keys: set[str] = set()
    for m in raw:
        if not isinstance(m, dict):
            raise ImportRefused(f"{where}: a message is not an object.")
        key = str(m.get("id"))
        parent = None if m.get("parent") is None else str(m.get("parent"))
        if key in keys:
            raise ImportRefused(f"{where}: two messages share the id {key[:20]}.")
        if parent is not None and parent not in keys:
            # Parents come first in an export; anything else could hide a cycle.
            raise ImportRefused(f"{where}: a message refers to a parent that comes later.")
        role = m.get("role")
        if role not in (Message.Role.USER, Message.Role.ASSISTANT):
            raise ImportRefused(f"{where}: a message has an unknown role.")
        status = m.get("status") or Message.Status.COMPLETE
        if status not in Message.FINAL_STATUSES and status != Message.Status.STREAMING:
            raise ImportRefused(f"{where}: a message has an unknown status.")
        if role == Message.Role.USER:
            status = Message.Status.COMPLETE
        elif status == Message.Status.STREAMING:
            status = Message.Status.INTERRUPTED  # nothing is writing it any more
        usage: dict[str, Any] = m["usage"] if isinstance(m.get("usage"), dict) else {}
        keys.add(key)
        draft.messages.append(
            DraftMessage(
                key=key,
                parent=parent,
                role=role,
                content=_text(m.get("content"), "a message", where=where),
                status=status,
                finish_reason=_text(
                    m.get("finish_reason"), "a finish reason", limit=32, where=where
                ),
                error=_text(m.get("error"), "an error", limit=2000, where=where),
                model=_text(m.get("model"), "a model", limit=200, where=where),
                prompt_tokens=_tokens(usage.get("prompt_tokens")),
                completion_tokens=_tokens(usage.get("completion_tokens")),
                total_tokens=_tokens(usage.get("total_tokens")),
                created_at=_moment(m.get("created_at")),
                completed_at=_moment(m.get("completed_at")),
            )
        )
    current = item.get("current_message")
    draft.current = str(current) if current is not None and str(current) in keys else None
    return draft


def _chatgpt_text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts")
    if isinstance(parts, list):
        texts = [p for p in parts if isinstance(p, str)]
        images = sum(1 for p in parts if isinstance(p, dict))
        return "\n\n".join(t for t in texts if t) + ("\n\n[image]" * images if images else "")
    text = content.get("text")
    return text if isinstance(text, str) else ""


def _chatgpt(item: dict[str, Any], n: int) -> Draft | None:
    """A ChatGPT conversation: a tree of nodes; only user and assistant text is kept,
    other nodes (system, tools, hidden) are skipped and their children re-attached."""
    where = f"Conversation {n}"
    mapping = item.get("mapping")
    if not isinstance(mapping, dict):
        raise ImportRefused(f"{where} has no message tree.")
    if len(mapping) > settings.CHATSITE_IMPORT_MAX_MESSAGES:
        raise ImportRefused(f"{where} has too many messages.")
    nodes = {str(k): v for k, v in mapping.items() if isinstance(v, dict)}
    roots = [k for k, v in nodes.items() if v.get("parent") not in nodes]
    draft = Draft(
        title=_text(item.get("title"), "its title", limit=200, where=where),
        model="",
        created_at=_moment(item.get("create_time")),
        updated_at=_moment(item.get("update_time")),
    )
    kept: dict[str, str | None] = {}  # node -> nearest kept ancestor (or itself)
    order: list[tuple[str, str | None]] = [(root, None) for root in roots]
    visited: set[str] = set()
    while order:  # breadth first: parents before children, and cycles cannot loop
        key, ancestor = order.pop(0)
        if key in visited:
            continue
        visited.add(key)
        node = nodes[key]
        message = node.get("message") if isinstance(node.get("message"), dict) else None
        author = message.get("author") if message else None
        role = author.get("role") if isinstance(author, dict) else None
        metadata = (
            message.get("metadata") if message and isinstance(message.get("metadata"), dict) else {}
        )
        text = _chatgpt_text(message.get("content")) if message else ""
        hidden = bool(metadata.get("is_visually_hidden_from_conversation"))
        if role in ("user", "assistant") and text.strip() and not hidden:
            slug = metadata.get("model_slug")
            model: str = slug if isinstance(slug, str) else ""
            draft.messages.append(
                DraftMessage(
                    key=key,
                    parent=ancestor,
                    role=role,
                    content=_text(text, "a message", where=where),
                    model=model[:200] if role == "assistant" else "",
                    created_at=_moment(message.get("create_time")) if message else None,
                )
            )
            draft.model = draft.model or (model[:200] if role == "assistant" else "")
            ancestor = key
        kept[key] = ancestor
        children = node.get("children")
        if isinstance(children, list):
            order += [(str(c), ancestor) for c in children if str(c) in nodes]
    if not draft.messages:
        return None
    current = item.get("current_node")
    draft.current = kept.get(str(current)) if current is not None else None
    return draft
