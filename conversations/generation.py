"""One answer's life, from the upstream's first byte to its final state.

A generation is an asyncio task of its own, independent of any socket:

* it opens the upstream stream (retrying, before the first token, what is worth
  retrying, within a time budget) and appends each chunk's text to its buffer;
* it publishes frames to the conversation's channel-layer group: the first text at once,
  then at most one frame every CHATSITE_FRAME_INTERVAL seconds, each carrying only the new
  text (so a frame's cost never grows with the answer);
* it checkpoints the text to the database about every CHATSITE_CHECKPOINT_INTERVAL seconds;
* it listens on a channel of its own, whose name is stored on the answer, so that a Stop
  or a snapshot request from any tab in any process reaches it;
* whatever happens (end, Stop, upstream failure, a cap, shutdown) its `finally` hangs up
  the upstream and saves the text with a final status.

Each process also runs one supervisor task: it beats for the answers this process is
writing and marks as interrupted the answers of processes that stopped beating.

It never imports a consumer: it knows the conversation's group, not who listens.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts import quotas
from moderation import screening
from moderation import services as moderation_services

from . import fragments, selectors, services, upstream
from .models import Conversation, Message
from .rendering import BlockSplitter

log = logging.getLogger(__name__)

# Generations running in this process, by answer id.
RUNNING: dict[int, Generation] = {}

CONTINUE_PROMPT = (
    "Continue your previous answer exactly where it stopped. Do not repeat anything "
    "you already wrote and do not add any preamble."
)


def group_name(conversation: Conversation) -> str:
    return f"conversation.{conversation.public_id.hex}"


def user_group_name(user_id: int) -> str:
    """Every open tab of one user (sidebar markers and titles)."""
    return f"user.{user_id}"


def session_group_name(session_key: str | None) -> str:
    """Every open socket of one signed-in session (closed when it signs out). A digest,
    not the key: the key would let anyone who reads the channel layer sign in."""
    digest = hashlib.sha256((session_key or "").encode()).hexdigest()[:40]
    return f"session.{digest}"


def _side_frame(html: str, **extra: Any) -> dict[str, Any]:
    """A frame about the conversation, not about one answer (never held for a snapshot)."""
    return {"type": "chat.frame", "message_id": 0, "seq": 0, "html": html, "final": False, **extra}


async def _publish_to_user(layer: BaseChannelLayer, owner_id: int, html: str) -> None:
    await layer.group_send(user_group_name(owner_id), _side_frame(html))


async def _publish_to_conversation(
    layer: BaseChannelLayer, conversation: Conversation, html: str, *, gone: bool = False
) -> None:
    extra = {"gone": True} if gone else {}
    await layer.group_send(group_name(conversation), _side_frame(html, **extra))


def upstream_config(*, server: tuple[str, int] | None = None) -> upstream.UpstreamConfig:
    """The upstream for new answers: the configured one, or this site's demo endpoint."""
    if settings.CHATSITE_DEMO_MODE:
        base_url = settings.CHATSITE_DEMO_BASE_URL
        if not base_url:
            host, port = server or ("127.0.0.1", 8000)
            if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind: call ourselves on loopback
                host = "127.0.0.1"
            base_url = f"http://{host}:{port}/demo/v1"
        api_key = settings.CHATSITE_DEMO_API_KEY  # the demo answers only us and signed-in users
    else:
        base_url = settings.OPENAI_BASE_URL
        api_key = settings.OPENAI_API_KEY or "none"  # local servers often need no key
    return upstream.UpstreamConfig(
        base_url=base_url,
        api_key=api_key,
        connect_timeout=settings.CHATSITE_UPSTREAM_CONNECT_TIMEOUT,
        idle_timeout=settings.CHATSITE_UPSTREAM_IDLE_TIMEOUT,
    )


