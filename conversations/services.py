"""Every write. Functions are named <entity>_<action> and take keyword arguments only.

Two kinds of write have a room of their own: starting answers (a message, a retry, a
continue, with the limits they count against) in turn_services.py, which raises this
module's refusals, and imports in portability/writing.py, which deletes through
conversation_delete_batched and paces its transactions with _WritePacer.

Final states are written with a conditional UPDATE ("... WHERE status = 'streaming'"):
whoever finishes an answer first wins and every later writer changes nothing, so a late
checkpoint can never overwrite a stopped or finished answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from chatsite.errors import ActionRefused
from chatsite.types import Account

from . import message_selectors
from .models import (
    FEEDBACK_COMMENT_CHARS,
    AnswerFeedback,
    ChunkLog,
    Conversation,
    Message,
    ShareLink,
    UserSettings,
)


class ConversationBusy(ActionRefused):
    """An answer is already streaming in this conversation."""

    default_message = (
        "An answer is still being written in this conversation. Stop it or wait for it "
        "to finish before sending another message."
    )


class RateLimited(ActionRefused):
    """The user asked for more than the site allows right now."""


class NotRetryable(ActionRefused):
    """That answer cannot be retried or continued (not the latest, or not finished)."""


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


def conversation_create(
    *, owner: Account, model: str, title: str = "", system_prompt: str = ""
) -> Conversation:
    return Conversation.objects.create(
        owner=owner, model=model, title=title[:200], system_prompt=system_prompt
    )


def _model_clean(model: Any, choices: list[str]) -> str:
    if not isinstance(model, str) or model not in choices:
        raise ValidationError("That model is not available here. Pick one from the list.")
    return model


def _system_prompt_clean(text: Any) -> str:
    if not isinstance(text, str):
        raise ValidationError("Instructions must be text.")
    limit = settings.CHATSITE_MAX_SYSTEM_PROMPT_CHARS
    if len(text) > limit:
        raise ValidationError(
            f"Those instructions are {len(text):,} characters long; the limit is {limit:,}."
        )
    return text.strip()


def conversation_configure(
    *,
    conversation: Conversation,
    choices: list[str],
    model: Any = None,
    system_prompt: Any = None,
) -> Conversation:
    """Pick the model for the next answers and/or set the instructions (system prompt).
    Earlier answers keep the model that wrote them. Nothing changes on a bad value."""
    fields: dict[str, str] = {}
    if model is not None:
        fields["model"] = _model_clean(model, choices)
    if system_prompt is not None:
        fields["system_prompt"] = _system_prompt_clean(system_prompt)
    if fields:
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
        for name, value in fields.items():
            setattr(conversation, name, value)
    return conversation


def user_settings_update(
    *, user: Account, choices: list[str], default_model: Any, default_system_prompt: Any
) -> UserSettings:
    """A user's defaults for new conversations ("" model: the site's default)."""
    model = "" if default_model in ("", None) else _model_clean(default_model, choices)
    prompt = _system_prompt_clean(default_system_prompt or "")
    row, _ = UserSettings.objects.update_or_create(
        user=user, defaults={"default_model": model, "default_system_prompt": prompt}
    )
    return row


class VersionRefused(ActionRefused):
    """That version cannot be shown (none such, or an answer is streaming)."""


def conversation_show_version(*, conversation: Conversation, message_id: Any) -> Conversation:
    """Show another version of a message: the path goes through it, to its newest end.
    Remembered on the conversation, so reloads and other tabs see the same path."""
    with transaction.atomic():
        if conversation.messages.filter(status=Message.Status.STREAMING).exists():
            raise VersionRefused(
                "An answer is still being written. Stop it or wait for it to finish "
                "before switching versions."
            )
        leaf = message_selectors.message_version_leaf(
            conversation=conversation, message_id=message_id
        )
        if leaf is None:
            raise VersionRefused("That version does not exist.")
        Conversation.objects.filter(pk=conversation.pk).update(leaf_id=leaf)
        conversation.leaf_id = leaf
    return conversation


def message_checkpoint(
    *, message_id: int, content: str, first_token_at: datetime | None = None
) -> bool:
    """Save the text so far of a streaming answer; False if it is no longer streaming."""
    fields: dict[str, Any] = {"content": content, "heartbeat_at": timezone.now()}
    if first_token_at is not None:
        fields["first_token_at"] = first_token_at
    updated = Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        **fields
    )
    return updated == 1


def message_checkpoints(*, rows: Iterable[tuple[int, str, datetime | None]]) -> int:
    """Checkpoints of several answers (id, text so far, first token's time) in one
    transaction; how many were still streaming."""
    saved = 0
    with transaction.atomic():
        for message_id, content, first_token_at in rows:
            saved += message_checkpoint(
                message_id=message_id, content=content, first_token_at=first_token_at
            )
    return saved


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


def message_chunk_log_save(
    *, message_id: int, entries: list[dict[str, Any]], size: int, truncated: bool
) -> ChunkLog | None:
    """Keep an answer's raw upstream body (CHATSITE_CHUNK_LOG); None if the answer is gone."""
    try:
        with transaction.atomic():
            if not Message.objects.filter(pk=message_id).exists():
                return None
            chunk_log, _ = ChunkLog.objects.update_or_create(
                message_id=message_id,
                defaults={"entries": entries, "size": size, "truncated": truncated},
            )
    except IntegrityError:  # the answer was deleted meanwhile (its conversation went)
        return None
    return chunk_log


def message_heartbeat(*, message_ids: Iterable[int]) -> int:
    """This process is alive and still writing these answers."""
    ids = list(message_ids)
    if not ids:
        return 0
    return Message.objects.filter(pk__in=ids, status=Message.Status.STREAMING).update(
        heartbeat_at=timezone.now()
    )


def message_interrupt_stale(*, older_than: float, exclude_ids: Iterable[int] = ()) -> list[Message]:
    """Mark as interrupted every streaming answer whose process stopped beating.

    Their text is the last checkpoint (at most about a second behind). Returns the
    messages that this call finalised, for the caller to announce.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than)
    stale = list(
        Message.objects.filter(status=Message.Status.STREAMING, heartbeat_at__lt=cutoff)
        .exclude(pk__in=list(exclude_ids))
        .values_list("pk", "content", "first_token_at")
    )
    done = []
    for pk, content, first_token_at in stale:
        message = message_finalize(
            message_id=pk,
            content=content,
            status=Message.Status.INTERRUPTED,
            error="The server restarted while this answer was being written.",
            first_token_at=first_token_at,
        )
        if message is not None:
            done.append(message)
    return done


def title_clean(*, text: str) -> str:
    """A model's title as plain text: one line, no markdown or quotes, at most ~60 chars."""
    line = next((part for part in text.strip().splitlines() if part.strip()), "")
    line = re.sub(r"^(?:title\s*:\s*)", "", line.strip(), flags=re.I)
    line = " ".join(line.strip(" \t\"'`*#_").split())
    if len(line) > 60:
        line = line[:60].rsplit(" ", 1)[0].rstrip(" ,.;:-") + "…"
    return line


def conversation_set_generated_title(*, conversation_id: int, title: str) -> bool:
    """Replace a first-words title with the model's; a title the user chose stays."""
    title = title_clean(text=title)
    if not title:
        return False
    updated = Conversation.objects.filter(
        pk=conversation_id, title_source=Conversation.TitleSource.WORDS
    ).update(title=title, title_source=Conversation.TitleSource.MODEL)
    return updated == 1


TITLE_MAX_CHARS = 120


def conversation_rename(*, conversation: Conversation, title: Any) -> Conversation:
    """The user's own title (kept from then on: a model never overwrites it)."""
    if not isinstance(title, str) or not title.strip():
        raise ValidationError("A title cannot be empty.")
    title = " ".join(title.split())
    if len(title) > TITLE_MAX_CHARS:
        raise ValidationError(f"A title can be at most {TITLE_MAX_CHARS} characters long.")
    Conversation.objects.filter(pk=conversation.pk).update(
        title=title, title_source=Conversation.TitleSource.USER
    )
    conversation.title, conversation.title_source = title, Conversation.TitleSource.USER
    return conversation


def conversation_set_flags(
    *, conversation: Conversation, pinned: bool | None = None, archived: bool | None = None
) -> Conversation:
    fields: dict[str, bool] = {}
    if pinned is not None:
        fields["pinned"] = conversation.pinned = pinned
    if archived is not None:
        fields["archived"] = conversation.archived = archived
    if fields:
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
    return conversation


def conversation_purge_older_than(*, days: int, dry_run: bool = False) -> int:
    """Retention: delete conversations with no activity for `days` days. One with an
    answer still streaming is left alone (its activity is now)."""
    cutoff = timezone.now() - timedelta(days=days)
    old = (
        Conversation.objects.filter(updated_at__lt=cutoff)
        .exclude(messages__status=Message.Status.STREAMING)
        # Imported conversations carry their own old dates: one being written is not
        # idle (a failed import cleans up after itself).
        .exclude(importing=True)
    )
    count = old.count()
    if not dry_run:
        # In batches: a first purge of a big site must not hold one huge transaction.
        while ids := list(old.values_list("pk", flat=True)[:200]):
            conversation_delete_batched(conversations=Conversation.objects.filter(pk__in=ids))
    return count


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and all its messages (stop its answer first)."""
    conversation_delete_batched(conversations=Conversation.objects.filter(pk=conversation.pk))


def conversation_delete_batched(*, conversations: QuerySet[Conversation]) -> None:
    """Delete conversations and their messages in short transactions: messages newest
    first (a message's children have larger ids, so none is left pointing at a deleted
    one), a few hundred at a time, then the conversations. One transaction for a whole
    account's history would hold SQLite's only write lock for many seconds (about 50 ms
    per thousand messages, search index included) while every other writer waits."""
    pacer = _WritePacer()
    size = min(settings.CHATSITE_IMPORT_BATCH_ROWS, 500)
    # Share links first: none may serve a conversation half deleted. (No transaction
    # when there are none: the usual case costs one read, not a write.)
    shares = ShareLink.objects.filter(conversation__in=conversations)
    if shares.exists():
        with pacer.transaction():
            shares.delete()
    messages = Message.objects.filter(conversation__in=conversations).order_by("-id")
    while ids := list(messages.values_list("pk", flat=True)[:size]):
        with pacer.transaction():
            Message.objects.filter(pk__in=ids).delete()
    while ids := list(conversations.values_list("pk", flat=True)[:size]):
        with pacer.transaction():
            Conversation.objects.filter(pk__in=ids).delete()


class _WritePacer:
    """Transactions that leave other writers their turn. SQLite has one writer at a time,
    and a writer waiting for the lock polls at growing intervals (up to 100 ms), so a
    writer that commits and begins again at once can keep it waiting for many batches.
    After each transaction the lock is left free for as long as it was held (at most
    about 0.1 s), which covers any waiting writer's next poll. PostgreSQL locks rows, not
    the database: no pause there."""

    def __init__(self) -> None:
        self._pausing = connection.vendor == "sqlite"
        self._held = 0.0
        self._ended: float | None = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._pausing and self._ended is not None:
            rest = min(self._held, 0.1) + 0.002 - (time.monotonic() - self._ended)
            if rest > 0:
                time.sleep(rest)
        began = time.monotonic()
        try:
            with transaction.atomic():
                yield
        finally:
            self._ended = time.monotonic()
            self._held = self._ended - began


def conversation_delete_owned(*, owner_id: int, keep_streaming: bool = False) -> int:
    """Delete all of a user's conversations, in short transactions (an account's
    deletion, or an operator's), except, with `keep_streaming`, one whose answer is still
    being written. Returns how many were deleted."""
    conversations = Conversation.objects.filter(owner_id=owner_id)
    if keep_streaming:
        conversations = conversations.exclude(messages__status=Message.Status.STREAMING)
    count = conversations.count()
    conversation_delete_batched(conversations=conversations)
    return count


def answer_feedback_set(
    *, conversation: Conversation, message_id: Any, value: Any, comment: Any = ""
) -> AnswerFeedback | None:
    """The owner's verdict on one of the conversation's finished answers: "up", "down",
    or "" to take it back (None then). A comment goes with a verdict, never alone."""
    message = message_selectors.message_get(conversation=conversation, message_id=message_id)
    if message is None or message.role != Message.Role.ASSISTANT:
        raise ValidationError("That answer does not exist.")
    if message.status == Message.Status.STREAMING:
        raise ValidationError("Wait for the answer to finish before rating it.")
    if value in ("", None):
        AnswerFeedback.objects.filter(message=message).delete()
        return None
    values = {"up": AnswerFeedback.Value.UP, "down": AnswerFeedback.Value.DOWN}
    if value not in values:
        raise ValidationError("Rate the answer as helpful or not helpful.")
    if not isinstance(comment, str):
        comment = ""
    comment = comment.strip()
    if len(comment) > FEEDBACK_COMMENT_CHARS:
        raise ValidationError(
            f"A comment can be at most {FEEDBACK_COMMENT_CHARS:,} characters long."
        )
    feedback, _ = AnswerFeedback.objects.update_or_create(
        message=message, defaults={"value": values[value], "comment": comment}
    )
    return feedback
