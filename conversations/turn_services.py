"""Starting answers: a new message (or an edited one), a retry, a continue. Each saves what
must be in the database before anything is sent upstream, in one transaction, after the
checks every request for an answer passes: the conversation is not busy, the user is
within their rate limits and quotas (and the request is counted against them).

Writes, like services.py (<entity>_<action>(*, ...)), whose refusals (ConversationBusy,
RateLimited, NotRetryable) they raise; what runs the answer afterwards calls these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts import quotas
from chatsite.types import Account

from . import (
    attachment_selectors,
    attachment_services,
    attachments,
    message_selectors,
    usage_selectors,
)
from .models import Conversation, Message
from .services import (
    ConversationBusy,
    NotRetryable,
    RateLimited,
    conversation_create,
    message_text_clean,
)


@dataclass(frozen=True)
class Turn:
    user_message: Message
    answer: Message
    # False when the submission was a duplicate (same client key): nothing was created.
    created: bool = True
    # Whether the user's message may have files (False: none was linked or carried).
    has_files: bool = True


def _rate_check(*, owner_id: int, new_user_message: bool) -> None:
    """Per-user limits: answers streaming at once, requests per minute, and quotas.

    Every action that sends a request upstream (a message, an edit, a regenerate, a
    continue) counts alike, in the usage ledger the quotas count from: a regenerate is
    as expensive as a message, and an unlimited one would let a loop of them escape
    both the rate limit and the daily quota."""
    limits = quotas.limits_for(user_id=owner_id)
    per_minute = settings.CHATSITE_MESSAGES_PER_MINUTE
    load = usage_selectors.user_answer_load(user_id=owner_id, seconds=60, nth=per_minute)
    concurrent, streaming = limits.concurrent_answers, load.streaming
    if concurrent and streaming >= concurrent:
        raise RateLimited(
            f"You already have {streaming} answer{'s' if streaming != 1 else ''} being "
            "written. Wait for one to finish, or stop it, then try again."
        )
    refusal = quotas.check(user_id=owner_id, limits=limits)
    if refusal is not None:
        raise RateLimited(refusal.message, retry_after=refusal.retry_after)
    if load.nth_recent_at is not None:  # per_minute requests in the last minute already
        wait = math.ceil(
            (load.nth_recent_at + timedelta(seconds=60) - timezone.now()).total_seconds()
        )
        wait = max(wait, 1)
        plural = "s" if per_minute != 1 else ""
        what = (
            f"send {per_minute} message{plural} a minute"
            if new_user_message
            else f"ask for {per_minute} answer{plural} a minute (messages, regenerations "
            "and continues together)"
        )
        raise RateLimited(f"You can {what}. Try again in {wait} s.", retry_after=wait)


def turn_start(
    *,
    conversation: Conversation,
    text: str,
    generation_channel: str,
    model: str | None = None,
    client_key: str = "",
    edit_of: Any = None,
    attachment_ids: Any = None,
) -> Turn:
    """Save the user's message and an empty streaming answer, in one transaction.
    `attachment_ids`: the sender's pending attachments, given to the message (an edit
    without new ones keeps the edited version's).

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
                .values("busy", "model", "system_prompt", "leaf_id", "title")
                .get()
            )
            if state["busy"]:
                earlier = _turn_for_key(conversation=conversation, client_key=client_key)
                if earlier is not None:  # the same submission, its answer still streaming
                    return earlier
                raise ConversationBusy
            conversation.model = state["model"]
            conversation.system_prompt = state["system_prompt"]
            edited = None
            if edit_of is not None:
                edited = message_selectors.message_get(
                    conversation=conversation, message_id=edit_of
                )
                if edited is None or edited.role != Message.Role.USER:
                    raise NotRetryable("That message does not exist.")
                parent_id = edited.parent_id
            else:
                parent_id = message_selectors.message_path_end(
                    conversation=conversation, leaf_id=state["leaf_id"]
                )
            # Before the limits: a submission seen before (its client key is unique in the
            # conversation) fails here, and is answered with its earlier turn below.
            user_message = Message.objects.create(
                conversation=conversation,
                role=Message.Role.USER,
                content=text,
                client_key=client_key,
                parent_id=parent_id,
            )
            _rate_check(owner_id=conversation.owner_id, new_user_message=True)
            linked = attachment_services.attachments_link(
                message=user_message, ids=attachment_ids, model=model or conversation.model
            )
            carried = False
            if edited is not None and not linked:
                attachment_services.attachments_carry(source_id=edited.pk, message=user_message)
                carried = True
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
            # the model since it was loaded must not be overwritten). One update when the
            # conversation still has no title, unless one arrived since `state` was read.
            here = Conversation.objects.filter(pk=conversation.pk)
            titled = not state["title"] and here.filter(title="").update(
                updated_at=now,
                leaf=answer,
                title=_title_from(text),
                title_source=Conversation.TitleSource.WORDS,
            )
            if not titled:
                here.update(updated_at=now, leaf=answer)
            conversation.leaf = answer
    except IntegrityError as exc:
        if client_key:
            earlier = _turn_for_key(conversation=conversation, client_key=client_key)
            if earlier is not None:  # the same submission, racing itself
                return earlier
        raise ConversationBusy from exc
    return Turn(user_message=user_message, answer=answer, has_files=bool(linked) or carried)


