"""One answer's life, from the upstream's first byte to its final state.

A generation is an asyncio task of its own, independent of any socket:

* it opens the upstream stream and appends each chunk's text to its buffer;
* it publishes frames to the conversation's channel-layer group: the first text at once,
  then at most one frame every CHATSITE_FRAME_INTERVAL seconds, each carrying only the new
  text (so a frame's cost never grows with the answer);
* it checkpoints the text to the database about every CHATSITE_CHECKPOINT_INTERVAL seconds;
* it listens on a channel of its own, whose name is stored on the answer, so that a Stop
  or a snapshot request from any tab in any process reaches it;
* whatever happens (end, Stop, upstream failure, shutdown) its `finally` hangs up the
  upstream and saves the text with a final status.

It never imports a consumer: it knows the conversation's group, not who listens.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.utils import timezone

from . import fragments, selectors, services, upstream
from .models import Conversation, Message

log = logging.getLogger(__name__)

# Generations running in this process, by answer id (for shutdown and for tests).
RUNNING: dict[int, Generation] = {}


def group_name(conversation: Conversation) -> str:
    return f"conversation.{conversation.public_id.hex}"


def upstream_config(*, server: tuple[str, int] | None = None) -> upstream.UpstreamConfig:
    """The upstream for new answers: the configured one, or this site's demo endpoint."""
    if settings.CHATSITE_DEMO_MODE:
        base_url = settings.CHATSITE_DEMO_BASE_URL
        if not base_url:
            host, port = server or ("127.0.0.1", 8000)
            if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind: call ourselves on loopback
                host = "127.0.0.1"
            base_url = f"http://{host}:{port}/demo/v1"
        api_key = "demo"
    else:
        base_url = settings.OPENAI_BASE_URL
        api_key = settings.OPENAI_API_KEY or "none"  # local servers often need no key
    return upstream.UpstreamConfig(
        base_url=base_url,
        api_key=api_key,
        connect_timeout=settings.CHATSITE_UPSTREAM_CONNECT_TIMEOUT,
        idle_timeout=settings.CHATSITE_UPSTREAM_IDLE_TIMEOUT,
    )


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
    group: str = ""
    request_id: str = ""
    first_token_at: datetime | None = None
    usage: upstream.Usage | None = None
    finish_reason: str = ""
    seq: int = 0
    _published: list[str] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _stop_requested: bool = False
    _reader: asyncio.Task[None] | None = None
    _checkpoint: asyncio.Task[Any] | None = None
    _last_checkpoint: float = 0.0
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.group = group_name(self.conversation)

    # --- text -------------------------------------------------------------------------
    @property
    def published_text(self) -> str:
        return "".join(self._published)

    @property
    def text(self) -> str:
        return "".join(self._published) + "".join(self._pending)

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

    async def run(self) -> None:
        control = asyncio.create_task(self._listen())
        flusher = asyncio.create_task(self._flush_loop())
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
                outcome.error = "The server stopped while this answer was being written."
                await asyncio.shield(self._finish(outcome, control, flusher))
                raise
        except upstream.UpstreamError as exc:
            outcome.status = Message.Status.INTERRUPTED if self.text else Message.Status.ERROR
            outcome.error = exc.user_message
            self.request_id = self.request_id or exc.request_id
        except Exception:
            log.exception("generation %s failed", self.answer.pk)
            outcome.status = Message.Status.INTERRUPTED if self.text else Message.Status.ERROR
            outcome.error = "Something went wrong on this site while answering."
        await asyncio.shield(self._finish(outcome, control, flusher))

    async def _read(self) -> None:
        history = await database_sync_to_async(selectors.message_history_for_upstream)(
            conversation_id=self.conversation.pk, before_message_id=self.answer.pk
        )
        stream = await upstream.open_stream(self.config, model=self.answer.model, messages=history)
        self.request_id = stream.request_id
        try:
            async for event in stream:
                if event.text:
                    if self.first_token_at is None:
                        self.first_token_at = timezone.now()
                    self._pending.append(event.text)
                    self._dirty.set()
                if event.finish_reason:
                    self.finish_reason = event.finish_reason
                if event.usage is not None:
                    self.usage = event.usage
        finally:
            # Runs on Stop too (CancelledError): the upstream must see us hang up.
            await stream.close()

    def stop(self) -> None:
        """Stop this answer (called from this process; other processes send a message)."""
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
        # Exactly the published text: the frames after `seq` carry the rest.
        self.answer.content = self.published_text
        return fragments.message_html(self.answer) + fragments.composer_controls_html(
            streaming=True
        )

    # --- frames and checkpoints -----------------------------------------------------------
    async def _flush_loop(self) -> None:
        interval = settings.CHATSITE_FRAME_INTERVAL
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._publish_delta()
            self._maybe_checkpoint()
            await asyncio.sleep(interval)

    async def _publish_delta(self) -> None:
        if not self._pending:
            return
        delta = "".join(self._pending)
        self._pending.clear()
        self._published.append(delta)
        self.seq += 1
        await self.layer.group_send(
            self.group,
            {
                "type": "chat.frame",
                "message_id": self.answer.pk,
                "seq": self.seq,
                "html": fragments.text_delta_html(self.answer.pk, delta),
                "final": False,
            },
        )

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
        for task in (control, flusher):
            task.cancel()
        await asyncio.gather(control, flusher, return_exceptions=True)
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
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
        if message is None:  # someone else already finalised it
            message = await database_sync_to_async(Message.objects.get)(pk=self.answer.pk)
        self.seq += 1
        await self.layer.group_send(
            self.group,
            {
                "type": "chat.frame",
                "message_id": self.answer.pk,
                "seq": self.seq,
                "html": fragments.message_html(message)
                + fragments.composer_controls_html(streaming=False),
                "final": True,
            },
        )


async def generation_begin(
    *, conversation: Conversation, text: str, server: tuple[str, int] | None = None
) -> services.Turn:
    """Save the user's message and an empty answer, announce them, start the answer.

    Raises ValidationError (bad text) or ConversationBusy (an answer is streaming).
    """
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS must be configured"
    # The channel exists before the answer row, so whoever sees the row can reach it.
    channel = await layer.new_channel()
    turn = await database_sync_to_async(services.turn_start)(
        conversation=conversation, text=text, generation_channel=channel
    )
    generation = Generation(
        conversation=conversation,
        answer=turn.answer,
        channel=channel,
        config=upstream_config(server=server),
        layer=layer,
    )
    await layer.group_send(
        generation.group,
        {
            "type": "chat.frame",
            "message_id": turn.answer.pk,
            "seq": 0,
            "html": fragments.message_append_html(turn.user_message)
            + fragments.message_append_html(turn.answer)
            + fragments.composer_controls_html(streaming=True),
            "final": False,
        },
    )
    generation.start()
    return turn


async def generation_stop(*, answer: Message) -> bool:
    """Ask the generation of a streaming answer to stop, wherever it runs."""
    local = RUNNING.get(answer.pk)
    if local is not None:
        local.stop()
        return True
    if not answer.generation_channel:
        return False
    layer = get_channel_layer()
    assert layer is not None
    await layer.send(answer.generation_channel, {"type": "generation.stop"})
    return True
