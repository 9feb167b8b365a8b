"""The conversation websocket: socket <-> answers, through the channel layer.

The consumer only orchestrates. It authorises the socket, turns client frames into calls
of `streaming.turns` and relays the conversation group's frames to the browser. It never runs
a stream itself: Channels handles one message of a consumer at a time, so a stream inside
receive() would make Stop wait for the end of the answer.

Joining while an answer streams: the socket joins the group first, then asks the running
generation (wherever it runs) for a snapshot of the text published so far. Frames that
arrive before the snapshot are held back and only those newer than it are relayed, so the
reader sees no text twice and none missing (`streaming.frames.FrameOrder` decides).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import ValidationError

from accounts import selectors as account_selectors
from chatsite.errors import ActionRefused
from chatsite.throttle import slow_down_text, socket_admit, socket_release, throttle_wait
from chatsite.types import Visitor

from . import fragments, message_selectors, selectors
from .models import Conversation, Message
from .streaming import frames, turns
from .streaming.supervisor import supervisor_ensure

log = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT = 3.0  # seconds to wait for a running generation to answer


class DirectDispatch:
    """Channels calls `aclose_old_connections()` before every handler: a hop through the
    one database thread for every frame to every socket, queued behind checkpoints and
    turn starts (7% of a busy process, and why first words arrived together). Every
    database access here goes through `database_sync_to_async`, which closes stale
    connections itself, so the hop buys nothing."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class ConversationConsumer(DirectDispatch, AsyncWebsocketConsumer):
    conversation: Conversation | None = None
    group: str = ""
    user_group: str = ""
    session_group: str = ""
    counted: int | None = None  # the user whose open sockets this one counts among
    order: frames.FrameOrder
    snapshot_timer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.order = frames.FrameOrder()
        user = self.scope.get("user")
        public_id = self.scope["url_route"]["kwargs"]["public_id"]
        conversation = await database_sync_to_async(self._authorised_conversation)(user, public_id)
        if conversation is None:
            # Anonymous, someone else's, or no such conversation: refuse the handshake
            # (HTTP 403) before a single byte of data is sent.
            await self.close()
            return
        if not socket_admit(key=conversation.owner_id, cap=settings.CHATSITE_MAX_SOCKETS_PER_USER):
            await self._refuse_too_many()
            return
        self.counted = conversation.owner_id
        self.conversation = conversation
        supervisor_ensure()
        # Join before looking at the database, so no frame can fall in between.
        self.group = frames.conversation_group(conversation.public_id.hex)
        self.user_group = frames.user_group(conversation.owner_id)
        self.session_group = frames.session_group(self.scope["session"].session_key)
        for group in (self.group, self.user_group, self.session_group):
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self._catch_up()

    async def _refuse_too_many(self) -> None:
        # Accepted only to say why: a refused handshake tells the page nothing.
        await self.accept()
        await self._error(
            f"You have {settings.CHATSITE_MAX_SOCKETS_PER_USER} pages of this site open. "
            "Close some of them, then reload this one."
        )
        await self.close(code=frames.CLOSE_TOO_MANY)

    async def disconnect(self, code: int) -> None:
        if self.counted is not None:
            socket_release(key=self.counted)
            self.counted = None
        if self.snapshot_timer is not None:
            self.snapshot_timer.cancel()
        if self.group:
            for group in (self.group, self.user_group, self.session_group):
                await self.channel_layer.group_discard(group, self.channel_name)
        # The answer goes on without us: a generation never belongs to a socket.

    # --- client frames ------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error("Frames must be JSON text.")
            return
        if len(text_data.encode()) > settings.CHATSITE_MAX_FRAME_BYTES:
            await self._error("That frame is too large.")
            return
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            await self._error("That frame was not valid JSON.")
            return
        if not isinstance(frame, dict):
            await self._error("A frame must be a JSON object.")
            return
        # htmx's ws-send adds form fields and a HEADERS key: extra keys are ignored.
        action = frame.get("action")
        if action == "stop":
            await self._stop()  # never throttled: stopping must always work
            return
        user = self.scope.get("user")
        wait = throttle_wait(
            kind="socket",
            key=getattr(user, "pk", None),
            rate=settings.CHATSITE_SOCKET_ACTIONS_PER_SECOND,
            burst=settings.CHATSITE_SOCKET_ACTIONS_BURST,
        )
        if wait:
            await self._error(slow_down_text(wait))
            return
        if action in ("send", "edit"):
            # Checked in the same trip to the database as the message is saved.
            await self._start(action, frame)
        elif action in ("retry", "continue", "version"):
            if not await database_sync_to_async(self._still_signed_in)():
                await self._session_ended()
                return
            await self._start(action, frame)
        else:
            await self._error("Unknown action.")

    def _authorised_conversation(self, user: Visitor | None, public_id: Any) -> Conversation | None:
        if user is None:
            return None
        conversation = selectors.conversation_get(user=user, public_id=public_id)
        if conversation is None or not self._still_signed_in():
            return None  # not hers, or signed out elsewhere, or suspended
        return conversation

    def _still_signed_in(self) -> bool:
        """A user deactivated or signed out elsewhere starts nothing on an open socket.
        Read on every action that starts something, in the same trip to the database as
        the action's own write (a session deleted or a user deactivated behind the site's
        back sends no frame to close the socket)."""
        session = self.scope.get("session")
        user = self.scope.get("user")
        return account_selectors.user_session_is_live(
            user_id=getattr(user, "pk", None),
            session_key=getattr(session, "session_key", None),
        )

    async def _session_ended(self) -> None:
        await self._error("Your session has ended. Sign in again to continue.")
        await self.close(code=frames.CLOSE_SIGNED_OUT)

    async def _start(self, action: str, frame: dict[str, Any]) -> None:
        assert self.conversation is not None
        key = frame.get("client_key")
        key = key if isinstance(key, str) else ""
        server = self.scope.get("server")
        message_id = frame.get("message_id")
        try:
            if action in ("send", "edit"):
                await turns.turn_send(
                    conversation=self.conversation,
                    text=frame.get("message"),  # cleaned in services
                    server=server,
                    client_key=key,
                    edit_of=message_id if action == "edit" else None,
                    allowed=self._still_signed_in,
                    # Pending attachments' ids (checked against the sender in services).
                    attachment_ids=frame.get("attachments"),
                )
            elif action == "version":
                await turns.version_show(conversation=self.conversation, message_id=message_id)
                return
            elif action == "retry":
                await turns.turn_retry(
                    conversation=self.conversation,
                    message_id=message_id,
                    server=server,
                    model=frame.get("model") or None,  # another model for this version
                )
            else:
                await turns.turn_continue(
                    conversation=self.conversation, message_id=message_id, server=server
                )
        except turns.NotAllowed:
            await self._session_ended()
            return
        except ValidationError as exc:
            await self._error(" ".join(exc.messages))
            return
        except ActionRefused as exc:
            await self._error(exc.user_message)
            return
        # Only now may the page clear what was typed: the message is saved.
        await self.send(text_data=fragments.feedback_html(accepted_key=key or "accepted"))

    async def _stop(self) -> None:
        assert self.conversation is not None
        if not await turns.turn_stop(conversation=self.conversation):
            await self._error("There is no answer being written to stop.")

    async def _error(self, text: str) -> None:
        await self.send(text_data=fragments.feedback_html(error=text))

    # --- catching up --------------------------------------------------------------------
    async def _catch_up(self) -> None:
        assert self.conversation is not None
        answer = await database_sync_to_async(message_selectors.message_get_streaming)(
            conversation=self.conversation
        )
        if answer is None:
            # The page may predate the end of an answer: bring its last state and an
            # unlocked composer.
            await self._send_saved_state()
            return
        self.order.await_snapshot(answer.pk)
        await self._request_snapshot(answer)

    async def _request_snapshot(self, answer: Message) -> None:
        await self.channel_layer.send(
            answer.generation_channel, frames.snapshot_request(reply_to=self.channel_name)
        )
        self.snapshot_timer = asyncio.create_task(self._snapshot_deadline(answer.pk))

    async def _snapshot_deadline(self, message_id: int) -> None:
        await asyncio.sleep(SNAPSHOT_TIMEOUT)
        await self.channel_layer.send(
            self.channel_name, {"type": "snapshot.timeout", "message_id": message_id}
        )

    async def _send_saved_state(self) -> None:
        assert self.conversation is not None
        messages = await database_sync_to_async(message_selectors.message_list)(
            conversation=self.conversation
        )
        item = messages[-1] if messages else None
        last = item.message if item is not None else None
        streaming = last is not None and last.is_streaming
        html = fragments.composer_controls_html(streaming=streaming)
        if item is not None and last is not None and last.role == Message.Role.ASSISTANT:
            # The page says which last message it was rendered with: when that is still
            # the state, re-sending it would only reset what the reader is doing with it.
            seen = parse_qs(self.scope.get("query_string", b"").decode()).get("seen", [""])[0]
            if seen != f"{last.pk}-{last.status}":
                html = fragments.message_html(item, is_last=True) + html
        await self.send(text_data=html)

    # --- group and generation events ----------------------------------------------------
    async def session_end(self, event: dict[str, Any]) -> None:
        """The user was suspended, or this session signed out: say so, then close
        (reconnects are refused)."""
        if event.get("html"):
            await self.send(text_data=event["html"])
        await self.close(code=event.get("code", frames.CLOSE_SUSPENDED))

    async def chat_frame(self, event: dict[str, Any]) -> None:
        action = self.order.on_frame(event)
        if action is frames.Action.HOLD:
            return
        if action is frames.Action.HEAL:
            await self._heal(event)
            return
        if not self.order.awaiting and self.snapshot_timer is not None:
            self._cancel_timer()  # a final frame ended the wait
        await self.send(text_data=event["html"])
        if event.get("gone"):  # the conversation was deleted: nothing more will come
            await self.close(code=frames.CLOSE_GONE)

    async def chat_snapshot(self, event: dict[str, Any]) -> None:
        newer = self.order.on_snapshot(event)
        if newer is None:
            return  # late: a final frame has already said everything
        self._cancel_timer()
        await self.send(text_data=event["html"])
        for frame in newer:
            await self.chat_frame(frame)  # in order; a gap among them is healed again

    async def _heal(self, event: dict[str, Any]) -> None:
        # A frame of this answer went missing on the way (a reader that fell behind,
        # Redis restarting): the next ones would append to the wrong text. Bring the
        # answer as it is now, then what follows it.
        assert self.conversation is not None
        answer = await database_sync_to_async(message_selectors.message_get_streaming)(
            conversation=self.conversation
        )
        if answer is None or answer.pk != event["message_id"]:
            return  # it has just ended: its final frame, a whole message, is on its way
        log.info("frames of answer %s were missed; fetching a snapshot", answer.pk)
        self.order.await_snapshot(answer.pk, held=[event])
        await self._request_snapshot(answer)

    async def snapshot_timeout(self, event: dict[str, Any]) -> None:
        if self.order.awaiting != event["message_id"]:
            return
        # No generation answered: it died with its process. Show what was saved.
        log.warning("no snapshot for streaming answer %s", event["message_id"])
        self.order.end_wait()
        self._cancel_timer()
        await self._send_saved_state()

    def _cancel_timer(self) -> None:
        if self.snapshot_timer is not None:
            self.snapshot_timer.cancel()
            self.snapshot_timer = None


class UserConsumer(DirectDispatch, AsyncWebsocketConsumer):
    """A page that is about all of a user's conversations (the home page): it only listens
    to the user's group (live markers, titles, deletions)."""

    user_group: str = ""
    session_group: str = ""
    counted: int | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close()  # refused before any data is sent
            return
        if (
            await database_sync_to_async(account_selectors.suspension_current)(user_id=user.pk)
            is not None
        ):
            await self.close()
            return
        if not socket_admit(key=user.pk, cap=settings.CHATSITE_MAX_SOCKETS_PER_USER):
            await self.close(code=frames.CLOSE_TOO_MANY)  # no composer to explain it with
            return
        self.counted = user.pk
        self.user_group = frames.user_group(user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        self.session_group = frames.session_group(self.scope["session"].session_key)
        await self.channel_layer.group_add(self.session_group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.counted is not None:
            socket_release(key=self.counted)
            self.counted = None
        if self.user_group:
            await self.channel_layer.group_discard(self.user_group, self.channel_name)
            await self.channel_layer.group_discard(self.session_group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return  # this socket only listens

    async def chat_frame(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])

    async def session_end(self, event: dict[str, Any]) -> None:
        await self.close(code=event.get("code", frames.CLOSE_SUSPENDED))