def conversation_start(
    *,
    owner: Account,
    model: str,
    system_prompt: str,
    text: Any,
    generation_channel: str,
    attachment_ids: Any = None,
) -> Turn:
    """A new conversation with its first message and an empty answer, in one transaction:
    a message refused (bad text, a limit) leaves no empty conversation behind."""
    with transaction.atomic():
        conversation = conversation_create(owner=owner, model=model, system_prompt=system_prompt)
        return turn_start(
            conversation=conversation,
            text=text,
            generation_channel=generation_channel,
            attachment_ids=attachment_ids,
        )


def _turn_for_key(*, conversation: Conversation, client_key: str) -> Turn | None:
    if not client_key:
        return None
    user_message = conversation.messages.filter(client_key=client_key).first()
    if user_message is None:
        return None
    answer = user_message.children.order_by("-id").first()
    if answer is None:
        return None
    return Turn(user_message=user_message, answer=answer, created=False)


def _answer(*, conversation: Conversation, message_id: Any) -> Message:
    answer = message_selectors.message_get(conversation=conversation, message_id=message_id)
    if answer is None or answer.role != Message.Role.ASSISTANT:
        raise NotRetryable("That answer does not exist.")
    return answer


def answer_retry(
    *,
    conversation: Conversation,
    message_id: Any,
    generation_channel: str,
    model: Any = None,
    choices: list[str] | None = None,
) -> Message:
    """A new version of an answer (to the same user message); the earlier ones are kept
    and the reader's path switches to the new one. With `model` (one of `choices`) that
    version is written by another model; the conversation's own model stays."""
    if model is not None and (not isinstance(model, str) or model not in (choices or [])):
        raise NotRetryable("That model is not available here. Pick one from the list.")
    try:
        with transaction.atomic():
            previous = _answer(conversation=conversation, message_id=message_id)
            if conversation.messages.filter(status=Message.Status.STREAMING).exists():
                raise ConversationBusy
            conversation.refresh_from_db(fields=["model", "system_prompt"])
            chosen = model or conversation.model
            if (
                previous.parent_id is not None
                and not attachments.vision_accepts(chosen)
                and attachment_selectors.attachments_have_image(message_ids=[previous.parent_id])
            ):
                raise NotRetryable(attachments.vision_refusal(chosen))
            _rate_check(owner_id=conversation.owner_id, new_user_message=False)
            quotas.record_message(user_id=conversation.owner_id)
            now = timezone.now()
            answer = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=model or conversation.model,
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
            if message_selectors.message_path_end(conversation=conversation) != answer.pk:
                raise NotRetryable("Only the last answer can be continued.")
            continuable = answer.status in (Message.Status.INTERRUPTED, Message.Status.STOPPED) or (
                answer.status == Message.Status.COMPLETE and answer.finish_reason == "length"
            )
            if not continuable or not answer.content:
                raise NotRetryable("Only a partial answer can be continued.")
            if conversation.messages.filter(status=Message.Status.STREAMING).exists():
                raise ConversationBusy
            _rate_check(owner_id=conversation.owner_id, new_user_message=False)
            quotas.record_message(user_id=conversation.owner_id)
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


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    if len(words) <= 60:
        return words
    return words[:60].rsplit(" ", 1)[0] + "…"
