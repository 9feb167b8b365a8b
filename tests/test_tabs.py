"""Sockets come and go; answers do not. Several tabs, rejoining, limits, sessions."""

from __future__ import annotations

import asyncio
import html
import re
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session

from conversations.models import Message
from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.frames import is_growth, norm, text_of, view_of
from tests.test_consumers import answer, conversation_for, final_frame, messages_of

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]

SLOW = [f"s{i} " for i in range(150)]


async def wait_final(conversation: Any, timeout: float = 10.0) -> Message:
    for _ in range(int(timeout / 0.02)):
        saved = await answer(conversation)
        if saved.status != "streaming":
            return saved
        await asyncio.sleep(0.02)
    raise AssertionError("the answer never ended")


async def test_the_answer_outlives_its_socket(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(SLOW, interval=0.005))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "go on without me"})
    await socket.receive_until(is_growth)
    await socket.close()  # the tab is closed mid-answer
    saved = await wait_final(conversation)
    assert (saved.status, saved.content) == ("complete", "".join(SLOW))


async def test_a_page_already_showing_the_last_state_is_not_sent_it_again(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["done"]))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "q"})
    await socket.receive_until(final_frame)
    await socket.close()
    saved = await wait_final(conversation)
    # A page rendered with that very state: re-sending it would reset (say) a Copy button.
    _, current = await open_socket(conversation, user, query=f"?seen={saved.pk}-complete")
    assert "<article" not in await current.receive()
    await current.close()
    # A page from before the answer ended gets the final answer.
    _, stale = await open_socket(conversation, user, query=f"?seen={saved.pk}-streaming")
    assert "done" in await stale.receive()
    await stale.close()


async def test_a_tab_joining_mid_answer_sees_no_duplicated_or_missing_text(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_FRAME_INTERVAL = 0.01
    fake.enqueue(Stream(SLOW, interval=0.01))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, first = await open_socket(conversation, user)
    await first.send_json({"action": "send", "message": "long"})
    for _ in range(5):
        await first.receive_until(is_growth)

    _, late = await open_socket(conversation, user)  # a reload, or a second tab
    final = await late.receive_until(final_frame)
    saved = await answer(conversation)
    before_final = view_of(late.frames[:-1], saved.pk)
    assert before_final  # it saw the text so far, then live text
    assert norm(saved.content).startswith(before_final)
    assert text_of(final, saved.pk) == norm(saved.content) == norm("".join(SLOW))
    # Everything the late tab saw streamed in was in order, once.
    assert len(before_final) > len(norm("".join(SLOW[:5])))
    await first.close()
    await late.close()


async def test_every_tab_sees_the_stream_and_any_tab_can_stop_it(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(SLOW * 4, interval=0.02))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, tab_a = await open_socket(conversation, user)
    _, tab_b = await open_socket(conversation, user)
    await tab_a.send_json({"action": "send", "message": "both of you watch"})
    # Text from the upstream, not only the answer's announcement: the stream is open.
    await tab_a.receive_until(lambda f: is_growth(f) and "s0" in f)
    await tab_b.receive_until(lambda f: is_growth(f) and "s0" in f)

    await tab_b.send_json({"action": "send", "message": "me too"})
    refusal = await tab_b.receive_until(lambda f: "feedback error" in f)
    assert "still being written" in refusal

    await tab_b.send_json({"action": "stop"})
    final_a = await tab_a.receive_until(final_frame)
    final_b = await tab_b.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.status == "stopped"
    assert text_of(final_a, saved.pk) == text_of(final_b, saved.pk) == norm(saved.content)
    assert await fake.completions()[0].await_closed(1.0)
    assert [m.content for m in await messages_of(conversation) if m.role == "user"] == [
        "both of you watch"
    ]
    await tab_a.close()
    await tab_b.close()


async def test_a_double_submit_or_a_resend_creates_no_duplicate(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["once"], interval=0.01))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    frame = {"action": "send", "message": "only once", "client_key": "key-123"}
    await socket.send_json(frame)
    await socket.send_json(frame)  # a double click
    await socket.receive_until(final_frame)
    _, reconnected = await open_socket(conversation, user)
    await reconnected.send_json(frame)  # htmx replays its queue after a reconnect
    ack = await reconnected.receive_until(lambda f: "data-accepted" in f)
    assert 'data-accepted="key-123"' in ack
    messages = await messages_of(conversation)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "only once"),
        ("assistant", "once"),
    ]
    assert len(fake.completions()) == 1
    assert sum('data-accepted="key-123"' in f for f in socket.frames) == 2
    await socket.close()
    await reconnected.close()


