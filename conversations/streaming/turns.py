"""Where answers begin and end: what consumers and views call.

Send (or edit) a message, regenerate an answer, continue a partial one, switch versions,
stop. Each writes through services in one trip to the database thread, starts the
answer's generation, and announces the new state to every tab of the conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chatsite.types import Account

from .. import (
    attachment_selectors,
    catalog,
    fragments,
    message_selectors,
    services,
    turn_services,
    upstream,
)
from ..message_selectors import MessageView, Versions
from ..models import Conversation, Message
from . import broadcast, frames
from .checkpoints import checkpoints_ensure
from .generation import Generation
from .supervisor import supervisor_ensure
from .titles import title_start


class NotAllowed(Exception):
    """The caller's `allowed` check said no: nothing was saved or started."""


@dataclass
class _Prepared:
    answer: MessageView
    history: list[dict[str, Any]]
    question: MessageView | None = None


def _prepare(
    answer: Message,
    question: Message | None = None,
    *,
    new_leaves: bool = False,
    question_files: bool = True,
) -> _Prepared:
    # In the same trip to the database thread as the write that made the answer: each
    # trip, and each query, is time the reader waits for the first token.
    def view(message: Message) -> MessageView:
        if new_leaves:
            # A message sent after the leaf, and its answer: no other versions, no verdict.
            files = message is question and question_files
            return MessageView(
                message,
                Versions.of(message.pk, [message.pk]),
                attachments=attachment_selectors.message_attachments(message=message)
                if files
                else (),
            )
        return message_selectors.message_view(message=message)

    return _Prepared(
        answer=view(answer),
        # The answer was just written, with its conversation read afresh: not read again.
        history=message_selectors.message_history_for_upstream(
            answer_id=answer.pk, answer=answer if new_leaves else None
        ),
        question=view(question) if question is not None else None,
    )


async def _launch(
    *,
    conversation: Conversation,
    prepared: _Prepared,
    channel: str,
    server: tuple[str, int] | None,
    announce: Callable[[Generation], str],
    prefix: str = "",
) -> Generation:
    """Start the answer, then announce it to every tab of the conversation.

    The upstream request goes out first, and the announcement (the new messages' HTML,
    `announce`, run in the database thread) is written while the model thinks: the
    first token waits for the model, not for templates. The answer's own frames wait for
    the announcement (`Generation.announced`), so no text reaches a page before the
    message it belongs to."""
    config = upstream.configured(server=server)
    if attachment_selectors.history_has_stored_images(prepared.history):
        # Images are read from storage here, in a worker thread: a bucket's latency must
        # hold neither the database thread nor the event loop.
        prepared.history = await sync_to_async(
            attachment_selectors.images_inline, thread_sensitive=False
        )(prepared.history)
    generation = Generation(
        conversation=conversation,
        answer=prepared.answer.message,
        versions=prepared.answer.versions,
        channel=channel,
        config=config,
        layer=broadcast.layer(),
        prefix=prefix,
        question=prepared.question,
        history=prepared.history,
        after_final=lambda message: title_start(
            conversation=conversation, answer=message, config=config
        ),
    )
    generation.start()
    supervisor_ensure()
    checkpoints_ensure()
    try:
        html = await database_sync_to_async(announce)(generation)
        frame = frames.answer_frame(
            message_id=prepared.answer.message.pk,
            seq=0,
            html=html + fragments.composer_controls_html(streaming=True),
        )
        await generation.layer.group_send(generation.group, frame)
    finally:
        generation.announced.set()
    live = fragments.nav_live_html(conversation.public_id, live=True)
    await broadcast.to_user(conversation.owner_id, live)
    return generation


def _message_list_html(conversation: Conversation) -> str:
    return fragments.message_list_html(message_selectors.message_list(conversation=conversation))


def _path_redrawn(conversation: Conversation) -> Callable[[Generation], str]:
    # The path changed (an edit, a new version): every tab redraws it.
    return lambda _generation: _message_list_html(conversation)


