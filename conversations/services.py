"""Every write. Functions are named <entity>_<action> and take keyword arguments only.

Final states are written with a conditional UPDATE ("... WHERE status = 'streaming'"):
whoever finishes an answer first wins and every later writer changes nothing, so a late
checkpoint can never overwrite a stopped or finished answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts import quotas

from . import portability, selectors
from .models import Conversation, Message, UserSettings


class ConversationBusy(Exception):
    """An answer is already streaming in this conversation."""

    user_message = (
        "An answer is still being written in this conversation. Stop it or wait for it "
        "to finish before sending another message."
    )


class RateLimited(Exception):
    """The user asked for more than the site allows right now."""

    def __init__(self, user_message: str, retry_after: float | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.retry_after = retry_after


class NotRetryable(Exception):
    """That answer cannot be retried or continued (not the latest, or not finished)."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


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


def conversation_create(
    *, owner: Any, model: str, title: str = "", system_prompt: str = ""
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
    *, user: Any, choices: list[str], default_model: Any, default_system_prompt: Any
) -> UserSettings:
    """A user's defaults for new conversations ("" model: the site's default)."""
    model = "" if default_model in ("", None) else _model_clean(default_model, choices)
    prompt = _system_prompt_clean(default_system_prompt or "")
    row, _ = UserSettings.objects.update_or_create(
        user=user, defaults={"default_model": model, "default_system_prompt": prompt}
    )
    return row


@dataclass(frozen=True)
class Turn:
    user_message: Message
    answer: Message
    # False when the submission was a duplicate (same client key): nothing was created.
    created: bool = True


def _rate_check(*, owner_id: int, new_user_message: bool) -> None:
    """Per-user limits: answers streaming at once, messages per minute, and quotas."""
    limits = quotas.limits_for(user_id=owner_id)
    concurrent = limits.concurrent_answers
    streaming = Message.objects.filter(
        conversation__owner_id=owner_id, status=Message.Status.STREAMING
    ).count()
    if concurrent and streaming >= concurrent:
        raise RateLimited(
            f"You already have {streaming} answer{'s' if streaming != 1 else ''} being "
            "written. Wait for one to finish, or stop it, then try again."
        )
    refusal = quotas.check(user_id=owner_id, new_message=new_user_message, limits=limits)
    if refusal is not None:
        raise RateLimited(refusal.message, retry_after=refusal.retry_after)
    per_minute = settings.CHATSITE_MESSAGES_PER_MINUTE
    if not per_minute or not new_user_message:
        return
    since = timezone.now() - timedelta(seconds=60)
    recent = list(
        Message.objects.filter(
            conversation__owner_id=owner_id, role=Message.Role.USER, created_at__gte=since
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:per_minute]
    )
    if len(recent) >= per_minute:
        wait = math.ceil((recent[-1] + timedelta(seconds=60) - timezone.now()).total_seconds())
        wait = max(wait, 1)
        raise RateLimited(
            f"You can send {per_minute} message{'s' if per_minute != 1 else ''} a minute. "
            f"Try again in {wait} s.",
            retry_after=wait,
        )


