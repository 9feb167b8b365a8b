"""One writer for the checkpoints of every answer this process is writing.

Every CHATSITE_CHECKPOINT_INTERVAL (longer under load: checkpoint_interval) it saves the
text so far of each answer that grew since its last checkpoint, all in one trip to the
database thread and one transaction.
An answer of its own per trip was one trip per answer per second: at a hundred answers,
the database thread's queue that turn starts and page loads wait in.

A checkpoint that lands after the answer's final save changes nothing (it only writes
an answer still streaming), so the final save never waits for one.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from .. import services
from .generation import RUNNING

log = logging.getLogger(__name__)

_writer: asyncio.Task[None] | None = None


def checkpoints_ensure() -> None:
    """Start this process's checkpoint writer (once per event loop)."""
    global _writer
    loop = asyncio.get_running_loop()
    if _writer is not None and not _writer.done() and _writer.get_loop() is loop:
        return
    _writer = loop.create_task(
        _write_forever(), name="answer-checkpoints", context=contextvars.Context()
    )


async def checkpoints_write() -> int:
    """Save every running answer that grew since its last checkpoint; how many."""
    due = [g for g in list(RUNNING.values()) if g.checkpoint_due()]
    if not due:
        return 0
    rows = [g.checkpoint_row() for g in due]
    await database_sync_to_async(services.message_checkpoints)(rows=rows)
    return len(rows)


def checkpoint_interval() -> float:
    """Seconds between two checkpoints: longer under load, as frames get coarser; under
    load a crash loses a little more text instead. (A checkpoint no longer re-indexes
    the answer for search: that waits for its end, migration 0014.)"""
    base = settings.CHATSITE_CHECKPOINT_INTERVAL
    load = len(RUNNING) / max(1, settings.CHATSITE_CHECKPOINT_FULL_RATE_ANSWERS)
    return min(max(base, settings.CHATSITE_CHECKPOINT_INTERVAL_MAX), base * max(1.0, load))


async def _write_forever() -> None:
    while True:
        await asyncio.sleep(checkpoint_interval())
        try:
            await checkpoints_write()
        except Exception:  # a failed write must not end the writer; the next one retries
            log.exception("answer checkpoints")


def checkpoints_stop() -> None:
    """At shutdown: the answers save themselves as they end."""
    if _writer is not None:
        _writer.cancel()
