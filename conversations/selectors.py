"""Every read of conversations and messages, scoped to the owner.

Views and the websocket consumer both go through these functions, so that "whose is
this?" is answered in exactly one place. A selector given another user's id returns
None (the caller turns that into a 404 or a refused socket), never the object.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from .models import Conversation, Message


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def conversation_list(*, user: Any, limit: int = 100) -> QuerySet[Conversation]:
    if not getattr(user, "is_authenticated", False):
        return Conversation.objects.none()
    return Conversation.objects.filter(owner=user).order_by("-updated_at", "-id")[:limit]


def conversation_get(*, user: Any, public_id: Any) -> Conversation | None:
    """The user's conversation with this public id, or None (not theirs, or no such)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    uid = _as_uuid(public_id)
    if uid is None:
        return None
    return Conversation.objects.filter(owner=user, public_id=uid).first()


def message_list(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("created_at", "id"))


def message_get_streaming(*, conversation: Conversation) -> Message | None:
    return conversation.messages.filter(status=Message.Status.STREAMING).first()


def message_get(*, conversation: Conversation, message_id: int) -> Message | None:
    return conversation.messages.filter(pk=message_id).first()


def message_history_for_upstream(
    *, conversation_id: int, before_message_id: int
) -> list[dict[str, str]]:
    """What the model is sent: every earlier turn with text, in order."""
    rows = (
        Message.objects.filter(conversation_id=conversation_id, id__lt=before_message_id)
        .exclude(content="")
        .order_by("created_at", "id")
        .values_list("role", "content")
    )
    return [{"role": role, "content": content} for role, content in rows]