def frame_interval() -> float:
    """Seconds between two frames of one answer. A frame's cost is mostly fixed (render
    the growing block, the layer, the socket), so under load frames get coarser rather
    than fall behind: at 30 tokens/s a reader does not tell 50 ms from 150 ms apart."""
    base = settings.CHATSITE_FRAME_INTERVAL
    load = len(RUNNING) / max(1, settings.CHATSITE_FRAME_FULL_RATE_ANSWERS)
    return min(max(base, settings.CHATSITE_FRAME_INTERVAL_MAX), base * max(1.0, load))


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; the upstream's Retry-After wins when given."""
    if retry_after is not None:
        return retry_after
    ceiling = min(8.0, settings.CHATSITE_RETRY_BASE_DELAY * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


# Where an answer may be cut into batches for screening: sentence and block ends.
SENTENCE_ENDS = (". ", "! ", "? ", ".\n", "!\n", "?\n", "\n\n")


class QuestionBlocked(Exception):
    """Screening blocked the user's message: nothing goes upstream."""


class AnswerCapped(Exception):
    """The answer ran past the site's length or duration cap."""


@dataclass
class Outcome:
    status: str = Message.Status.COMPLETE
    finish_reason: str = ""
    error: str = ""


@dataclass
class Generation:
    conversation: Conversation
    answer: Message
    channel: str
    config: upstream.UpstreamConfig
    layer: BaseChannelLayer
    # Text already in the answer (Continue): kept, shown and sent upstream as context.
    prefix: str = ""
    # A new user message, screened before anything goes upstream.
    question: Message | None = None
    # What the model is sent (read in the caller's trip to the database).
    history: list[dict[str, str]] = field(default_factory=list)
    # Set once every tab was told of the answer: its frames must come after that.
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    group: str = ""
    request_id: str = ""
    note: str = ""
    first_token_at: datetime | None = None
    usage: upstream.Usage | None = None
    finish_reason: str = ""
    seq: int = 0
    _sealed: list[str] = field(default_factory=list)  # finished blocks, as sent
    _splitter: BlockSplitter = field(default_factory=BlockSplitter)
    _pending: list[str] = field(default_factory=list)  # received, not yet sent
    _length: int = 0
    _received_text: bool = False
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _stop_requested: bool = False
    _closing: bool = False
    _reader: asyncio.Task[None] | None = None
    _checkpoint: asyncio.Task[Any] | None = None
    _last_checkpoint: float = 0.0
    # Screening of the answer: whole sentences are screened in batches beside the stream.
    _screen_due: asyncio.Event = field(default_factory=asyncio.Event)
    _screened: int = 0  # characters of the finished text already screened
    moderation_stop: screening.Verdict | None = None
    _prompt_chars: int = 0
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.group = group_name(self.conversation)
        if self.prefix:
            finished, _ = self._splitter.feed(self.prefix)
            self._sealed.append(finished)
            self._length = len(self.prefix)
            self._screened = len(self.prefix)  # screened when it was first written
        self.first_token_at = self.answer.first_token_at

    # --- text -------------------------------------------------------------------------
    @property
    def published_split(self) -> tuple[str, str]:
        return "".join(self._sealed), self._splitter.window

    @property
    def text(self) -> str:
        return "".join(self._sealed) + self._splitter.window + "".join(self._pending)

    # --- life ---------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        # A fresh context: the task must not inherit the request's or the socket's
        # thread-sensitive executor, which dies with them (the answer must not).
        self.task = asyncio.create_task(
            self.run(), name=f"generation-{self.answer.pk}", context=contextvars.Context()
        )
        RUNNING[self.answer.pk] = self
        self.task.add_done_callback(lambda _t: RUNNING.pop(self.answer.pk, None))
        supervisor_ensure()
        return self.task

    async def run(self) -> None:
        control = asyncio.create_task(self._listen())
        flusher = asyncio.create_task(self._flush_loop())
        screener = asyncio.create_task(self._screen_loop())
        flusher.add_done_callback(lambda _t: screener.cancel())
        outcome = Outcome()
        self._reader = asyncio.create_task(self._read())
        try:
            await self._reader
            outcome.finish_reason = self.finish_reason
            if not self.finish_reason:
                # The stream ended without saying why: the answer may be cut short.
                outcome.status = Message.Status.INTERRUPTED
                outcome.error = "The model service ended the answer unexpectedly."
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stop_requested and task is not None and not task.cancelling():
                outcome.status = Message.Status.STOPPED
            else:
                # This task itself is being cancelled (shutdown): save, then let it go.
                outcome.status = Message.Status.INTERRUPTED
                outcome.error = "The server restarted while this answer was being written."
                await asyncio.shield(self._finish(outcome, control, flusher))
                raise
        except upstream.UpstreamError as exc:
            outcome.status = Message.Status.INTERRUPTED if self.text else Message.Status.ERROR
            outcome.error = exc.user_message
            if exc.kind is upstream.ErrorKind.RATE_LIMITED and exc.retry_after:
                outcome.error += f" The service asked to wait {exc.retry_after:.0f} s."
            self.request_id = self.request_id or exc.request_id
        except AnswerCapped as exc:
            outcome.status = Message.Status.INTERRUPTED
            outcome.error = str(exc)
        except QuestionBlocked as exc:
            outcome.status = Message.Status.ERROR
            outcome.error = str(exc)
        except Exception:
            # Deliberately broad, and only here: a bug must not leave an answer streaming
            # forever. Log it with its traceback and save what there is.
            log.exception("generation %s failed", self.answer.pk)
            outcome.status = Message.Status.INTERRUPTED if self.text else Message.Status.ERROR
            outcome.error = "Something went wrong on this site while answering."
        await asyncio.shield(self._finish(outcome, control, flusher))

    async def _read(self) -> None:
        if self.question is not None:
            await self._screen_question(self.question)
        history = self.history
        self._prompt_chars = sum(len(m["content"]) for m in history)
        if self.prefix:
            history = [
                *history,
                {"role": "assistant", "content": self.prefix},
                {"role": "user", "content": CONTINUE_PROMPT},
            ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.CHATSITE_RETRY_BUDGET
        attempt = 0
        while True:
            try:
                await self._read_once(history)
                return
            except upstream.UpstreamError as exc:
                # Once text is on the reader's screen nothing is replayed: no duplicates.
                if self._received_text or not exc.retryable:
                    raise
                attempt += 1
                delay = retry_delay(attempt, exc.retry_after)
                if loop.time() + delay > deadline:
                    raise
                await self._set_note(
                    f"{exc.user_message} Retrying in {max(delay, 1):.0f} s (attempt {attempt + 1})…"
                )
                await asyncio.sleep(delay)

    async def _read_once(self, history: list[dict[str, str]]) -> None:
        stream = await upstream.open_stream(self.config, model=self.answer.model, messages=history)
        self.request_id = stream.request_id
        started = time.monotonic()
        max_chars = settings.CHATSITE_MAX_ANSWER_CHARS
        max_seconds = settings.CHATSITE_MAX_ANSWER_SECONDS
        try:
            async for events in stream.batches():
                for event in events:
                    self._take(event)
                    if self._length >= max_chars:
                        raise AnswerCapped(
                            f"The answer reached this site's length limit "
                            f"({max_chars:,} characters) and was ended."
                        )
                if time.monotonic() - started >= max_seconds:
                    raise AnswerCapped(
                        f"The answer reached this site's time limit ({max_seconds:.0f} s) "
                        "and was ended."
                    )
        finally:
            # Runs on Stop too (CancelledError): the upstream must see us hang up.
            await stream.close()

    def _take(self, event: upstream.StreamEvent) -> None:
        if event.text:
            if self.first_token_at is None:
                self.first_token_at = timezone.now()
            self._received_text = True
            self._pending.append(event.text)
            self._length += len(event.text)
            self._dirty.set()
        if event.finish_reason:
            self.finish_reason = event.finish_reason
        if event.usage is not None:
            self.usage = event.usage

    async def _count_tokens(self, usage: upstream.Usage | None) -> None:
        """Count the answer against the owner's quota: the upstream's figures, or an
        estimate from the text's length (marked as such) when it reported none."""
        if not self._received_text and usage is None:
            return  # nothing was asked of the model (blocked, failed before it answered)
        if usage is not None and usage.total_tokens is not None:
            tokens, estimated = usage.total_tokens, False
        else:
            tokens = quotas.estimate_tokens(self._prompt_chars + len(self.text))
            estimated = True
        await database_sync_to_async(quotas.record_tokens)(
            user_id=self.conversation.owner_id,
            model=self.answer.model,
            tokens=tokens,
            estimated=estimated,
        )

    # --- screening ----------------------------------------------------------------------
    async def _screen_question(self, question: Message) -> None:
        verdict = await screening.screen(question.content, config=self.config)
        if verdict.flagged:
            await database_sync_to_async(moderation_services.flag_from_verdict)(
                message=question, verdict=verdict
            )
        if verdict.stops:
            reason = f"Not sent: it goes against this site's rules ({verdict.category})."
            await database_sync_to_async(moderation_services.message_hide)(
                message_id=question.pk, reason=reason
            )
            question.hidden, question.hidden_reason = True, reason
            await self._publish(fragments.message_html(question))
            raise QuestionBlocked(
                "Your message was not sent to the model: it goes against this site's rules "
                f"({verdict.category})."
            )

    async def _screen_loop(self) -> None:
        # One screening in flight at a time: text arriving meanwhile makes the next batch
        # bigger, so a slow screen never slows the stream (it runs beside it).
        while True:
            await self._screen_due.wait()
            self._screen_due.clear()
            sealed, window = self.published_split
            rest = (sealed + window)[self._screened :]
            cut = max(rest.rfind(mark) for mark in SENTENCE_ENDS)
            if cut < 0:
                continue  # no whole sentence yet
            batch = rest[: cut + 1]
            self._screened += len(batch)
            if batch.strip():
                await self._screen_answer(batch)

    async def _screen_answer(self, batch: str) -> None:
        verdict = await screening.screen(batch, config=self.config)
        if verdict.flagged:
            await database_sync_to_async(moderation_services.flag_from_verdict)(
                message=self.answer, verdict=verdict
            )
        if verdict.stops and self.moderation_stop is None:
            self.moderation_stop = verdict
            self.stop()  # as with Stop: the upstream connection closes at once

    def stop(self) -> None:
        """Stop this answer (called in this process; other processes send a message)."""
        self._stop_requested = True
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()

    # --- the channel of its own ---------------------------------------------------------
    async def _listen(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            kind = message.get("type")
            if kind == "generation.stop":
                self.stop()
            elif kind == "generation.snapshot" and isinstance(message.get("reply_to"), str):
                await self.layer.send(
                    message["reply_to"],
                    {
                        "type": "chat.snapshot",
                        "message_id": self.answer.pk,
                        "seq": self.seq,
                        "html": self._snapshot_html(),
                    },
                )

    def _snapshot_html(self) -> str:
        # Exactly the published text, cut where the frames cut it: the frames after
        # `seq` append to these blocks and replace this tail.
        sealed, tail = self.published_split
        self.answer.content = sealed + tail
        html = fragments.message_html(self.answer, note=self.note, split=(sealed, tail))
        return html + fragments.composer_controls_html(streaming=True)

    # --- frames and checkpoints -----------------------------------------------------------
    async def _publish(self, html: str, *, final: bool = False) -> None:
        await self.announced.wait()
        self.seq += 1
        await self.layer.group_send(
            self.group,
            {
                "type": "chat.frame",
                "message_id": self.answer.pk,
                "seq": self.seq,
                "html": html,
                "final": final,
            },
        )

    async def _set_note(self, note: str) -> None:
        self.note = note
        await self._publish(fragments.message_note_html(self.answer.pk, note))

    async def _flush_loop(self) -> None:
        while not self._closing:
            await self._dirty.wait()
            if self._closing:
                return
            self._dirty.clear()
            await self._publish_delta()
            self._maybe_checkpoint()
            await asyncio.sleep(frame_interval())

    async def _publish_delta(self) -> None:
        if not self._pending:
            return
        delta = "".join(self._pending)
        self._pending.clear()
        finished, tail = self._splitter.feed(delta)
        if finished:
            self._sealed.append(finished)
        self._screen_due.set()
        html = fragments.answer_growth_html(self.answer.pk, finished, tail)
        if self.note:  # text is flowing again: the retry notice has done its job
            self.note = ""
            html += fragments.message_note_html(self.answer.pk, "")
        await self._publish(html)

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if now - self._last_checkpoint < settings.CHATSITE_CHECKPOINT_INTERVAL:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return  # one write in flight at a time; the next flush tries again
        self._last_checkpoint = now
        self._checkpoint = asyncio.create_task(
            database_sync_to_async(services.message_checkpoint)(
                message_id=self.answer.pk, content=self.text, first_token_at=self.first_token_at
            )
        )

    async def _finish(
        self, outcome: Outcome, control: asyncio.Task[None], flusher: asyncio.Task[None]
    ) -> None:
        self._closing = True
        self._dirty.set()  # wake the flusher so that it sees it must end
        helpers = [control, flusher]
        for task in helpers:
            task.cancel()
            task.add_done_callback(_retrieve)
        # Bounded: a library that swallows a cancellation (seen with the Redis client)
        # must not keep the answer from being saved.
        await asyncio.wait(helpers, timeout=2.0)
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint], timeout=5.0)
        rest = self.text[self._screened :]
        if self.moderation_stop is None and rest.strip() and outcome.status != "error":
            # The last block is only whole now; bounded, so screening never holds the save.
            try:
                async with asyncio.timeout(settings.CHATSITE_SCREENING_TIMEOUT + 1):
                    await self._screen_answer(rest)
            except TimeoutError:
                log.warning("screening the end of answer %s timed out", self.answer.pk)
        if self.moderation_stop is not None:
            outcome.error = (
                "This answer was stopped and hidden: it goes against this site's rules "
                f"({self.moderation_stop.category})."
            )
        usage = self.usage
        message = await database_sync_to_async(services.message_finalize)(
            message_id=self.answer.pk,
            content=self.text,
            status=outcome.status,
            finish_reason=outcome.finish_reason,
            error=outcome.error,
            upstream_request_id=self.request_id,
            first_token_at=self.first_token_at,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
        )
        await self._count_tokens(usage)
        if message is None:  # someone else already finalised it (or it was deleted)
            message = (
                await Message.objects.filter(pk=self.answer.pk)
                .select_related("conversation")
                .afirst()
            )
            if message is None:
                return
        if self.moderation_stop is not None:
            await database_sync_to_async(moderation_services.message_hide)(
                message_id=message.pk, reason=outcome.error
            )
            message.hidden, message.hidden_reason = True, outcome.error
        for name in VERSION_ATTRIBUTES:  # versions cannot change while an answer streams
            if hasattr(self.answer, name):
                setattr(message, name, getattr(self.answer, name))
        html = final_html(message)
        if message.total_tokens is not None or message.prompt_tokens is not None:
            usage = await database_sync_to_async(selectors.usage_for_conversation)(
                conversation=self.conversation
            )
            html += fragments.conversation_usage_html(usage)
        allowance = await database_sync_to_async(quotas.allowance)(
            user_id=self.conversation.owner_id
        )
        html += fragments.quota_notice_html(allowance)
        await self._publish(html, final=True)
        await _publish_to_user(
            self.layer,
            self.conversation.owner_id,
            fragments.nav_live_html(self.conversation.public_id, live=False),
        )
        if message.status == Message.Status.COMPLETE and message.content:
            # After the answer, never before it: the title must not delay a single token.
            title_start(conversation=self.conversation, answer=message, config=self.config)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a helper task's outcome as seen (its errors are not the answer's)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("generation helper ended with %r", task.exception())


