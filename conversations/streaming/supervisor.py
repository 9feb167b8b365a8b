"""Each process's supervisor: it beats for the answers this process is writing, marks as
interrupted the answers of processes that stopped beating (at start-up and every
CHATSITE_HEARTBEAT_INTERVAL), and at a graceful shutdown saves every answer still being
written as interrupted."""

from __future__ import annotations

import asyncio
import contextvars
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from .. import fragments, message_selectors, services, upstream
from ..models import Message
from . import broadcast, frames
from .checkpoints import checkpoints_stop
from .generation import RUNNING

log = logging.getLogger(__name__)

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
    for message in dead:
        view = await database_sync_to_async(message_selectors.message_view)(message=message)
        log.warning("answer %s was left streaming by a dead process", message.pk)
        conversation = message.conversation
        frame = frames.answer_frame(
            message_id=message.pk,
            seq=frames.BEYOND_ANY_FRAME,
            html=fragments.message_final_html(view),
            final=True,
        )
        await broadcast.layer().group_send(
            frames.conversation_group(conversation.public_id.hex), frame
        )
        live = fragments.nav_live_html(conversation.public_id, live=False)
        await broadcast.to_user(conversation.owner_id, live)
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
    checkpoints_stop()
    await upstream.clients_close()  # the answers are saved: hang up the pools
    return len(tasks)
