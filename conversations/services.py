"""Every write. Functions are named <entity>_<action> and take keyword arguments only.

Final states are written with a conditional UPDATE ("... WHERE status = 'streaming'"):
whoever finishes an answer first wins and every later writer changes nothing, so a late
checkpoint can never overwrite a stopped or finished answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Conversation, Message


class ConversationBusy(Exception):
    """An answer is already streaming in this conversation."""

    user_message = (
        "An answer is still being written in this conversation. Stop it or wait for it "
        "to finish before sending another message."
    )


def user_create(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    """Create an account; the very first account of the site becomes its superuser."""
    User = get_user_model()
    with transaction.atomic():
        first = not User.objects.exists()
        if first:
            return User.objects.create_superuser(username=username, email=email, password=password)
        return User.objects.create_user(username=username, email=email, password=password)


def message_text_clean(*, text: Any) -> str:
    """The text of a user message, or ValidationError with a sentence for the page."""
    if not isinstance(text, str):
        raise ValidationError("A message must be text.")
    limit = settings.CHATSITE_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise ValidationError(
            f"That message is {len(text):,} characters long; the limit is {limit:,}."
        )
    if not text.strip():
        raise ValidationError("Type a message before sending.")
    return text


def conversation_create(*, owner: Any, model: str, title: str = "") -> Conversation:
    return Conversation.objects.create(owner=owner, model=model, title=title[:200])


@dataclass(frozen=True)
class Turn:
    user_message: Message
    answer: Message


def turn_start(
    *, conversation: Conversation, text: str, generation_channel: str, model: str | None = None
) -> Turn:
    """Save the user's message and an empty streaming answer, in one transaction.

    The user's words are in the database before anything is sent upstream. Refused with
    ConversationBusy when an answer is already streaming (the database constraint is the
    final judge, so two tabs racing cannot both win).
    """
    text = message_text_clean(text=text)
    now = timezone.now()
    try:
        with transaction.atomic():
            if conversation.messages.filter(status=Message.Status.STREAMING).exists():
                raise ConversationBusy
            user_message = Message.objects.create(
                conversation=conversation, role=Message.Role.USER, content=text
            )
            answer = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=model or conversation.model,
                generation_channel=generation_channel,
            )
            if not conversation.title:
                conversation.title = _title_from(text)
            conversation.updated_at = now
            conversation.save(update_fields=["title", "updated_at"])
    except IntegrityError as exc:
        raise ConversationBusy from exc
    return Turn(user_message=user_message, answer=answer)


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    if len(words) <= 60:
        return words
    return words[:60].rsplit(" ", 1)[0] + "…"


def message_checkpoint(
    *, message_id: int, content: str, first_token_at: datetime | None = None
) -> bool:
    """Save the text so far of a streaming answer; False if it is no longer streaming."""
    fields: dict[str, Any] = {"content": content}
    if first_token_at is not None:
        fields["first_token_at"] = first_token_at
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        **fields
    )
    return updated == 1


def message_finalize(
    *,
    message_id: int,
    content: str,
    status: str,
    finish_reason: str = "",
    error: str = "",
    upstream_request_id: str = "",
    first_token_at: datetime | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    total_tokens: int | None = None,
) -> Message | None:
    """Give a streaming answer its final state. Returns it, or None if already final."""
    if status not in Message.FINAL_STATUSES:
        raise ValueError(f"not a final status: {status}")
    now = timezone.now()
    with transaction.atomic():
        updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
            content=content,
            status=status,
            finish_reason=finish_reason[:32],
            error=error,
            upstream_request_id=upstream_request_id[:200],
            first_token_at=first_token_at,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            completed_at=now,
            generation_channel="",
        )
        if not updated:
            return None
        message = Message.objects.select_related("conversation").get(pk=message_id)
        Conversation.objects.filter(pk=message.conversation_id).update(updated_at=now)
    return message
