"""Every write. Functions are named <entity>_<action> and take keyword arguments only.

Final states are written with a conditional UPDATE ("... WHERE status = 'streaming'"):
whoever finishes an answer first wins and every later writer changes nothing, so a late
checkpoint can never overwrite a stopped or finished answer.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, models, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts import quotas

from . import portability, selectors
from .models import Conversation, ImportJob, Message, UserSettings


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
    """Per-user limits: answers streaming at once, requests per minute, and quotas.

    Every action that sends a request upstream (a message, an edit, a regenerate, a
    continue) counts alike, in the usage ledger the quotas count from: a regenerate is
    as expensive as a message, and an unlimited one would let a loop of them escape
    both the rate limit and the daily quota."""
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
    refusal = quotas.check(user_id=owner_id, limits=limits)
    if refusal is not None:
        raise RateLimited(refusal.message, retry_after=refusal.retry_after)
    per_minute = settings.CHATSITE_MESSAGES_PER_MINUTE
    if not per_minute:
        return
    recent = quotas.requests_since(user_id=owner_id, seconds=60, limit=per_minute)
    if len(recent) >= per_minute:
        wait = math.ceil((recent[-1] + timedelta(seconds=60) - timezone.now()).total_seconds())
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
            quotas.record_message(user_id=conversation.owner_id)
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


# --- imports ----------------------------------------------------------------------------
#
# A file is checked whole first (portability.import_check: nothing is written for a file
# that fails), then written in short transactions, a few hundred to a thousand rows each,
# so that other writers (on SQLite, every other writer of the site) wait a fraction of a
# second, not the length of the import. Its conversations stay hidden from their owner
# (Conversation.importing; every selector leaves them out) until the last one is written,
# then appear together in one statement. A failure deletes what was written; a job whose
# process died is found by its stale heartbeat and its rows deleted too.

import_log = logging.getLogger("conversations.imports")

IMPORT_STOPPED = "The import stopped before it finished (the server restarted or stalled)."
IMPORT_FAILED = "Something went wrong while writing the import."
IMPORT_BUSY = "Another import of yours is still being written. Wait for it to finish."


class ImportStopped(Exception):
    """The job is no longer running: a sweep took it for abandoned and failed it."""


def import_in_background(*, totals: portability.ImportTotals) -> bool:
    """Whether an import is large enough to be written after the response (the page then
    polls its progress) rather than before it."""
    rows = totals.conversations + totals.messages
    return rows > settings.CHATSITE_IMPORT_BACKGROUND_ROWS


def conversation_import(*, owner: Any, upload: IO[bytes], name: str = "") -> ImportJob:
    """Import a whole file for its owner, now: checked first (ImportRefused, nothing
    written), then written as import_job_run does. Ids are always new: a file can never
    touch an existing conversation."""
    totals = portability.import_check(upload)
    job = import_job_create(owner=owner, totals=totals, name=name)
    return import_job_run(job=job, upload=upload)


def import_job_create(*, owner: Any, totals: portability.ImportTotals, name: str = "") -> ImportJob:
    """A job for a checked file. One import at a time per owner (ImportRefused while
    another runs); what an abandoned import of theirs left is deleted first."""
    import_job_cleanup(owner_id=owner.pk)
    try:
        with transaction.atomic():
            return ImportJob.objects.create(
                owner=owner,
                name=name[:200],
                conversations_total=totals.conversations,
                messages_total=totals.messages,
            )
    except IntegrityError as exc:  # importjob_one_running_per_owner
        raise portability.ImportRefused(IMPORT_BUSY) from exc


def import_job_run(*, job: ImportJob, upload: IO[bytes]) -> ImportJob:
    """Write a checked file's conversations for the job, in short transactions, hidden
    from the owner until all are written. Whatever fails, what was written is deleted and
    the job says why (the traceback goes to the log). Returns the job, complete or failed."""
    try:
        writer = _ImportWriter(job=job)
        for draft in portability.import_drafts(upload):
            writer.add(draft)
        writer.complete()
    except ImportStopped:
        import_log.warning("Import %s was stopped by a sweep; deleting its rows", job.public_id)
        _import_job_fail(job=job, error=IMPORT_STOPPED)
    except portability.ImportRefused as exc:  # the file changed since it was checked
        import_log.exception("Import %s: a checked file was refused", job.public_id)
        _import_job_fail(job=job, error=str(exc))
    except Exception:
        # Deliberately broad: a database error or a bug must not leave the owner half an
        # import. The rows go, the job records a sentence, the log the traceback.
        import_log.exception("Import %s failed; deleting what it wrote", job.public_id)
        _import_job_fail(job=job, error=IMPORT_FAILED)
    job.refresh_from_db()
    return job


_IMPORT_THREADS: dict[int, threading.Thread] = {}
_IMPORT_THREADS_LOCK = threading.Lock()


def import_job_launch(*, job: ImportJob, upload: IO[bytes]) -> None:
    """Write the job in a thread of its own, after the response (the page polls its
    progress). The thread closes the upload and its own database connections when done;
    if the process dies meanwhile, the job's heartbeat goes stale and a sweep cleans up."""

    def run() -> None:
        try:
            import_job_run(job=job, upload=upload)
        except Exception:  # even the clean-up failed: the sweep will find the job stale
            import_log.exception("Import %s: the writer thread failed", job.public_id)
        finally:
            upload.close()
            connections.close_all()  # this thread's connections only
            with _IMPORT_THREADS_LOCK:
                _IMPORT_THREADS.pop(job.pk, None)

    thread = threading.Thread(target=run, name=f"chatsite-import-{job.pk}", daemon=True)
    with _IMPORT_THREADS_LOCK:
        _IMPORT_THREADS[job.pk] = thread
    thread.start()


