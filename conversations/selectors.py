"""Every read of conversations and messages, scoped to the owner.

Views and the websocket consumer both go through these functions, so that "whose is
this?" is answered in exactly one place. A selector given another user's id returns
None (the caller turns that into a 404 or a refused socket), never the object.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.crypto import constant_time_compare

from .models import Conversation, Message


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _conversations(*, user: Any, archived: bool) -> QuerySet[Conversation]:
    if not getattr(user, "is_authenticated", False):
        return Conversation.objects.none()
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    return (
        Conversation.objects.filter(owner=user, archived=archived)
        .annotate(is_live=Exists(streaming))
        .order_by("-pinned", "-updated_at", "-id")
    )


def conversation_list(
    *, user: Any, limit: int = 100, archived: bool = False
) -> QuerySet[Conversation]:
    """The user's conversations: pinned first, then by last activity; archived apart."""
    return _conversations(user=user, archived=archived)[:limit]


SIDEBAR_PAGE = 30


def conversation_page(
    *, user: Any, after: str = "", size: int = SIDEBAR_PAGE, archived: bool = False
) -> tuple[list[Conversation], str]:
    """One page of the user's conversations in list order, and the cursor of the next page
    ("" when there is none). Keyset paging: a conversation moving up meanwhile is neither
    skipped nor shown twice further down."""
    rows = _conversations(user=user, archived=archived)
    if after:
        try:
            pinned_s, stamp, pk_s = after.split("|")
            pinned, moment, pk = pinned_s == "1", datetime.fromisoformat(stamp), int(pk_s)
        except ValueError:
            return [], ""
        rows = rows.filter(
            Q(pinned__lt=pinned)
            | Q(pinned=pinned, updated_at__lt=moment)
            | Q(pinned=pinned, updated_at=moment, id__lt=pk)
        )
    page = list(rows[: size + 1])
    if len(page) <= size:
        return page, ""
    last = page[size - 1]
    cursor = f"{int(last.pinned)}|{last.updated_at.isoformat()}|{last.pk}"
    return page[:size], cursor


def conversation_get(*, user: Any, public_id: Any) -> Conversation | None:
    """The user's conversation with this public id, or None (not theirs, or no such)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    uid = _as_uuid(public_id)
    if uid is None:
        return None
    return Conversation.objects.filter(owner=user, public_id=uid).first()


def user_session_is_live(*, user_id: Any, session_key: str | None) -> bool:
    """Is this socket's sign-in still valid: session not ended, user active, password same?"""
    if user_id is None or not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if str(data.get(SESSION_KEY)) != str(user_id):
        return False  # signed out (the session is gone) or someone else's
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    return constant_time_compare(str(data.get(HASH_SESSION_KEY, "")), user.get_session_auth_hash())


def message_list(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("created_at", "id"))


def message_get_streaming(*, conversation: Conversation) -> Message | None:
    return conversation.messages.filter(status=Message.Status.STREAMING).first()


def message_get(*, conversation: Conversation, message_id: int) -> Message | None:
    return conversation.messages.filter(pk=message_id).first()


def message_history_for_upstream(
    *, conversation_id: int, before_message_id: int, reply_to_id: int | None = None
) -> list[dict[str, str]]:
    """What the model is sent for an answer: every earlier turn, in order.

    Each earlier user message is followed by its latest answer with text (a retried turn
    contributes one answer, not all its attempts). Earlier attempts at the turn being
    answered are left out, so a retry starts afresh.
    """
    rows = list(
        Message.objects.filter(conversation_id=conversation_id, id__lt=before_message_id)
        .order_by("created_at", "id")
        .values_list("id", "role", "content", "reply_to_id")
    )
    latest_answer: dict[int | None, int] = {}
    for pk, role, content, reply_to in rows:
        if role == Message.Role.ASSISTANT and content:
            latest_answer[reply_to] = pk
    history = []
    for pk, role, content, reply_to in rows:
        if role == Message.Role.ASSISTANT:
            if reply_to is not None and reply_to == reply_to_id:
                continue
            if latest_answer.get(reply_to) != pk:
                continue
        elif not content:
            continue
        history.append({"role": role, "content": content})
    return history