VERSION_ATTRIBUTES = ("versions", "version", "version_previous", "version_next")


def final_html(message: Message) -> str:
    return fragments.message_html(message, is_last=True) + fragments.composer_controls_html(
        streaming=False
    )


# --- titles ------------------------------------------------------------------------------

TITLE_PROMPT = (
    "Write a title of at most six words for the conversation below. Reply with the title "
    "only: no quotes, no punctuation at the end."
)
_TITLE_TASKS: set[asyncio.Task[None]] = set()


def title_start(
    *, conversation: Conversation, answer: Message, config: upstream.UpstreamConfig
) -> None:
    if conversation.title_source not in ("", Conversation.TitleSource.WORDS):
        return
    task = asyncio.create_task(
        _title_make(conversation=conversation, answer=answer, config=config),
        name=f"title-{conversation.pk}",
        context=contextvars.Context(),
    )
    _TITLE_TASKS.add(task)  # a reference, or the task could be collected mid-flight
    task.add_done_callback(_TITLE_TASKS.discard)


async def _title_make(
    *, conversation: Conversation, answer: Message, config: upstream.UpstreamConfig
) -> None:
    question_id = answer.parent_id
    if question_id is None:
        return

    def first_question() -> str | None:
        # Only the first finished answer names a conversation.
        finished = answer.conversation.messages.filter(role="assistant", status="complete")
        if finished.count() != 1:
            return None
        return Message.objects.filter(pk=question_id).values_list("content", flat=True).first()

    question = await database_sync_to_async(first_question)()
    if not question:
        return
    messages = [
        {"role": "system", "content": TITLE_PROMPT},
        {
            "role": "user",
            "content": f"User: {question[:2000]}\n\nAssistant: {answer.content[:2000]}",
        },
    ]
    try:
        async with asyncio.timeout(settings.CHATSITE_TITLE_TIMEOUT):
            text = await upstream.complete_text(
                config,
                model=settings.CHATSITE_TITLE_MODEL or conversation.model,
                messages=messages,
            )
    except (upstream.UpstreamError, TimeoutError):
        log.info(
            "no title from the model for conversation %s; keeping first words", conversation.pk
        )
        return
    changed = await database_sync_to_async(services.conversation_set_generated_title)(
        conversation_id=conversation.pk, title=text
    )
    if changed:
        fresh = await database_sync_to_async(Conversation.objects.get)(pk=conversation.pk)
        await conversation_announce_title(conversation=fresh)


