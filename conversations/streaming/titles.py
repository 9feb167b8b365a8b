"""The model names a conversation: after its first finished answer, a short
non-streaming request to the same upstream (CHATSITE_TITLE_MODEL picks the model). It runs
after the answer's final frame, so it never delays it; if it fails the title stays the
first words of the first message. A title the user chose is never replaced. While
CHATSITE_TITLE_BUSY_ANSWERS answers or more stream in the process, it waits (up to a
minute): titles must not compete with answers for the process or the upstream. On an
upstream with a concurrency limit they run only while it is idle (gate.py)."""

from __future__ import annotations

import asyncio
import contextvars
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from .. import gate, services, upstream, upstream_errors
from ..models import Conversation, Message
from .broadcast import conversation_announce_title
from .generation import RUNNING

log = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a title of at most six words for the conversation below. Reply with the title "
    "only: no quotes, no punctuation at the end."
)
_TASKS: set[asyncio.Task[None]] = set()
TITLE_MAX_WAIT = 60.0  # seconds a title waits for a busy process before it goes anyway
TITLE_MAX_QUEUE_WAIT = 600.0  # seconds a title waits for a limited upstream to be idle


def title_start(
    *, conversation: Conversation, answer: Message, config: upstream.UpstreamConfig
) -> None:
    """Ask for a title in a task of its own, if the conversation's title is still its
    first words."""
    if conversation.title_source not in ("", Conversation.TitleSource.WORDS):
        return
    task = asyncio.create_task(
        _title_make(conversation=conversation, answer=answer, config=config),
        name=f"title-{conversation.pk}",
        context=contextvars.Context(),
    )
    _TASKS.add(task)  # a reference, or the task could be collected mid-flight
    task.add_done_callback(_done)


def _done(task: asyncio.Task[None]) -> None:
    _TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("naming a conversation failed", exc_info=task.exception())


def _first_question(answer: Message) -> str | None:
    # Only the first finished answer names a conversation.
    finished = Message.objects.filter(
        conversation_id=answer.conversation_id, role="assistant", status="complete"
    )
    if finished.count() != 1 or answer.parent_id is None:
        return None
    return Message.objects.filter(pk=answer.parent_id).values_list("content", flat=True).first()


async def _title_make(
    *, conversation: Conversation, answer: Message, config: upstream.UpstreamConfig
) -> None:
    question = await database_sync_to_async(_first_question)(answer)
    if not question:
        return
    # Answers come first: while this process writes many, a title waits (a while).
    waited = 0.0
    while len(RUNNING) >= settings.CHATSITE_TITLE_BUSY_ANSWERS and waited < TITLE_MAX_WAIT:
        await asyncio.sleep(1.0)
        waited += 1.0
    messages = [
        {"role": "system", "content": TITLE_PROMPT},
        {
            "role": "user",
            "content": f"User: {question[:2000]}\n\nAssistant: {answer.content[:2000]}",
        },
    ]

    async def ask() -> str:
        async with asyncio.timeout(settings.CHATSITE_TITLE_TIMEOUT):
            return await upstream.complete_text(
                config,
                model=settings.CHATSITE_TITLE_MODEL or conversation.model,
                messages=messages,
            )

    try:
        # On a limited upstream (a local server) the title waits until no answer runs
        # or waits, and an answer arriving cuts it short: it asks again later.
        async with asyncio.timeout(TITLE_MAX_QUEUE_WAIT):
            text = await gate.in_background(config, ask, wait=True)
    except (upstream_errors.UpstreamError, TimeoutError):
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
