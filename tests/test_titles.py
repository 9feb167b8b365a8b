"""Titles: the model names a conversation after its first answer, never delaying it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from conversations import services
from conversations.models import Conversation
from tests.conftest import make_user, open_socket
from tests.fake_openai import Error, FakeUpstream, Json, Stream
from tests.test_consumers import conversation_for, final_frame

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]


def completion(text: str) -> Json:
    return Json(
        {
            "id": "chatcmpl-title",
            "object": "chat.completion",
            "created": 0,
            "model": "title-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }
    )


async def refreshed(conversation: Conversation) -> Conversation:
    return await Conversation.objects.aget(pk=conversation.pk)


async def test_after_the_first_answer_the_model_titles_the_conversation_live(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_TITLE_MODEL = "title-model"
    fake.enqueue(Stream(["Bread ", "needs ", "time."]))
    fake.enqueue_plain(completion('"**Slow Bread Baking**"\n'))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "how do I make bread rise slowly?"})
    await socket.receive_until(final_frame)
    title_frame = await socket.receive_until(lambda f: 'id="conversation-title"' in f)
    # The answer was final before the title was even asked for.
    assert socket.frames.index(title_frame) > next(
        i for i, f in enumerate(socket.frames) if final_frame(f)
    )
    assert ">Slow Bread Baking</h1>" in title_frame
    # Styled as the page's own heading is.
    assert '<h1 id="conversation-title" class="chat-title"' in title_frame
    nav = await socket.receive_until(lambda f: f'id="nav-title-{conversation.public_id}"' in f)
    assert ">Slow Bread Baking</span>" in nav
    saved = await refreshed(conversation)
    assert (saved.title, saved.title_source) == ("Slow Bread Baking", "model")
    request = fake.plain_completions()[-1]
    assert request.body["model"] == "title-model"
    assert not request.body.get("stream")
    assert "how do I make bread rise slowly?" in request.body["messages"][-1]["content"]
    await socket.close()


async def test_when_the_title_request_fails_the_first_words_stay(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["Answer."]))
    fake.enqueue_plain(Error(500))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "What is the tallest mountain?"})
    await socket.receive_until(final_frame)
    for _ in range(100):
        if fake.plain_completions():
            break
        await asyncio.sleep(0.02)
    assert fake.plain_completions()
    await asyncio.sleep(0.2)
    saved = await refreshed(conversation)
    assert (saved.title, saved.title_source) == ("What is the tallest mountain?", "words")
    await socket.close()


async def test_only_the_first_answer_names_the_conversation(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["One."]), Stream(["Two."]))
    fake.enqueue_plain(completion("First Title"))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "first"})
    await socket.receive_until(lambda f: 'id="conversation-title"' in f)
    await socket.send_json({"action": "send", "message": "second"})
    await socket.receive_until(final_frame)
    await asyncio.sleep(0.2)
    assert len(fake.plain_completions()) == 1  # no second title request
    assert (await refreshed(conversation)).title == "First Title"
    await socket.close()


def test_a_title_chosen_by_the_user_is_never_replaced() -> None:
    conversation = services.conversation_create(owner=make_user(), model="m", title="Mine")
    Conversation.objects.filter(pk=conversation.pk).update(title_source="user")
    assert not services.conversation_set_generated_title(
        conversation_id=conversation.pk, title="Model's"
    )
    conversation.refresh_from_db()
    assert conversation.title == "Mine"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ('"Quoted Title"', "Quoted Title"),
        ("Title: **Bold**\nmore lines", "Bold"),
        ("# Heading title", "Heading title"),
        ("word " * 30, ("word " * 12).strip() + "…"),
        ("<script>x</script>", "<script>x</script>"),  # plain text; escaped wherever shown
    ],
)
def test_titles_are_one_short_line_of_plain_text(raw: str, clean: str) -> None:
    assert services.title_clean(text=raw) == clean


async def test_a_title_waits_while_the_process_is_busy_with_answers(
    fake: FakeUpstream, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conversations.streaming import generation

    settings.CHATSITE_TITLE_BUSY_ANSWERS = 3
    fake.enqueue(Stream(["Tea ", "leaves."]))
    fake.enqueue_plain(completion("Tea Leaves"))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "tea?"})
    await socket.receive_until(final_frame)
    # Three other answers stream in this process (stand-ins: only their number counts).
    busy = {-i: SimpleNamespace(task=None) for i in (1, 2, 3)}
    for key, value in busy.items():
        monkeypatch.setitem(generation.RUNNING, key, value)
    await asyncio.sleep(1.5)
    assert fake.plain_completions() == []  # not while the others are written
    for key in busy:
        generation.RUNNING.pop(key)
    await socket.receive_until(lambda f: 'id="conversation-title"' in f, timeout=5)
    assert (await refreshed(conversation)).title == "Tea Leaves"
    await socket.close()