# --- conversation-wide changes ----------------------------------------------------------------


async def conversation_announce_title(*, conversation: Conversation) -> None:
    """A new title, to the conversation's tabs (header) and the owner's tabs (sidebar)."""
    layer = _layer()
    await _publish_to_conversation(
        layer, conversation, fragments.conversation_header_html(conversation)
    )
    await _publish_to_user(layer, conversation.owner_id, fragments.nav_title_html(conversation))


async def _stop_streaming(answers: QuerySet[Message], *, wait: bool) -> None:
    """Stop every streaming answer among these, wherever it runs; with `wait`, until
    their partials are saved (bounded: a dead process's answer is the supervisor's)."""
    pending = answers.filter(status=Message.Status.STREAMING)
    async for answer in pending:
        await generation_stop(answer=answer)
    for _ in range(100 if wait else 0):
        if not await pending.aexists():
            break
        await asyncio.sleep(0.02)


async def conversation_remove(*, conversation: Conversation) -> None:
    """Delete a conversation: stop its answer first, then tell every tab it is gone."""
    await _stop_streaming(conversation.messages.all(), wait=True)  # partial saved first
    await database_sync_to_async(services.conversation_delete)(conversation=conversation)
    layer = _layer()
    await _publish_to_conversation(
        layer, conversation, fragments.conversation_gone_html(), gone=True
    )
    await _publish_to_user(layer, conversation.owner_id, fragments.nav_gone_html(conversation))


