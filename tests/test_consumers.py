"""The conversation websocket through the real ASGI application and a real HTTP upstream."""

from __future__ import annotations

import asyncio
import html
import re
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from conversations import fragments, message_selectors, services
from conversations.message_selectors import MessageView
from conversations.models import Conversation, Message
from tests.conftest import API_KEY, make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.frames import is_growth, norm, text_of, view_of

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]


def final_frame(frame: str) -> bool:
    return bool(re.search(r'data-role="assistant" data-status="(?!streaming)', frame))


def status_of(frame: str, message_id: int) -> str:
    match = re.search(rf'id="message-{message_id}"[^>]*data-status="(\w+)"', frame)
    assert match, frame
    return match.group(1)


@sync_to_async
def conversation_for(user: Any) -> Conversation:
    return services.conversation_create(owner=user, model="fake-model")


@sync_to_async
def answer(conversation: Conversation) -> Message:
    return conversation.messages.filter(role="assistant").latest("id")


@sync_to_async
def messages_of(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("id"))


async def test_answer_streams_in_order_and_is_saved_with_usage(fake: FakeUpstream) -> None:
    pieces = [f"word{i} " for i in range(40)]
    fake.enqueue(
        Stream(
            pieces,
            interval=0.005,
            usage={"prompt_tokens": 11, "completion_tokens": 40, "total_tokens": 51},
        )
    )
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    ok, socket = await open_socket(conversation, user)
    assert ok

    await socket.send_json(
        {
            "action": "send",
            "message": "Count for me",
            "client_key": "k1",
            "HEADERS": {"HX-Request": "true"},
        }
    )
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)

    # The deltas arrive in order (the last of them may travel in the final frame, which
    # carries the whole message); the final frame and the database have all the text.
    growth = [f for f in socket.frames if is_growth(f, saved.pk)]
    assert len(growth) > 1  # it grew in several frames
    for n in range(1, len(growth) + 1):
        assert norm("".join(pieces)).startswith(view_of(growth[:n], saved.pk))
    assert text_of(final, saved.pk) == norm("".join(pieces))
    assert saved.content == "".join(pieces)
    assert saved.status == "complete"
    assert saved.finish_reason == "stop"
    assert (saved.prompt_tokens, saved.completion_tokens, saved.total_tokens) == (11, 40, 51)
    assert saved.upstream_request_id.startswith("req_fake_")
    assert saved.first_token_at is not None
    assert saved.completed_at is not None
    # The user's words and the history went upstream, with the key as a bearer token.
    request = fake.completions()[-1]
    assert request.body["messages"] == [{"role": "user", "content": "Count for me"}]
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    # The sender learned that its message was accepted (so the page can clear the composer).
    assert any('data-accepted="k1"' in f for f in socket.frames)
    assert all(API_KEY not in f for f in socket.frames)
    await socket.close()


async def test_the_question_goes_upstream_before_the_page_is_told_and_text_waits_for_it(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    fake.enqueue(Stream(["a first answer"]))
    await socket.send_json({"action": "send", "message": "Hello"})
    await socket.receive_until(final_frame)  # warm: screening rules, the upstream's client

    # The model answers at once; telling the page about the new messages is made slow.
    fake.enqueue(Stream(["swift ", "reply"], interval=0.5))
    seen_before_announcing: list[bool] = []
    append_html = fragments.message_append_html

    def slow_append_html(message: MessageView) -> str:
        if not seen_before_announcing:
            try:
                fake.wait_for_request(2, timeout=5)
                seen_before_announcing.append(True)
            except TimeoutError:
                seen_before_announcing.append(False)
            time.sleep(0.2)  # the model's text is in the app by now, waiting
        return append_html(message)

    monkeypatch.setattr(fragments, "message_append_html", slow_append_html)
    socket.frames.clear()
    await socket.send_json({"action": "send", "message": "Be quick"})
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)

    # The request did not wait for the page's news (the first token waits for the model
    # only), and yet no text reached the page before the message it belongs to.
    assert seen_before_announcing == [True]
    announced = next(i for i, f in enumerate(socket.frames) if f'id="message-{saved.pk}"' in f)
    first_text = next(i for i, f in enumerate(socket.frames) if "swift" in f)
    assert is_growth(socket.frames[first_text], saved.pk)
    assert first_text > announced
    assert text_of(final, saved.pk) == "swift reply"
    await socket.close()