async def turn_send(
    *,
    conversation: Conversation,
    text: Any,
    server: tuple[str, int] | None = None,
    client_key: str = "",
    edit_of: Any = None,
    allowed: Callable[[], bool] | None = None,
    attachment_ids: Any = None,
) -> turn_services.Turn:
    """Save the user's message and an empty answer, start the answer, announce them.
    With `edit_of` (a user message's id) the message is a new version of that one.
    `allowed`, a database read run first, may refuse the whole turn (NotAllowed).

    Raises ValidationError (bad text) or ActionRefused (an answer is streaming, a limit,
    no such message to edit). A repeated client key returns the earlier turn and starts
    nothing.
    """
    # The channel exists before the answer row, so whoever sees the row can reach it.
    channel = await broadcast.layer().new_channel()

    def start() -> tuple[turn_services.Turn, _Prepared | None]:
        if allowed is not None and not allowed():
            raise NotAllowed
        turn = turn_services.turn_start(
            conversation=conversation,
            text=text,
            generation_channel=channel,
            client_key=client_key,
            edit_of=edit_of,
            attachment_ids=attachment_ids,
        )
        if not turn.created:
            return turn, None
        return turn, _prepare(
            turn.answer,
            turn.user_message,
            new_leaves=edit_of is None,
            question_files=turn.has_files,
        )

    turn, prepared = await database_sync_to_async(start)()
    if prepared is None:
        return turn
    question, answer = prepared.question, prepared.answer
    assert question is not None  # prepared with it above

    def appended(_generation: Generation) -> str:  # the path grows by two messages
        return fragments.message_append_html(question) + fragments.message_append_html(answer)

    await _launch(
        conversation=conversation,
        prepared=prepared,
        channel=channel,
        server=server,
        announce=appended if edit_of is None else _path_redrawn(conversation),
    )
    return turn


async def conversation_start(
    *,
    owner: Account,
    model: str,
    system_prompt: str,
    text: Any,
    server: tuple[str, int] | None = None,
    attachment_ids: Any = None,
) -> turn_services.Turn:
    """A new conversation whose first message's answer starts now. Refused (ValidationError,
    ActionRefused) with nothing saved at all."""
    channel = await broadcast.layer().new_channel()

    def start() -> tuple[turn_services.Turn, _Prepared]:
        turn = turn_services.conversation_start(
            owner=owner,
            model=model,
            system_prompt=system_prompt,
            text=text,
            generation_channel=channel,
            attachment_ids=attachment_ids,
        )
        return turn, _prepare(
            turn.answer, turn.user_message, new_leaves=True, question_files=turn.has_files
        )

    turn, prepared = await database_sync_to_async(start)()
    await _launch(
        conversation=turn.user_message.conversation,
        prepared=prepared,
        channel=channel,
        server=server,
        # Nobody has the conversation open yet; the page it opens catches up on its own.
        announce=lambda _generation: "",
    )
    return turn


async def turn_retry(
    *,
    conversation: Conversation,
    message_id: Any,
    server: tuple[str, int] | None = None,
    model: Any = None,
) -> Message:
    """A new version of an answer, by the conversation's model or by `model`; the earlier
    ones stay, one click away."""
    channel = await broadcast.layer().new_channel()
    choices = None
    if model is not None:
        choices = await catalog.model_choices(config=upstream.configured(server=server))

    def retry() -> _Prepared:
        return _prepare(
            turn_services.answer_retry(
                conversation=conversation,
                message_id=message_id,
                generation_channel=channel,
                model=model,
                choices=choices,
            )
        )

    prepared = await database_sync_to_async(retry)()
    await _launch(
        conversation=conversation,
        prepared=prepared,
        channel=channel,
        server=server,
        announce=_path_redrawn(conversation),
    )
    return prepared.answer.message


async def turn_continue(
    *, conversation: Conversation, message_id: Any, server: tuple[str, int] | None = None
) -> Message:
    """The model continues a partial answer in place."""
    channel = await broadcast.layer().new_channel()

    def resume() -> _Prepared:
        return _prepare(
            turn_services.answer_continue(
                conversation=conversation, message_id=message_id, generation_channel=channel
            )
        )

    prepared = await database_sync_to_async(resume)()
    answer = prepared.answer.message

    def reopened(generation: Generation) -> str:
        # Cut where the generation cuts its text: its first frame appends to these blocks
        # and replaces this tail. Announced whole, the unfinished paragraph showed twice.
        return fragments.message_html(generation.announced_view(prepared.answer))

    await _launch(
        conversation=conversation,
        prepared=prepared,
        channel=channel,
        server=server,
        announce=reopened,
        prefix=answer.content,
    )
    return answer


async def version_show(*, conversation: Conversation, message_id: Any) -> None:
    """Switch the conversation's path to another version, in every tab."""

    def switch() -> str:
        services.conversation_show_version(conversation=conversation, message_id=message_id)
        return _message_list_html(conversation)

    await broadcast.to_conversation(conversation, await database_sync_to_async(switch)())


async def turn_stop(*, conversation: Conversation) -> bool:
    """Stop the conversation's answer, wherever it runs; False when none is streaming.
    One written in this process stops without a trip to the database."""
    if broadcast.answer_stop_here(conversation_id=conversation.pk):
        return True
    answer = await database_sync_to_async(message_selectors.message_get_streaming)(
        conversation=conversation
    )
    if answer is None:
        return False
    return await broadcast.answer_stop(answer=answer)