async def user_kick(*, user_id: int) -> None:
    """A suspended user: every answer of theirs is stopped (and saved), every open socket
    of theirs, in every process, is closed."""
    await _stop_streaming(Message.objects.filter(conversation__owner_id=user_id), wait=False)
    notice = fragments.session_end_html(
        "Your account has been suspended. This page no longer updates; reload it to see why."
    )
    await _layer().group_send(user_group_name(user_id), {"type": "session.end", "html": notice})


async def session_close(*, session_key: str) -> None:
    """A session signed out: every socket it opened, in every process, says so and
    closes (its answers go on: they belong to the account, not to the page)."""
    notice = fragments.session_end_html(
        "You signed out. This page no longer updates; sign in again to continue."
    )
    await _layer().group_send(
        session_group_name(session_key), {"type": "session.end", "html": notice, "code": 4401}
    )


async def user_remove(*, user: Any, password: Any) -> None:
    """Delete an account: check the password, stop its answers (their partials do not
    matter any more, but their upstream calls must end), then delete everything."""
    await database_sync_to_async(services.user_password_confirm)(user=user, password=password)
    await _stop_streaming(Message.objects.filter(conversation__owner=user), wait=True)
    await database_sync_to_async(services.user_delete)(user=user)


# --- starting, stopping -------------------------------------------------------------------