def import_job_wait(*, job_id: int, timeout: float | None = None) -> bool:
    """Wait for this process's writer of the job (tests, shutdown); True once none runs."""
    with _IMPORT_THREADS_LOCK:
        thread = _IMPORT_THREADS.get(job_id)
    if thread is None:
        return True
    thread.join(timeout)
    return not thread.is_alive()


def import_job_cleanup(*, owner_id: int | None = None) -> int:
    """What abandoned imports left: a job still running whose writer stopped beating
    (CHATSITE_IMPORT_STALE_AFTER seconds) is failed, then the hidden rows of every failed
    or orphaned import are deleted, in short transactions. Run by each new import (for its
    owner) and by `manage.py purge_conversations` (for everyone). Returns how many jobs
    it found abandoned."""
    cutoff = timezone.now() - timedelta(seconds=ImportJob.stale_after())
    stale = ImportJob.objects.filter(status=ImportJob.Status.RUNNING, heartbeat_at__lt=cutoff)
    leftovers = Conversation.objects.filter(importing=True).filter(
        Q(import_job__isnull=True) | Q(import_job__status=ImportJob.Status.FAILED)
    )
    if owner_id is not None:
        stale = stale.filter(owner_id=owner_id)
        leftovers = leftovers.filter(owner_id=owner_id)
    abandoned = stale.update(
        status=ImportJob.Status.FAILED, error=IMPORT_STOPPED, finished_at=timezone.now()
    )
    conversation_delete_batched(conversations=leftovers)
    return abandoned


def _import_job_fail(*, job: ImportJob, error: str) -> None:
    # Failed first (a sweep elsewhere then deletes these rows too), then the rows.
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(
        status=ImportJob.Status.FAILED, error=error, finished_at=timezone.now()
    )
    conversation_delete_batched(
        conversations=Conversation.objects.filter(import_job=job, importing=True)
    )


def conversation_delete_batched(*, conversations: QuerySet[Conversation]) -> None:
    """Delete conversations and their messages in short transactions: messages newest
    first (a message's children have larger ids, so none is left pointing at a deleted
    one), a few hundred at a time, then the conversations. One transaction for a whole
    account's history would hold SQLite's only write lock for many seconds (about 50 ms
    per thousand messages, search index included) while every other writer waits."""
    pacer = _WritePacer()
    size = min(settings.CHATSITE_IMPORT_BATCH_ROWS, 500)
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


@dataclass
class _Written:
    """A draft being written, possibly over several transactions."""

    draft: portability.Draft
    pk: int | None = None
    ids: dict[str, int] = field(default_factory=dict)  # the file's ids -> new ids


_Piece = tuple[_Written, int, int]  # a draft's messages [start, end) for one transaction
# A piece with its rows prepared before the transaction (its new conversation's, if any).
_Prepared = list[tuple[_Piece, list[Any] | None, list[list[Any]]]]