async def test_messages_per_minute_limit_says_when_to_try_again(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_MESSAGES_PER_MINUTE = 2
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    for text in ("one", "two"):
        await socket.send_json({"action": "send", "message": text})
        await socket.receive_until(final_frame)
    await socket.send_json({"action": "send", "message": "three"})
    error = await socket.receive_until(lambda f: "feedback error" in f)
    assert re.search(r"2 messages a minute\. Try again in \d+ s\.", html.unescape(error))
    assert [m.content for m in await messages_of(conversation) if m.role == "user"] == [
        "one",
        "two",
    ]
    assert len(fake.completions()) == 2
    await socket.close()


async def test_concurrent_answers_limit_spans_conversations(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_MAX_CONCURRENT_ANSWERS = 1
    fake.enqueue(Stream(SLOW, interval=0.02))
    user = await sync_to_async(make_user)()
    first, second = await conversation_for(user), await conversation_for(user)
    _, a = await open_socket(first, user)
    _, b = await open_socket(second, user)
    await a.send_json({"action": "send", "message": "busy"})
    await a.receive_until(is_growth)
    await b.send_json({"action": "send", "message": "also"})
    error = await b.receive_until(lambda f: "feedback error" in f)
    assert "1 answer being written" in error
    assert await messages_of(second) == []
    await a.send_json({"action": "stop"})
    await a.receive_until(final_frame)
    await a.close()
    await b.close()


@pytest.mark.parametrize("how", ["deactivated", "signed out elsewhere"])
async def test_an_open_socket_starts_nothing_once_the_sign_in_is_gone(
    fake: FakeUpstream, how: str
) -> None:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.receive_until(lambda f: "composer-controls" in f)
    if how == "deactivated":
        user.is_active = False
        await user.asave()
    else:
        await Session.objects.all().adelete()  # what logging out in another tab does
    await socket.send_json({"action": "send", "message": "hello?"})
    error = await socket.receive_until(lambda f: "feedback error" in f)
    assert "Sign in again" in error
    assert await socket.communicator.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": 4401,
    }
    assert await messages_of(conversation) == []
    assert fake.completions() == []


async def test_twenty_answers_at_once_on_sqlite_all_end_without_locking_errors(
    fake: FakeUpstream, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHATSITE_CHECKPOINT_INTERVAL = 0.05  # many writers, often
    settings.CHATSITE_MAX_CONCURRENT_ANSWERS = 0
    fake.default = Stream([f"c{i} " for i in range(60)], interval=0.01)
    users = [await sync_to_async(make_user)(f"user{i}") for i in range(20)]
    conversations = [await conversation_for(user) for user in users]
    sockets = [(await open_socket(c, u))[1] for c, u in zip(conversations, users, strict=True)]
    await asyncio.gather(*(s.send_json({"action": "send", "message": "go"}) for s in sockets))
    await asyncio.gather(*(s.receive_until(final_frame, timeout=30) for s in sockets))
    for conversation in conversations:
        saved = await answer(conversation)
        assert (saved.status, saved.content) == ("complete", "".join(f"c{i} " for i in range(60)))
    assert "database is locked" not in caplog.text
    for socket in sockets:
        await socket.close()


async def test_the_checkpoints_of_all_running_answers_are_saved_in_one_trip(
    fake: FakeUpstream, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conversations import services
    from conversations.streaming import checkpoints

    settings.CHATSITE_CHECKPOINT_INTERVAL = 3600  # only the explicit writes below
    trips: list[int] = []
    batch = services.message_checkpoints

    def counted(*, rows: Any) -> int:
        rows = list(rows)
        trips.append(len(rows))
        return batch(rows=rows)

    monkeypatch.setattr(services, "message_checkpoints", counted)
    conversations = []
    for i in range(3):
        fake.enqueue(Stream([f"a{i}-{n} " for n in range(400)], interval=0.01))
        user = await sync_to_async(make_user)(f"writer{i}")
        conversation = await conversation_for(user)
        _, socket = await open_socket(conversation, user)
        await socket.send_json({"action": "send", "message": f"answer {i}"})
        await socket.receive_until(lambda f, i=i: f"a{i}-3" in f)
        conversations.append(conversation)

    assert await checkpoints.checkpoints_write() == 3
    assert trips == [3]  # three answers, one trip to the database thread
    for i, conversation in enumerate(conversations):
        saved = await answer(conversation)
        assert saved.status == "streaming"
        assert saved.content.startswith(f"a{i}-0 a{i}-1 a{i}-2 a{i}-3 ")


async def test_the_final_frame_shows_the_answer_as_a_whole_rendering_would(
    fake: FakeUpstream, settings: Any
) -> None:
    # The final frame reuses the blocks its frames rendered: it must be the same HTML.
    from conversations.rendering import render
    from tests.frames import parse

    settings.CHATSITE_FRAME_INTERVAL = 0.01
    text = (
        "# Title\nIntro line:\n- one **bold**\n- two\n\n```python\nx = 1\n```\n"
        "After the code.\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\nThe *end*."
    )
    fake.enqueue(Stream([text[i : i + 5] for i in range(0, len(text), 5)], interval=0.005))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "shapes"})
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.content == text
    blocks = parse(final).find(f"message-{saved.pk}-blocks")
    assert blocks is not None
    whole = parse(f'<div id="w">{render(text)}</div>').find("w")
    assert whole is not None
    assert norm(blocks.text()) == norm(whole.text())
    assert re.sub(r"\s+", "", final.split(f'id="message-{saved.pk}-blocks">', 1)[1]).startswith(
        re.sub(r"\s+", "", render(text))
    )
    await socket.close()


async def test_checkpoints_get_rarer_under_load_up_to_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conversations.streaming import checkpoints, generation

    # The defaults: each checkpoint re-indexes the answer so far for search, so from 20
    # answers in a process they get rarer (a crash then loses up to that much text).
    intervals = {}
    # Stand-ins for running answers: only their number counts here.
    for n in (1, 20, 50, 100, 1000):
        stand_ins = {-i: SimpleNamespace(task=None) for i in range(1, n + 1)}
        monkeypatch.setattr(checkpoints, "RUNNING", stand_ins)
        intervals[n] = checkpoints.checkpoint_interval()
    assert intervals == {1: 1.0, 20: 1.0, 50: 2.5, 100: 4.0, 1000: 4.0}
    assert generation.RUNNING is not stand_ins  # the real registry was never touched


async def test_an_answer_is_saved_even_if_its_last_words_cannot_be_sent(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from conversations.streaming import generation

    fake.enqueue(Stream(["every ", "single ", "word"], interval=0.05))
    real = generation.Generation._publish_delta

    async def failing_at_the_end(self: Any) -> None:
        if self._closing:
            raise RuntimeError("the channel layer is gone")
        await real(self)

    monkeypatch.setattr(generation.Generation, "_publish_delta", failing_at_the_end)
    # The first words go out at once; the next wait for a frame that is not due yet.
    monkeypatch.setattr(generation, "frame_interval", lambda: 5.0)
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "say it"})
    await socket.receive_until(lambda frame: "every" in frame)
    await asyncio.sleep(0.3)  # "single" is read, and waits for its frame
    await socket.send_json({"action": "stop"})
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert (saved.status, saved.content) == ("stopped", "every single ")
    assert "every single" in norm(text_of(final, saved.pk))
    assert "could not be sent" in caplog.text
    await socket.close()