def _layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS must be configured"
    return layer


async def _launch(
    *,
    conversation: Conversation,
    answer: Message,
    channel: str,
    server: tuple[str, int] | None,
    history: list[dict[str, str]],
    announce: Callable[[], str],
    prefix: str = "",
    question: Message | None = None,
) -> Generation:
    """Start the answer, then announce it to every tab of the conversation.

    The upstream request goes out first, and the announcement (the new messages' HTML,
    `announce`, run in the database thread) is written while the model thinks: the
    first token waits for the model, not for templates. The answer's own frames wait for
    the announcement (`Generation.announced`), so no text reaches a page before the
    message it belongs to."""
    layer = _layer()
    generation = Generation(
        conversation=conversation,
        answer=answer,
        channel=channel,
        config=upstream_config(server=server),
        layer=layer,
        prefix=prefix,
        question=question,
        history=history,
    )
    generation.start()
    try:
        html = await database_sync_to_async(announce)()
        await layer.group_send(
            generation.group,
            {
                "type": "chat.frame",
                "message_id": answer.pk,
                "seq": 0,
                "html": html + fragments.composer_controls_html(streaming=True),
                "final": False,
            },
        )
    finally:
        generation.announced.set()
    await _publish_to_user(
        layer, conversation.owner_id, fragments.nav_live_html(conversation.public_id, live=True)
    )
    return generation