async def test_fast_model_frames_are_coalesced(fake: FakeUpstream, settings: Any) -> None:
    settings.CHATSITE_FRAME_INTERVAL = 0.05
    pieces = [f"t{i} " for i in range(300)]
    fake.enqueue(Stream(pieces, interval=0.001))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "go"})
    await socket.receive_until(final_frame)
    growth = [f for f in socket.frames if is_growth(f)]
    answer_id = int(re.findall(r"message-(\d+)-tail", growth[0])[0])
    assert norm("".join(pieces)).startswith(view_of(growth, answer_id))
    # ~0.3 s of upstream at one frame per 50 ms: a handful of frames, not 300.
    assert 1 < len(growth) < 30
    await socket.close()


async def test_a_frame_lost_on_the_way_is_healed_before_the_answer_ends(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = [f"Paragraph {i}.\n\n" for i in range(60)]  # each frame seals blocks
    fake.enqueue(Stream(pieces, interval=0.02))
    # The layer loses one frame of the answer, as a reader that fell behind or a Redis
    # restart would.
    layer = get_channel_layer()
    assert layer is not None
    deliver = layer.group_send
    lost: list[dict[str, Any]] = []

    async def lossy(group: str, message: dict[str, Any]) -> None:
        if message.get("message_id") and message.get("seq") == 3 and not lost:
            lost.append(message)
            return
        await deliver(group, message)

    monkeypatch.setattr(layer, "group_send", lossy)
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "go"})
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert lost  # a frame really was lost
    # Before its final frame (a whole message) arrived, the page already showed the text
    # without a hole: the frames after the gap did not append to the wrong text.
    shown = view_of(socket.frames[:-1], saved.pk)
    assert norm(saved.content).startswith(shown)
    assert "Paragraph 50." in shown
    assert text_of(final, saved.pk) == norm(saved.content)
    await socket.close()


async def test_stop_hangs_up_upstream_and_keeps_partial_as_stopped(fake: FakeUpstream) -> None:
    pieces = [f"p{i} " for i in range(400)]
    fake.enqueue(Stream(pieces, interval=0.02))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "long story please"})
    await socket.receive_until(is_growth)
    await asyncio.sleep(0.2)
    log = fake.completions()[-1]

    stopped_at = time.monotonic()
    await socket.send_json({"action": "stop"})
    final = await socket.receive_until(final_frame)
    assert await log.await_closed(2.0)
    assert log.client_closed_at is not None
    assert log.client_closed_at - stopped_at < 0.1  # the upstream saw us hang up at once
    assert not log.completed

    saved = await answer(conversation)
    assert saved.status == "stopped"
    assert saved.content
    assert "".join(pieces).startswith(saved.content)
    assert len(saved.content) < len("".join(pieces))
    assert text_of(final, saved.pk) == norm(saved.content)
    assert status_of(final, saved.pk) == "stopped"
    assert "Stopped" in final
    assert 'id="send-button"' in final  # the composer is unlocked
    await socket.close()


async def test_stop_is_immediate_even_while_the_database_thread_is_slow(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.enqueue(Stream([f"p{i} " for i in range(400)], interval=0.02))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "long story please"})
    await socket.receive_until(lambda f: "p1 " in f)
    log = await fake.await_request()
    streaming_lookup = message_selectors.message_get_streaming

    def slow_lookup(**kwargs: Any) -> Message | None:
        time.sleep(2)  # as when a busy site's database thread has a queue
        return streaming_lookup(**kwargs)

    monkeypatch.setattr(message_selectors, "message_get_streaming", slow_lookup)
    stopped_at = time.monotonic()
    await socket.send_json({"action": "stop"})
    final = await socket.receive_until(final_frame)
    assert await log.await_closed(2.0)
    assert log.client_closed_at is not None
    # The answer runs in this process: Stop reached it without waiting for the database.
    assert log.client_closed_at - stopped_at < 1.0
    saved = await answer(conversation)
    assert saved.status == "stopped"
    assert saved.content
    assert status_of(final, saved.pk) == "stopped"
    await socket.close()