class _ImportWriter:
    """Drafts into rows, at most CHATSITE_IMPORT_BATCH_ROWS rows per transaction (small
    conversations share one; a large one spans several), each transaction also advancing
    the job's progress and heartbeat."""

    def __init__(self, *, job: ImportJob) -> None:
        self.job = job
        self.batch = max(1, settings.CHATSITE_IMPORT_BATCH_ROWS)
        self.pacer = _WritePacer()
        self.rows: _OrmRows | _SqliteRows = (
            _SqliteRows(job=job) if connection.vendor == "sqlite" else _OrmRows(job=job)
        )
        self.pieces: list[_Piece] = []
        self.count = 0  # rows in self.pieces

    def add(self, draft: portability.Draft) -> None:
        written = _Written(draft)
        start, total, first = 0, len(draft.messages), True
        while True:
            if self.count >= self.batch:
                self.flush()
            room = self.batch - self.count - (1 if first else 0)  # the conversation is a row
            end = min(total, start + max(room, 0))
            self.pieces.append((written, start, end))
            self.count += end - start + (1 if first else 0)
            first = False
            if end >= total:
                return
            start = end

    def flush(self) -> None:
        if not self.pieces:
            return
        prepared = self.rows.prepare(self.pieces)  # outside the transaction: no lock held
        with self.pacer.transaction():
            self.rows.write(prepared)
            messages = sum(end - start for _, start, end in self.pieces)
            finished = sum(1 for w, _, end in self.pieces if end == len(w.draft.messages))
            beat = ImportJob.objects.filter(pk=self.job.pk, status=ImportJob.Status.RUNNING).update(
                conversations_done=F("conversations_done") + finished,
                messages_done=F("messages_done") + messages,
                heartbeat_at=timezone.now(),
            )
            if not beat:
                raise ImportStopped  # rolls this batch back; the caller deletes the rest
        self.pieces = []
        self.count = 0

    def complete(self) -> None:
        self.flush()
        with self.pacer.transaction():
            now = timezone.now()
            done = ImportJob.objects.filter(pk=self.job.pk, status=ImportJob.Status.RUNNING).update(
                status=ImportJob.Status.COMPLETE, finished_at=now, heartbeat_at=now
            )
            if not done:
                raise ImportStopped
            # One short statement shows the whole import to its owner at once.
            Conversation.objects.filter(import_job=self.job, importing=True).update(importing=False)


def _conversation_values(draft: portability.Draft, now: datetime) -> dict[str, Any]:
    return {
        "title": draft.title,
        "title_source": draft.title_source if draft.title else "",
        "model": draft.model or settings.OPENAI_MODEL,
        "system_prompt": draft.system_prompt,
        "pinned": draft.pinned,
        "archived": draft.archived,
        "created_at": draft.created_at or now,
        "updated_at": draft.updated_at or draft.created_at or now,
    }


def _message_values(item: portability.DraftMessage, now: datetime) -> dict[str, Any]:
    return {
        "role": item.role,
        "content": item.content,
        "status": item.status,
        "finish_reason": item.finish_reason,
        "error": item.error,
        "model": item.model,
        "prompt_tokens": item.prompt_tokens,
        "completion_tokens": item.completion_tokens,
        "total_tokens": item.total_tokens,
        "created_at": item.created_at or now,
        "completed_at": item.completed_at,
    }


class _OrmRows:
    """Rows through the ORM, on any database: bulk_create, then one bulk_update for what
    the insert could not know (a parent in the same batch; auto_now_add overwrote the
    file's dates). Its Python work happens inside the transaction, which on PostgreSQL
    (row locks) keeps nobody waiting."""

    def __init__(self, *, job: ImportJob) -> None:
        self.job = job
        self.now = timezone.now()

    def prepare(self, pieces: list[_Piece]) -> _Prepared:
        return [(piece, None, []) for piece in pieces]

    def write(self, prepared: _Prepared) -> None:
        for (written, start, end), _, _ in prepared:
            if written.pk is None:
                dates = _conversation_values(written.draft, self.now)
                written.pk = Conversation.objects.create(
                    owner_id=self.job.owner_id, import_job=self.job, importing=True, **dates
                ).pk
                Conversation.objects.filter(pk=written.pk).update(
                    created_at=dates["created_at"], updated_at=dates["updated_at"]
                )
            self._messages(written, written.pk, start, end)
            if end == len(written.draft.messages):
                current = written.draft.current
                Conversation.objects.filter(pk=written.pk).update(
                    leaf_id=written.ids.get(current) if current else None
                )

    def _messages(self, written: _Written, pk: int, start: int, end: int) -> None:
        items = written.draft.messages[start:end]
        if not items:
            return
        ids = written.ids
        rows = [
            Message(
                conversation_id=pk,
                # A parent in an earlier batch has its id; one in this batch gets it below.
                parent_id=ids.get(item.parent) if item.parent is not None else None,
                **_message_values(item, self.now),
            )
            for item in items
        ]
        # Inserted in order (parents first), so a child's id is larger than its parent's.
        Message.objects.bulk_create(rows)
        for item, row in zip(items, rows, strict=True):
            ids[item.key] = row.pk
        for item, row in zip(items, rows, strict=True):
            row.parent_id = ids[item.parent] if item.parent is not None else None
            row.created_at = item.created_at or self.now
        Message.objects.bulk_update(rows, ["parent", "created_at"])