class NotAllowed(Exception):
    """The caller's `allowed` check said no: nothing was saved or started."""


@dataclass
class _Prepared:
    answer: Message
    history: list[dict[str, str]]


def _prepare(answer: Message) -> _Prepared:
    # In the same trip to the database thread as the write that made the answer: each
    # trip is time the reader waits for the first token.
    selectors.message_with_versions(message=answer)
    return _Prepared(answer, selectors.message_history_for_upstream(answer_id=answer.pk))


def _turn_start_prepared(
    *, allowed: Callable[[], bool] | None, **kwargs: Any
) -> tuple[services.Turn, _Prepared | None]:
    if allowed is not None and not allowed():
        raise NotAllowed
    turn = services.turn_start(**kwargs)
    return turn, _prepare(turn.answer) if turn.created else None


async def generation_begin(
    *,
    conversation: Conversation,
    text: str,
    server: tuple[str, int] | None = None,
    client_key: str = "",
    edit_of: Any = None,
    allowed: Callable[[], bool] | None = None,
) -> services.Turn:
    """Save the user's message and an empty answer, start the answer, announce them.
    With `edit_of` (a user message's id) the message is a new version of that one.
    `allowed`, a database read run first, may refuse the whole turn (NotAllowed).

    Raises ValidationError (bad text), ConversationBusy (an answer is streaming),
    RateLimited, or NotRetryable (no such message to edit). A repeated client key
    returns the earlier turn and starts nothing.
    """
    # The channel exists before the answer row, so whoever sees the row can reach it.
    channel = await _layer().new_channel()
    turn, prepared = await database_sync_to_async(_turn_start_prepared)(
        allowed=allowed,
        conversation=conversation,
        text=text,
        generation_channel=channel,
        client_key=client_key,
        edit_of=edit_of,
    )
    if prepared is not None:

        def announce() -> str:
            if edit_of is None:  # the path grows by two messages
                return fragments.message_append_html(
                    turn.user_message
                ) + fragments.message_append_html(turn.answer)
            # The path changed from the edited message on: every tab redraws it.
            return _message_list_html(conversation)

        await _launch(
            conversation=conversation,
            answer=prepared.answer,
            channel=channel,
            server=server,
            history=prepared.history,
            announce=announce,
            question=turn.user_message,
        )
    return turn


async def generation_retry(
    *, conversation: Conversation, message_id: Any, server: tuple[str, int] | None = None
) -> Message:
    """A new version of an answer; the earlier ones stay, one click away."""
    channel = await _layer().new_channel()

    def retry() -> _Prepared:
        return _prepare(
            services.answer_retry(
                conversation=conversation, message_id=message_id, generation_channel=channel
            )
        )

    prepared = await database_sync_to_async(retry)()
    await _launch(
        conversation=conversation,
        answer=prepared.answer,
        channel=channel,
        server=server,
        history=prepared.history,
        # The path changed (the answer and everything after it): every tab redraws it.
        announce=lambda: _message_list_html(conversation),
    )
    return prepared.answer


