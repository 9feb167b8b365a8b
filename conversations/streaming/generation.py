"""One answer's life, from the upstream's first byte to its final state.

A generation is an asyncio task of its own, independent of any socket:

* it opens the upstream stream (retrying, before the first token, what is worth
  retrying, within a time budget) and appends each chunk's text to its buffer;
* it publishes frames to the conversation's group: the first text at once, then at most
  one frame every `frame_interval()`, each carrying only the new text (so a frame's cost
  never grows with the answer); between two frames it does not read, and reads what
  arrived meanwhile at once when the next is due;
* it checkpoints the text to the database about every CHATSITE_CHECKPOINT_INTERVAL;
* it listens on a channel of its own, whose name is stored on the answer, so that a Stop
  or a snapshot request from any tab in any process reaches it;
* whatever happens (end, Stop, upstream failure, a cap, shutdown) its `finally` hangs up
  the upstream and saves the text with a final status.

It knows the conversation's group, not who listens: it never imports a consumer, a view,
or the modules that start it (turns) and watch it (supervisor).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer
from django.conf import settings
from django.utils import timezone

from accounts import quotas
from moderation import services as moderation_services

from .. import (
    attachments,
    fragments,
    gate,
    services,
    upstream,
    upstream_errors,
    upstream_sse,
    usage_selectors,
)
from ..growing import GrowingBlock
from ..message_selectors import MessageView, Versions
from ..models import Conversation, Message
from ..rendering import render
from ..splitting import BlockSplitter
from . import frames
from .moderating import AnswerModeration, QuestionBlocked

log = logging.getLogger(__name__)

# Generations running in this process, by answer id.
RUNNING: dict[int, Generation] = {}

CONTINUE_PROMPT = (
    "Continue your previous answer exactly where it stopped. Do not repeat anything "
    "you already wrote and do not add any preamble."
)


def frame_interval() -> float:
    """Seconds between two frames of one answer. A frame's cost is mostly fixed (render
    the growing block, the layer, the socket), so under load frames get coarser rather
    than fall behind: at 30 tokens/s a reader does not tell 50 ms from 150 ms apart."""
    base = settings.CHATSITE_FRAME_INTERVAL
    load = len(RUNNING) / max(1, settings.CHATSITE_FRAME_FULL_RATE_ANSWERS)
    return min(max(base, settings.CHATSITE_FRAME_INTERVAL_MAX), base * max(1.0, load))


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
    # The answer's place among its versions (they cannot change while it streams).
    versions: Versions | None = None
    # A new user message, screened before anything goes upstream.
    question: MessageView | None = None
    # What the model is sent (read in the caller's trip to the database).
    history: list[dict[str, Any]] = field(default_factory=list)
    # Called with the finished message once its final frame is out (titles).
    after_final: Callable[[Message], None] | None = None
    # Set once every tab was told of the answer: its frames must come after that.
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    group: str = ""
    request_id: str = ""
    note: str = ""
    first_token_at: datetime | None = None
    usage: upstream_sse.Usage | None = None
    finish_reason: str = ""
    seq: int = 0
    _sealed: list[str] = field(default_factory=list)  # finished blocks, as sent
    _sealed_html: list[str] = field(default_factory=list)  # and as rendered, once
    _splitter: BlockSplitter = field(default_factory=BlockSplitter)
    _growing: GrowingBlock = field(init=False)  # how the growing block is on the pages
    _pending: list[str] = field(default_factory=list)  # received, not yet sent
    _length: int = 0
    _received_text: bool = False
    _next_frame: float = float("-inf")  # the event loop's time the next frame is due
    _stop_requested: bool = False
    _closing: bool = False
    _reader: asyncio.Task[None] | None = None
    _checkpointed: int = 0  # the text's length at the last checkpoint
    _prompt_chars: int = 0
    moderation: AnswerModeration = field(init=False)
    # The raw upstream body for the chunk log (CHATSITE_CHUNK_LOG), else None.
    chunk_record: upstream_sse.ChunkRecord | None = field(init=False, default=None)
    prefix_split: tuple[str, str] = field(init=False)
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.group = frames.conversation_group(self.conversation.public_id.hex)
        # Continue: the kept text as the pages are told of it, cut the way this
        # generation's frames will go on from (finished blocks, the growing one).
        self.prefix_split = ("", "")
        self._growing = GrowingBlock(key=f"message-{self.answer.pk}-live")
        if settings.CHATSITE_CHUNK_LOG:
            self.chunk_record = upstream_sse.ChunkRecord(settings.CHATSITE_CHUNK_LOG_MAX_BYTES)
        if self.prefix:
            finished, _ = self._splitter.feed(self.prefix)
            self._sealed.append(finished)
            self._sealed_html.append(render(finished))
            self._length = self._checkpointed = len(self.prefix)
            self.prefix_split = (finished, self._splitter.window)
            self._growing.restart(self._splitter.window)
        self.first_token_at = self.answer.first_token_at
        if self.versions is None:
            self.versions = Versions.of(self.answer.pk, [self.answer.pk])
        self.moderation = AnswerModeration(
            answer=self.answer,
            config=self.config,
            stop=self.stop,
            screened=len(self.prefix),  # screened when it was first written
        )

    # --- text -------------------------------------------------------------------------
    @property
    def published_split(self) -> tuple[str, str]:
        return "".join(self._sealed), self._splitter.window

    @property
    def text(self) -> str:
        return "".join(self._sealed) + self._splitter.window + "".join(self._pending)

    def _published_text(self) -> str:
        sealed, window = self.published_split
        return sealed + window

    # --- life ---------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        # A fresh context: the task must not inherit the request's or the socket's
        # thread-sensitive executor, which dies with them (the answer must not).
        self.task = asyncio.create_task(
            self.run(), name=f"generation-{self.answer.pk}", context=contextvars.Context()
        )
        RUNNING[self.answer.pk] = self
        self.task.add_done_callback(lambda _t: RUNNING.pop(self.answer.pk, None))
        return self.task

    def stop(self) -> None:
        """Stop this answer (called in this process; other processes send a message)."""
        self._stop_requested = True
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()

    async def run(self) -> None:
        helpers = [
            asyncio.create_task(self._listen(), name=f"answer-{self.answer.pk}-control"),
            asyncio.create_task(
                self.moderation.loop(self._published_text), name=f"answer-{self.answer.pk}-screen"
            ),
        ]
        for helper in helpers:
            helper.add_done_callback(_supervised)
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
                await asyncio.shield(self._finish(outcome, helpers))
                raise
        except upstream_errors.UpstreamError as exc:
            outcome.status = Message.Status.INTERRUPTED if self.text else Message.Status.ERROR
            outcome.error = exc.user_message
            if exc.kind is upstream_errors.ErrorKind.RATE_LIMITED and exc.retry_after:
                outcome.error += f" The service asked to wait {exc.retry_after:.0f} s."
            self.request_id = self.request_id or exc.request_id
        except (AnswerCapped, QuestionBlocked) as exc:
            outcome.status = (
                Message.Status.ERROR
                if isinstance(exc, QuestionBlocked)
                else Message.Status.INTERRUPTED
            )
            outcome.error = str(exc)
        except Exception:
            # Deliberately broad, and only here: a bug must not leave an answer streaming
            # forever. Log it with its traceback and save what there is.
            log.exception("generation %s failed", self.answer.pk)
            outcome.status = Message.Status.INTERRUPTED if self.text else Message.Status.ERROR
            outcome.error = "Something went wrong on this site while answering."
        await asyncio.shield(self._finish(outcome, helpers))

    # --- reading the upstream -----------------------------------------------------------
    async def _read(self) -> None:
        if self.question is not None:
            await self.moderation.question(self.question, self._publish)
        history = self.history
        self._prompt_chars = sum(attachments.content_chars(m["content"]) for m in history)
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
            except upstream_errors.UpstreamError as exc:
                # Once text is on the reader's screen nothing is replayed: no duplicates.
                if self._received_text or not exc.retryable:
                    raise
                attempt += 1
                delay = upstream.retry_delay(attempt, exc.retry_after)
                if loop.time() + delay > deadline:
                    raise
                await self._set_note(
                    f"{exc.user_message} Retrying in {max(delay, 1):.0f} s (attempt {attempt + 1})…"
                )
                await asyncio.sleep(delay)

    async def _read_once(self, history: list[dict[str, Any]]) -> None:
        async with gate.answer_turn(self.config, on_wait=self._waiting) as waited:
            if waited:
                await self._set_note("")  # its turn: the model is reading the question
            await self._stream(history)

    async def _waiting(self, ahead: int) -> None:
        answers = "answer" if ahead == 1 else "answers"
        await self._set_note(f"Waiting for the model: {ahead} {answers} ahead…")

    async def _stream(self, history: list[dict[str, Any]]) -> None:
        stream = await upstream.open_stream(
            self.config, model=self.answer.model, messages=history, record=self.chunk_record
        )
        self.request_id = stream.request_id
        started = time.monotonic()
        max_chars = settings.CHATSITE_MAX_ANSWER_CHARS
        max_seconds = settings.CHATSITE_MAX_ANSWER_SECONDS
        loop = asyncio.get_running_loop()
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
                if not self._pending:
                    continue
                wait = self._next_frame - loop.time()
                if wait > 0:
                    # Not due: wait for the frame rather than read each chunk as it comes.
                    # What arrives meanwhile is read in one go (one wake-up per frame, not
                    # per chunk) and goes out in the frame it would have gone out in.
                    await asyncio.sleep(wait)
                    if stream.ready():
                        continue  # read it first: it belongs in this frame
                await self._publish_delta()
                self._next_frame = loop.time() + frame_interval()
        finally:
            # Runs on Stop too (CancelledError): the upstream must see us hang up.
            await stream.close()

    def _take(self, event: upstream_sse.StreamEvent) -> None:
        if event.text:
            if self.first_token_at is None:
                self.first_token_at = timezone.now()
            self._received_text = True
            self._pending.append(event.text)
            self._length += len(event.text)
        if event.finish_reason:
            self.finish_reason = event.finish_reason
        if event.usage is not None:
            self.usage = event.usage

    # --- the channel of its own ---------------------------------------------------------
    async def _listen(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            kind = message.get("type")
            if kind == frames.STOP:
                self.stop()
            elif kind == frames.SNAPSHOT_REQUEST and isinstance(message.get("reply_to"), str):
                snap = frames.snapshot(
                    message_id=self.answer.pk, seq=self.seq, html=self._snapshot_html()
                )
                await self.layer.send(message["reply_to"], snap)

    def _snapshot_html(self) -> str:
        # Exactly the published text, cut where the frames cut it: the frames after
        # `seq` append to these blocks and replace this tail.
        sealed, tail = self.published_split
        self.answer.content = sealed + tail
        html = fragments.message_html(self._view(self.answer, split=(sealed, tail)), note=self.note)
        return html + fragments.composer_controls_html(streaming=True)

    def _view(self, message: Message, split: tuple[str, str] | None = None) -> MessageView:
        assert self.versions is not None  # set in __post_init__
        if split is None:
            return MessageView(message, self.versions)
        # The growing block as the frames left it: the next frame inserts before its live
        # element and deletes that.
        return MessageView(message, self.versions, split, tail_html=self._growing.html())

    def _final_view(self, message: Message) -> MessageView:
        """The saved answer, its text's HTML made of the blocks already rendered for the
        frames and its last block: re-rendering a long answer whole (code highlighted
        again) cost more than all its frames' rendering."""
        view = self._view(message)
        sealed = "".join(self._sealed)
        if message.content != self.text or not message.content.startswith(sealed):
            return view  # saved otherwise than written here (finalised elsewhere)
        body = "".join(self._sealed_html) + render(message.content[len(sealed) :])
        return replace(view, body_html=body)

    def announced_view(self, view: MessageView) -> MessageView:
        """An answer being continued, as every page is told of it: cut where this
        generation's frames go on from."""
        return replace(view, split=self.prefix_split, tail_html=self._growing.html())

    # --- frames and checkpoints -----------------------------------------------------------
    async def _publish(self, html: str, *, final: bool = False) -> None:
        await self.announced.wait()
        self.seq += 1
        frame = frames.answer_frame(message_id=self.answer.pk, seq=self.seq, html=html, final=final)
        await self.layer.group_send(self.group, frame)

    async def _set_note(self, note: str) -> None:
        self.note = note
        await self._publish(fragments.message_note_html(self.answer.pk, note))

    async def _publish_delta(self) -> None:
        if not self._pending:
            return
        delta = "".join(self._pending)
        self._pending.clear()
        finished, tail = self._splitter.feed(delta)
        finished_html = ""
        if finished:
            finished_html = render(finished)
            self._sealed.append(finished)
            self._sealed_html.append(finished_html)
            tail_html, whole = self._growing.restart(tail), True
        else:
            tail_html, whole = self._growing.grow(tail)
        self.moderation.due.set()
        html = fragments.answer_growth_html(self.answer.pk, finished_html, tail_html, whole=whole)
        if self.note:  # text is flowing again: the retry notice has done its job
            self.note = ""
            html += fragments.message_note_html(self.answer.pk, "")
        await self._publish(html)

    def checkpoint_due(self) -> bool:
        """Text arrived since the last checkpoint (checkpoints.py writes them)."""
        return self._length != self._checkpointed

    def checkpoint_row(self) -> tuple[int, str, datetime | None]:
        self._checkpointed = self._length
        return self.answer.pk, self.text, self.first_token_at

    # --- the end --------------------------------------------------------------------------
    async def _finish(self, outcome: Outcome, helpers: list[asyncio.Task[Any]]) -> None:
        self._closing = True
        for task in helpers:
            task.cancel()
        # Bounded: a library that swallows a cancellation (seen with the Redis client)
        # must not keep the answer from being saved.
        await asyncio.wait(helpers, timeout=2.0)
        if self._pending and self.moderation.verdict is None:
            # The last words go out now, as any others would have: the final frame waits
            # for screening and the save, hundreds of milliseconds under load.
            try:
                await self._publish_delta()
            except Exception:
                # Deliberately broad: nothing may keep the answer from being saved (the
                # final frame carries these words too).
                log.exception("the last words of answer %s could not be sent", self.answer.pk)
        if outcome.status != Message.Status.ERROR:
            await self.moderation.rest(self.text)
        stopped_by = self.moderation.verdict
        if stopped_by is not None:
            outcome.error = (
                "This answer was stopped and hidden: it goes against this site's rules "
                f"({stopped_by.category})."
            )
        message = await self._save(outcome)
        if message is None:
            return  # deleted meanwhile: nobody left to tell
        html = fragments.message_final_html(self._final_view(message))
        if message.total_tokens is not None or message.prompt_tokens is not None:
            usage = await database_sync_to_async(usage_selectors.usage_for_conversation)(
                conversation=self.conversation
            )
            html += fragments.conversation_usage_html(usage)
        allowance = await database_sync_to_async(quotas.allowance)(
            user_id=self.conversation.owner_id
        )
        html += fragments.quota_notice_html(allowance)
        await self._publish(html, final=True)
        if self.chunk_record is not None and self.chunk_record.entries:
            record = self.chunk_record
            await database_sync_to_async(services.message_chunk_log_save)(
                message_id=message.pk,
                entries=record.entries,
                size=record.size,
                truncated=record.truncated,
            )
        live = fragments.nav_live_html(self.conversation.public_id, live=False)
        await self.layer.group_send(
            frames.user_group(self.conversation.owner_id), frames.side_frame(html=live)
        )
        if message.status == Message.Status.COMPLETE and message.content and self.after_final:
            # After the answer, never before it: the title must not delay a single token.
            self.after_final(message)

    async def _save(self, outcome: Outcome) -> Message | None:
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
                return None
        if self.moderation.verdict is not None:
            await database_sync_to_async(moderation_services.message_hide)(
                message_id=message.pk, reason=outcome.error
            )
            message.hidden, message.hidden_reason = True, outcome.error
        return message

    async def _count_tokens(self, usage: upstream_sse.Usage | None) -> None:
        if not self._received_text and usage is None:
            return  # nothing was asked of the model (blocked, failed before it answered)
        await database_sync_to_async(quotas.record_answer)(
            user_id=self.conversation.owner_id,
            model=self.answer.model,
            reported=usage.total_tokens if usage is not None else None,
            characters=self._prompt_chars + len(self.text),
        )


def _supervised(task: asyncio.Task[Any]) -> None:
    """A helper task's failure is logged with its traceback (a cancellation is not one)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("helper %s of an answer failed", task.get_name(), exc_info=exc)