def turn_start(
    *,
    conversation: Conversation,
    text: str,
    generation_channel: str,
    model: str | None = None,
    client_key: str = "",
    edit_of: Any = None,
) -> Turn:
    """Save the user's message and an empty streaming answer, in one transaction.

    The message follows the last one the reader sees; with `edit_of` (a user message's
    id) it is a new version of that message instead, and the path switches to it. The
    user's words are in the database before anything is sent upstream. Refused with
    ConversationBusy when an answer is already streaming (the database constraint is the
    final judge, so two tabs racing cannot both win), with RateLimited past the user's
    limits, NotRetryable for an edit of no such message. A client key seen before returns
    the earlier turn with created=False.
    """
    text = message_text_clean(text=text)
    client_key = client_key[:64] if isinstance(client_key, str) else ""
    now = timezone.now()
    try:
        with transaction.atomic():
            if client_key:
                earlier = _turn_for_key(conversation=conversation, client_key=client_key)
                if earlier is not None:
                    return earlier
            # Read afresh, in one query: the model, instructions and path may have been
            # changed in another tab since this object was loaded.
            state = (
                Conversation.objects.filter(pk=conversation.pk)
                .annotate(
                    busy=Exists(
                        Message.objects.filter(
                            conversation_id=OuterRef("pk"), status=Message.Status.STREAMING
                        )
                    )
                )
                .values("busy", "model", "system_prompt", "leaf_id")
                .get()
            )
            if state["busy"]:
                raise ConversationBusy
            conversation.model = state["model"]
            conversation.system_prompt = state["system_prompt"]
            if edit_of is not None:
                edited = selectors.message_get(conversation=conversation, message_id=edit_of)
                if edited is None or edited.role != Message.Role.USER:
                    raise NotRetryable("That message does not exist.")
                parent_id = edited.parent_id
            else:
                parent_id = selectors.message_path_end(
                    conversation=conversation, leaf_id=state["leaf_id"]
                )
            _rate_check(owner_id=conversation.owner_id, new_user_message=True)
            user_message = Message.objects.create(
                conversation=conversation,
                role=Message.Role.USER,
                content=text,
                client_key=client_key,
                parent_id=parent_id,
            )
            quotas.record_message(user_id=conversation.owner_id)
            answer = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=model or conversation.model,
                generation_channel=generation_channel,
                parent=user_message,
                heartbeat_at=now,
            )
            # Queryset updates, not save(): this object may be stale (a title written by
            # the model since it was loaded must not be overwritten).
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=now, leaf=answer)
            Conversation.objects.filter(pk=conversation.pk, title="").update(
                title=_title_from(text), title_source=Conversation.TitleSource.WORDS
            )
            conversation.leaf = answer
    except IntegrityError as exc:
        if client_key:
            earlier = _turn_for_key(conversation=conversation, client_key=client_key)
            if earlier is not None:  # the same submission, racing itself
                return earlier
        raise ConversationBusy from exc
    return Turn(user_message=user_message, answer=answer)


def _turn_for_key(*, conversation: Conversation, client_key: str) -> Turn | None:
    user_message = conversation.messages.filter(client_key=client_key).first()
    if user_message is None:
        return None
    answer = user_message.children.order_by("-id").first()
    if answer is None:
        return None
    return Turn(user_message=user_message, answer=answer, created=False)


def _answer(*, conversation: Conversation, message_id: Any) -> Message:
    answer = selectors.message_get(conversation=conversation, message_id=message_id)
    if answer is None or answer.role != Message.Role.ASSISTANT:
        raise NotRetryable("That answer does not exist.")
    return answer


def answer_retry(
    *, conversation: Conversation, message_id: Any, generation_channel: str
) -> Message:
    """A new version of an answer (to the same user message); the earlier ones are kept
    and the reader's path switches to the new one."""
    try:
        with transaction.atomic():
            previous = _answer(conversation=conversation, message_id=message_id)
            if conversation.messages.filter(status=Message.Status.STREAMING).exists():
                raise ConversationBusy
            _rate_check(owner_id=conversation.owner_id, new_user_message=False)
            conversation.refresh_from_db(fields=["model", "system_prompt"])
            now = timezone.now()
            answer = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=conversation.model,
                generation_channel=generation_channel,
                parent_id=previous.parent_id,
                heartbeat_at=now,
            )
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=now, leaf=answer)
            conversation.leaf = answer
    except IntegrityError as exc:
        raise ConversationBusy from exc
    return answer


def answer_continue(
    *, conversation: Conversation, message_id: Any, generation_channel: str
) -> Message:
    """Reopen a partial answer so that the model can continue it in place."""
    try:
        with transaction.atomic():
            answer = _answer(conversation=conversation, message_id=message_id)
            if answer.status == Message.Status.STREAMING:
                raise ConversationBusy
            if selectors.message_path_end(conversation=conversation) != answer.pk:
                raise NotRetryable("Only the last answer can be continued.")
            continuable = answer.status in (Message.Status.INTERRUPTED, Message.Status.STOPPED) or (
                answer.status == Message.Status.COMPLETE and answer.finish_reason == "length"
            )
            if not continuable or not answer.content:
                raise NotRetryable("Only a partial answer can be continued.")
            if conversation.messages.filter(status=Message.Status.STREAMING).exists():
                raise ConversationBusy
            _rate_check(owner_id=conversation.owner_id, new_user_message=False)
            now = timezone.now()
            answer.status = Message.Status.STREAMING
            answer.finish_reason = ""
            answer.error = ""
            answer.completed_at = None
            answer.generation_channel = generation_channel
            answer.heartbeat_at = now
            answer.save(
                update_fields=[
                    "status",
                    "finish_reason",
                    "error",
                    "completed_at",
                    "generation_channel",
                    "heartbeat_at",
                ]
            )
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=now)
    except IntegrityError as exc:
        raise ConversationBusy from exc
    return answer