async def test_history_of_earlier_turns_goes_upstream(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["First answer."]), Stream(["Second answer."]))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "one"})
    await socket.receive_until(final_frame)
    socket.frames.clear()
    await socket.send_json({"action": "send", "message": "two"})
    await socket.receive_until(final_frame)
    assert fake.completions()[-1].body["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "two"},
    ]
    await socket.close()


async def test_chunks_without_content_are_handled(fake: FakeUpstream) -> None:
    # Role-only first chunk, the empty finish chunk and the usage chunk with no choices.
    fake.enqueue(Stream(["", "Hi", "", " there"], role_chunk=True))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "hello"})
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.content == "Hi there"
    assert saved.status == "complete"
    assert saved.completion_tokens is not None
    assert text_of(final, saved.pk) == "Hi there"
    await socket.close()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"action": "dance"}', "Unknown action"),
        ('{"action": "send", "message": "   \\n "}', "Type a message"),
        ('{"action": "send", "message": 42}', "must be text"),
        ('{"action": "stop"}', "no answer being written"),
    ],
)
async def test_bad_frames_get_a_clear_error_and_change_nothing(
    fake: FakeUpstream, frame: str, expected: str
) -> None:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.receive_until(lambda f: "composer-controls" in f)  # the catch-up frame
    await socket.send_raw(frame)
    error = await socket.receive()
    assert expected in html.unescape(error)
    assert 'class="feedback error"' in error
    assert await messages_of(conversation) == []
    assert fake.requests == []
    # The socket stays usable.
    await socket.send_json({"action": "send", "message": "still here?"})
    await socket.receive_until(final_frame)
    await socket.close()


async def test_oversized_message_is_refused(fake: FakeUpstream, settings: Any) -> None:
    settings.CHATSITE_MAX_MESSAGE_CHARS = 100
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "x" * 101})
    error = await socket.receive_until(lambda f: "feedback error" in f)
    assert "limit is 100" in error
    assert await messages_of(conversation) == []
    assert fake.requests == []
    await socket.close()


async def test_second_send_while_streaming_is_refused(fake: FakeUpstream) -> None:
    fake.enqueue(Stream([f"w{i} " for i in range(100)], interval=0.02))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "first"})
    await socket.receive_until(is_growth)
    await socket.send_json({"action": "send", "message": "second"})
    error = await socket.receive_until(lambda f: "feedback error" in f)
    assert "still being written" in error
    assert [m.content for m in await messages_of(conversation) if m.role == "user"] == ["first"]
    await socket.send_json({"action": "stop"})
    await socket.receive_until(final_frame)
    await socket.close()


async def test_anonymous_users_are_refused(fake: FakeUpstream) -> None:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    connected, _socket = await open_socket(conversation, None)
    assert not connected


async def test_other_users_are_refused(fake: FakeUpstream) -> None:
    owner = await sync_to_async(make_user)("owner")
    intruder = await sync_to_async(make_user)("intruder")
    conversation = await conversation_for(owner)
    connected, _ = await open_socket(conversation, intruder)
    assert not connected


async def test_foreign_origins_are_refused(fake: FakeUpstream) -> None:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    connected, _ = await open_socket(conversation, user, origin=b"https://evil.example")
    assert not connected


async def test_upstream_error_before_text_ends_as_error_with_a_readable_reason(
    fake: FakeUpstream,
) -> None:
    from tests.fake_openai import Error

    fake.enqueue(Error(401))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "hello"})
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.status == "error"
    assert "API key" in saved.error
    assert "API key" in html.unescape(final)
    users = [m for m in await messages_of(conversation) if m.role == "user"]
    assert [m.content for m in users] == ["hello"]  # the user's message is intact
    await socket.close()
