"""What every tab of a conversation, or of a user, is told, and stopping answers: Stop
(here without a database trip, or wherever the answer runs), and the changes that stop
answers first: a deleted conversation, a suspended user, a deleted account. With a new
title and a signed-out session, the small public surface other apps use to reach open
pages and running answers (accounts: suspension, sign-out, account deletion).
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db.models import QuerySet

from .. import fragments, services
from ..models import Conversation, Message
from . import frames
from .generation import RUNNING


def layer() -> BaseChannelLayer:
    channel_layer = get_channel_layer()
    assert channel_layer is not None, "CHANNEL_LAYERS must be configured"
    return channel_layer


async def to_conversation(conversation: Conversation, html: str, *, gone: bool = False) -> None:
    group = frames.conversation_group(conversation.public_id.hex)
    await layer().group_send(group, frames.side_frame(html=html, gone=gone))


async def to_user(user_id: int, html: str) -> None:
    await layer().group_send(frames.user_group(user_id), frames.side_frame(html=html))


async def conversation_announce_title(*, conversation: Conversation) -> None:
    """A new title, to the conversation's tabs (header) and the owner's tabs (sidebar)."""
    await to_conversation(conversation, fragments.conversation_header_html(conversation))
    await to_user(conversation.owner_id, fragments.nav_title_html(conversation))


def answer_stop_here(*, conversation_id: int) -> bool:
    """Stop the conversation's answer if this process is writing it, without a trip to
    the database: under load that thread is busy with checkpoints and new turns, and a
    Stop must not queue behind them. False when the answer runs elsewhere (or none does).
    """
    for running in list(RUNNING.values()):
        # An earlier answer may still be finishing (title, usage): not that one.
        if running.conversation.pk == conversation_id and not running._closing:
            running.stop()
            return True
    return False


async def answer_stop(*, answer: Message) -> bool:
    """Ask the generation of a streaming answer to stop, wherever it runs."""
    local = RUNNING.get(answer.pk)
    if local is not None:
        local.stop()
        return True
    if not answer.generation_channel:
        return False
    await layer().send(answer.generation_channel, frames.stop_request())
    return True


async def answers_stop(*, answers: QuerySet[Message], wait: bool) -> None:
    """Stop every streaming answer among these, wherever it runs; with `wait`, until
    their partials are saved (bounded: a dead process's answer is the supervisor's)."""
    pending = answers.filter(status=Message.Status.STREAMING)
    async for answer in pending:
        await answer_stop(answer=answer)
    for _ in range(100 if wait else 0):
        if not await pending.aexists():
            break
        await asyncio.sleep(0.02)


async def user_answers_stop(*, user_id: int, wait: bool = True) -> None:
    """Stop all of a user's answers (an account about to be deleted)."""
    await answers_stop(answers=Message.objects.filter(conversation__owner_id=user_id), wait=wait)


async def conversation_remove(*, conversation: Conversation) -> None:
    """Delete a conversation: stop its answer first, then tell every tab it is gone."""
    await answers_stop(answers=conversation.messages.all(), wait=True)  # partial saved first
    await database_sync_to_async(services.conversation_delete)(conversation=conversation)
    entry_gone = fragments.nav_gone_html(conversation)
    await to_user(conversation.owner_id, entry_gone)
    # Its own tabs too, in the same frame: they close their socket right after it, and a
    # user-wide frame that came later would not reach them.
    html = fragments.conversation_gone_html() + entry_gone
    await to_conversation(conversation, html, gone=True)


async def user_kick(*, user_id: int) -> None:
    """A suspended user: every answer of theirs is stopped (and saved), every open socket
    of theirs, in every process, is closed."""
    await user_answers_stop(user_id=user_id, wait=False)
    notice = fragments.session_end_html(
        "Your account has been suspended. This page no longer updates; reload it to see why."
    )
    await layer().group_send(
        frames.user_group(user_id),
        frames.session_end(html=notice, code=frames.CLOSE_SUSPENDED),
    )


async def session_close(*, session_key: str) -> None:
    """A session signed out: every socket it opened, in every process, says so and
    closes (its answers go on: they belong to the account, not to the page)."""
    notice = fragments.session_end_html(
        "You signed out. This page no longer updates; sign in again to continue."
    )
    await layer().group_send(
        frames.session_group(session_key),
        frames.session_end(html=notice, code=frames.CLOSE_SIGNED_OUT),
    )