class _SqliteRows:
    """Rows as plain INSERTs, for SQLite, where a transaction holds the whole database's
    write lock and must be short. Everything is prepared before the transaction; inside
    it, only ids are given out (above the table's AUTOINCREMENT sequence: nobody else can
    take one while this transaction holds the lock) and executemany runs: a thousand rows
    take a few tens of milliseconds, a tenth of what the ORM's bulk methods need. Parents
    and dates are right on insert, so nothing is updated afterwards."""

    def __init__(self, *, job: ImportJob) -> None:
        self.job = job
        self.now = timezone.now()
        self.conversations = _Columns(Conversation)
        self.messages = _Columns(Message)

    def prepare(self, pieces: list[_Piece]) -> _Prepared:
        prepared = []
        for written, start, end in pieces:
            conversation = None
            if written.pk is None:
                conversation = self.conversations.row(
                    {
                        **_conversation_values(written.draft, self.now),
                        "public_id": uuid.uuid4(),
                        "owner_id": self.job.owner_id,
                        "import_job_id": self.job.pk,
                        "importing": True,
                    }
                )
            messages = [
                self.messages.row(_message_values(item, self.now))
                for item in written.draft.messages[start:end]
            ]
            prepared.append(((written, start, end), conversation, messages))
        return prepared

    def write(self, prepared: _Prepared) -> None:
        new_conversations = [row for _, row, _ in prepared if row is not None]
        conversation_id = self.conversations.first_free_id()
        message_id = self.messages.first_free_id()
        leaves = []
        id_at, conversation_at, parent_at = (
            self.messages.at("id"),
            self.messages.at("conversation_id"),
            self.messages.at("parent_id"),
        )
        message_rows = []
        for (written, start, end), conversation, rows in prepared:
            if conversation is not None:
                written.pk = conversation[self.conversations.at("id")] = conversation_id
                conversation_id += 1
            ids = written.ids
            for item, row in zip(written.draft.messages[start:end], rows, strict=True):
                row[id_at] = ids[item.key] = message_id
                row[conversation_at] = written.pk
                row[parent_at] = ids[item.parent] if item.parent is not None else None
                message_id += 1
                message_rows.append(row)
            if end == len(written.draft.messages) and written.draft.current:
                leaves.append((ids.get(written.draft.current), written.pk))
        with connection.cursor() as cursor:
            if new_conversations:
                cursor.executemany(self.conversations.insert, new_conversations)
            if message_rows:
                cursor.executemany(self.messages.insert, message_rows)
            if leaves:
                table = connection.ops.quote_name(Conversation._meta.db_table)
                cursor.executemany(f"UPDATE {table} SET leaf_id = %s WHERE id = %s", leaves)  # noqa: S608  # quoted names, values as parameters


class _Columns:
    """A model's columns for a plain INSERT: the values the import sets, every other
    column at its default (prepared once), so that a column added later with a default
    needs nothing here."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        fields = list(model._meta.concrete_fields)
        self.fields = {f.attname: f for f in fields}
        self.positions = {f.attname: n for n, f in enumerate(fields)}
        self.defaults = [
            None if f.primary_key else f.get_db_prep_save(f.get_default(), connection)
            for f in fields
        ]
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        columns = ", ".join(quote(f.column) for f in fields)
        marks = ", ".join(["%s"] * len(fields))
        self.insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608  # quoted names

    def at(self, attname: str) -> int:
        return self.positions[attname]

    def row(self, values: dict[str, Any]) -> list[Any]:
        row = list(self.defaults)
        for attname, value in values.items():
            if isinstance(value, datetime | uuid.UUID):
                value = self.fields[attname].get_db_prep_save(value, connection)
            row[self.positions[attname]] = value
        return row

    def first_free_id(self) -> int:
        """The first id never used. The table is AUTOINCREMENT: ids above its sequence
        were never given out, and the INSERTs move the sequence past the ones they use.
        Only inside the write transaction, which keeps every other writer out."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = %s", [self.model._meta.db_table]
            )
            found = cursor.fetchone()
        return (found[0] if found else 0) + 1


def user_password_confirm(*, user: Any, password: Any) -> None:
    """ValidationError unless this is the user's password (before anything irreversible)."""
    if not isinstance(password, str) or not password or not user.check_password(password):
        raise ValidationError("That password is not right. Nothing was deleted.")


def user_delete(*, user: Any) -> None:
    """Delete an account and everything in it (conversations, messages, settings). The
    caller has confirmed the password and stopped its streaming answers. The history goes
    first, in short transactions; then the account and what is left of it, at once."""
    conversation_delete_batched(conversations=Conversation.objects.filter(owner_id=user.pk))
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).delete()


def user_history_delete(*, user: Any) -> int:
    """Delete all of a user's conversations (the account stays), except one whose answer
    is still being written. Returns how many were deleted."""
    conversations = Conversation.objects.filter(owner_id=user.pk).exclude(
        messages__status=Message.Status.STREAMING
    )
    count = conversations.count()
    conversation_delete_batched(conversations=conversations)
    return count