async def conversation_show_version(*, conversation: Conversation, message_id: Any) -> None:
    """Switch the conversation's path to another version, in every tab."""

    def switch() -> str:
        services.conversation_show_version(conversation=conversation, message_id=message_id)
        return _message_list_html(conversation)

    await _publish_to_conversation(_layer(), conversation, await database_sync_to_async(switch)())


def _message_list_html(conversation: Conversation) -> str:
    return fragments.message_list_html(selectors.message_list(conversation=conversation))


async def generation_continue(
    *, conversation: Conversation, message_id: Any, server: tuple[str, int] | None = None
) -> Message:
    """The model continues a partial answer in place."""
    channel = await _layer().new_channel()

    def resume() -> _Prepared:
        return _prepare(
            services.answer_continue(
                conversation=conversation, message_id=message_id, generation_channel=channel
            )
        )

    prepared = await database_sync_to_async(resume)()
    answer = prepared.answer
    await _launch(
        conversation=conversation,
        answer=answer,
        channel=channel,
        server=server,
        history=prepared.history,
        announce=lambda: fragments.message_html(answer),
        prefix=answer.content,
    )
    return answer


def generation_stop_here(*, conversation: Conversation) -> bool:
    """Stop the conversation's answer if this process is writing it, without a trip to
    the database: under load that thread is busy with checkpoints and new turns, and a
    Stop must not queue behind them. False when the answer runs elsewhere (or none does).
    """
    for running in list(RUNNING.values()):
        # An earlier answer may still be finishing (title, usage): not that one.
        if running.conversation.pk == conversation.pk and not running._closing:
            running.stop()
            return True
    return False


async def generation_stop(*, answer: Message) -> bool:
    """Ask the generation of a streaming answer to stop, wherever it runs."""
    local = RUNNING.get(answer.pk)
    if local is not None:
        local.stop()
        return True
    if not answer.generation_channel:
        return False
    await _layer().send(answer.generation_channel, {"type": "generation.stop"})
    return True


# --- the process's supervisor: heartbeat, dead answers, shutdown ---------------------------

_supervisor: asyncio.Task[None] | None = None


def supervisor_ensure() -> None:
    """Start this process's supervisor (once per event loop)."""
    global _supervisor
    loop = asyncio.get_running_loop()
    if _supervisor is not None and not _supervisor.done() and _supervisor.get_loop() is loop:
        return
    _supervisor = loop.create_task(
        _supervise(), name="generation-supervisor", context=contextvars.Context()
    )


async def supervise_once() -> list[Message]:
    """Beat for our answers, and finalise those of processes that stopped beating."""
    mine = list(RUNNING)
    await database_sync_to_async(services.message_heartbeat)(message_ids=mine)
    dead = await database_sync_to_async(services.message_interrupt_stale)(
        older_than=settings.CHATSITE_STALE_AFTER, exclude_ids=mine
    )
    layer = _layer()
    for message in dead:
        await database_sync_to_async(selectors.message_with_versions)(message=message)
        log.warning("answer %s was left streaming by a dead process", message.pk)
        await layer.group_send(
            group_name(message.conversation),
            {
                "type": "chat.frame",
                "message_id": message.pk,
                "seq": 1 << 62,
                "html": final_html(message),
                "final": True,
            },
        )
        await _publish_to_user(
            layer,
            message.conversation.owner_id,
            fragments.nav_live_html(message.conversation.public_id, live=False),
        )
    return dead


async def _supervise() -> None:
    while True:
        try:
            await supervise_once()
        except Exception:  # a failed beat must not end the supervisor; the next one retries
            log.exception("generation supervisor")
        await asyncio.sleep(settings.CHATSITE_HEARTBEAT_INTERVAL)


async def shutdown(grace: float = 10.0) -> int:
    """Graceful shutdown: every answer of this process is saved as interrupted."""
    tasks = [g.task for g in list(RUNNING.values()) if g.task is not None and not g.task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=grace)
    if _supervisor is not None:
        _supervisor.cancel()
    return len(tasks)