class VersionRefused(Exception):
    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


def conversation_show_version(*, conversation: Conversation, message_id: Any) -> Conversation:
    """Show another version of a message: the path goes through it, to its newest end.
    Remembered on the conversation, so reloads and other tabs see the same path."""
    with transaction.atomic():
        if conversation.messages.filter(status=Message.Status.STREAMING).exists():
            raise VersionRefused(
                "An answer is still being written. Stop it or wait for it to finish "
                "before switching versions."
            )
        leaf = selectors.message_version_leaf(conversation=conversation, message_id=message_id)
        if leaf is None:
            raise VersionRefused("That version does not exist.")
        Conversation.objects.filter(pk=conversation.pk).update(leaf_id=leaf)
        conversation.leaf_id = leaf
    return conversation


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    if len(words) <= 60:
        return words
    return words[:60].rsplit(" ", 1)[0] + "…"


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
    old = Conversation.objects.filter(updated_at__lt=cutoff).exclude(
        messages__status=Message.Status.STREAMING
    )
    count = old.count()
    if not dry_run:
        # In batches: a first purge of a big site must not hold one huge transaction.
        while True:
            ids = list(old.values_list("pk", flat=True)[:500])
            if not ids:
                break
            Conversation.objects.filter(pk__in=ids).delete()
    return count


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and all its messages (stop its answer first)."""
    Conversation.objects.filter(pk=conversation.pk).delete()


def conversation_import(*, owner: Any, drafts: list[portability.Draft]) -> list[Conversation]:
    """Create the owner's conversations from parsed drafts: all of them or, on any
    failure, none. Ids are always new: a file can never touch an existing conversation."""
    created = []
    now = timezone.now()
    with transaction.atomic():
        for draft in drafts:
            conversation = Conversation.objects.create(
                owner=owner,
                title=draft.title,
                title_source=draft.title_source if draft.title else "",
                model=draft.model or settings.OPENAI_MODEL,
                system_prompt=draft.system_prompt,
                pinned=draft.pinned,
                archived=draft.archived,
            )
            ids: dict[str, int] = {}
            stamps: dict[int, datetime] = {}
            for item in draft.messages:  # parents before children: ids keep that order
                message = Message.objects.create(
                    conversation=conversation,
                    parent_id=ids.get(item.parent) if item.parent else None,
                    role=item.role,
                    content=item.content,
                    status=item.status,
                    finish_reason=item.finish_reason,
                    error=item.error,
                    model=item.model,
                    prompt_tokens=item.prompt_tokens,
                    completion_tokens=item.completion_tokens,
                    total_tokens=item.total_tokens,
                    completed_at=item.completed_at,
                )
                ids[item.key] = message.pk
                if item.created_at is not None:
                    stamps[message.pk] = item.created_at
            for pk, moment in stamps.items():  # auto_now_add ignores values given on create
                Message.objects.filter(pk=pk).update(created_at=moment)
            Conversation.objects.filter(pk=conversation.pk).update(
                leaf_id=ids.get(draft.current) if draft.current else None,
                created_at=draft.created_at or now,
                updated_at=draft.updated_at or draft.created_at or now,
            )
            created.append(conversation)
    return created


def user_password_confirm(*, user: Any, password: Any) -> None:
    """ValidationError unless this is the user's password (before anything irreversible)."""
    if not isinstance(password, str) or not password or not user.check_password(password):
        raise ValidationError("That password is not right. Nothing was deleted.")


def user_delete(*, user: Any) -> None:
    """Delete an account and everything in it (conversations, messages, settings). The
    caller has confirmed the password and stopped its streaming answers."""
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).delete()
