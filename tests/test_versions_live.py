"""Versions over the websocket: every tab follows a switch; what goes upstream is the path."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from conversations import message_selectors
from conversations.models import Message
from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.test_consumers import conversation_for, final_frame

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]


async def _path(conversation: Any) -> list[str]:
    messages = await sync_to_async(message_selectors.message_list)(conversation=conversation)
    return [m.message.content for m in messages]


async def test_regenerate_edit_and_switch_reach_every_tab(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["first answer"]), Stream(["second answer"]), Stream(["edited answer"]))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, tab = await open_socket(conversation, user)
    _, other_tab = await open_socket(conversation, user)
    await tab.send_json({"action": "send", "message": "question"})
    await tab.receive_until(final_frame)
    first = await Message.objects.aget(role="assistant")

    await tab.send_json({"action": "retry", "message_id": str(first.pk)})
    redraw = await other_tab.receive_until(lambda f: 'id="messages"' in f)
    assert "first answer" not in redraw  # the new version replaces it on the path
    final = await other_tab.receive_until(lambda f: final_frame(f) and "second answer" in f)
    assert ">2/2<" in final
    # Both answers were written for the same single question.
    assert [r.body["messages"] for r in fake.completions()] == [
        [{"role": "user", "content": "question"}]
    ] * 2

    await other_tab.send_json({"action": "version", "message_id": str(first.pk)})
    switched = await tab.receive_until(lambda f: 'id="messages"' in f and ">1/2<" in f)
    assert "first answer" in switched
    assert "second answer" not in switched
    assert await _path(conversation) == ["question", "first answer"]

    question = await Message.objects.aget(role="user")
    await tab.send_json(
        {"action": "edit", "message_id": str(question.pk), "message": "better question"}
    )
    await other_tab.receive_until(lambda f: final_frame(f) and "edited answer" in f)
    assert fake.completions()[-1].body["messages"] == [
        {"role": "user", "content": "better question"}
    ]
    assert await _path(conversation) == ["better question", "edited answer"]
    await tab.close()
    await other_tab.close()


async def test_switching_while_an_answer_streams_is_refused_clearly(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["one"]), Stream(["partial ", "more"], hang_after=1))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, tab = await open_socket(conversation, user)
    await tab.send_json({"action": "send", "message": "q"})
    await tab.receive_until(final_frame)
    first = await Message.objects.aget(role="assistant")
    await tab.send_json({"action": "retry", "message_id": str(first.pk)})
    await tab.receive_until(lambda f: "partial" in f)
    for frame in (
        {"action": "version", "message_id": str(first.pk)},
        {"action": "retry", "message_id": str(first.pk)},
        {"action": "edit", "message_id": str(first.parent_id), "message": "x"},
    ):
        await tab.send_json(frame)
        error = await tab.receive_until(lambda f: "feedback error" in f)
        assert "still being written" in error
    assert await Message.objects.acount() == 3
    await tab.send_json({"action": "stop"})
    await tab.receive_until(final_frame)
    await tab.close()
