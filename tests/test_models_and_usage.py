"""The model picker, instructions (system prompts) and token usage, against the fake
upstream over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from conversations import catalog, usage_selectors
from conversations.models import Conversation, Message
from conversations.streaming import generation
from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.test_consumers import final_frame

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]


@pytest.fixture(autouse=True)
def _fresh_catalog() -> Any:
    catalog.cache_clear()
    yield
    catalog.cache_clear()


async def _signed_in(username: str = "alice") -> tuple[Any, AsyncClient]:
    user = await sync_to_async(make_user)(username)
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    return user, client


def _model_listings(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.path == "/v1/models")


async def test_the_picker_offers_what_the_upstream_lists_and_asks_once(
    fake: FakeUpstream,
) -> None:
    fake.models = ["fake-model", "fake-model-mini", "zeta"]
    _, client = await _signed_in()
    page = (await client.get("/")).content.decode()
    assert '<option value="fake-model-mini"' in page
    assert '<option value="zeta"' in page
    await client.get("/")
    assert _model_listings(fake) == 1  # cached for a few minutes


async def test_an_operator_list_restricts_the_choice(fake: FakeUpstream, settings: Any) -> None:
    settings.CHATSITE_MODELS = ["fake-model", "zeta", "not-served"]
    fake.models = ["fake-model", "fake-model-mini", "zeta"]
    _, client = await _signed_in()
    page = (await client.get("/")).content.decode()
    assert '<option value="zeta"' in page
    assert "fake-model-mini" not in page
    assert "not-served" not in page


async def test_when_listing_fails_the_default_model_stands_in(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens there
    _, client = await _signed_in()
    page = (await client.get("/")).content.decode()
    assert '<option value="fake-model"' in page
    assert "fake-model-mini" not in page


HTMX = {"HX-Request": "true"}  # as htmx sends it


async def test_the_chosen_model_writes_the_next_answer_and_is_shown_on_it(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["hi"]), Stream(["hello"]))
    user, client = await _signed_in()
    conversation = await Conversation.objects.acreate(owner=user, model="fake-model")
    url = f"/conversations/{conversation.public_id}/configure/"
    refused = await client.post(url, {"model": "gpt-secret-internal"}, headers=HTMX)
    assert refused.status_code == 422
    assert "not available" in refused.content.decode()
    await conversation.arefresh_from_db()
    assert conversation.model == "fake-model"

    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "one"})
    await socket.receive_until(final_frame)
    assert (await client.post(url, {"model": "fake-model-mini"}, headers=HTMX)).status_code == 200
    await socket.send_json({"action": "send", "message": "two"})
    final = await socket.receive_until(lambda f: final_frame(f) and "hello" in f)
    assert "fake-model-mini" in final
    assert [r.body["model"] for r in fake.completions()] == ["fake-model", "fake-model-mini"]
    answers = [m async for m in Message.objects.filter(role="assistant").order_by("id")]
    assert [a.model for a in answers] == ["fake-model", "fake-model-mini"]
    await socket.close()


async def test_instructions_go_first_and_user_defaults_apply_to_new_conversations(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["bonjour"]))
    user, client = await _signed_in()
    saved = await client.post(
        "/settings/",
        {"default_model": "fake-model-mini", "default_system_prompt": "Answer in French."},
    )
    assert saved.status_code == 200
    bad = await client.post("/settings/", {"default_model": "nope", "default_system_prompt": ""})
    assert bad.status_code == 422
    created = await client.post("/conversations/new/", {"message": "hello"})
    conversation = await Conversation.objects.aget(owner=user)
    assert created.status_code == 302
    assert (conversation.model, conversation.system_prompt) == (
        "fake-model-mini",
        "Answer in French.",
    )
    for _ in range(200):
        if await Message.objects.filter(role="assistant", status="complete").aexists():
            break
        await __import__("asyncio").sleep(0.02)
    body = fake.completions()[-1].body
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert body["model"] == "fake-model-mini"
    # The conversation's own instructions can be changed, and too long ones are refused.
    url = f"/conversations/{conversation.public_id}/configure/"
    assert (await client.post(url, {"system_prompt": "x" * 9000}, headers=HTMX)).status_code == 422
    assert (await client.post(url, {"system_prompt": "Be brief."}, headers=HTMX)).status_code == 200
    await conversation.arefresh_from_db()
    assert conversation.system_prompt == "Be brief."


async def test_usage_per_answer_per_conversation_and_per_month(fake: FakeUpstream) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    fake.enqueue(Stream(["a"], usage=usage), Stream(["b"], usage=usage))
    user, client = await _signed_in()
    conversation = await Conversation.objects.acreate(owner=user, model="fake-model")
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "one"})
    first = await socket.receive_until(final_frame)
    assert "11 in · 7 out" in first  # on the answer
    assert "11 in · 7 out in total" in first  # the conversation's total, live
    await socket.send_json({"action": "send", "message": "two"})
    second = await socket.receive_until(lambda f: final_frame(f) and ">b<" in f.replace("\n", ""))
    assert "22 in · 14 out in total" in second
    await socket.close()
    page = (await client.get(f"/conversations/{conversation.public_id}/")).content.decode()
    assert "22 in · 14 out in total" in page
    settings_page = (await client.get("/settings/")).content.decode()
    assert '<tr data-model="fake-model"><td>fake-model</td><td>2</td><td>22</td><td>14</td>' in (
        settings_page
    )
    # Someone else's usage is not counted.
    other = await sync_to_async(make_user)("bob")
    assert await sync_to_async(usage_selectors.usage_this_month)(user=other) == []


async def test_another_users_conversation_cannot_be_configured(fake: FakeUpstream) -> None:
    owner = await sync_to_async(make_user)("owner")
    conversation = await Conversation.objects.acreate(owner=owner, model="fake-model")
    _, client = await _signed_in("mallory")
    url = f"/conversations/{conversation.public_id}/configure/"
    response = await client.post(url, {"model": "fake-model-mini", "system_prompt": "pwned"})
    assert response.status_code == 404
    await conversation.arefresh_from_db()
    assert (conversation.model, conversation.system_prompt) == ("fake-model", "")


async def test_deleting_an_account_hangs_up_its_streaming_answers_first(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream([f"p{i} " for i in range(400)], interval=0.02))
    user = await sync_to_async(make_user)("leaving")
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    conversation = await Conversation.objects.acreate(owner=user, model="fake-model")
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "long story"})
    await socket.receive_until(lambda f: "p1" in f)
    log = fake.completions()[-1]
    (running,) = generation.RUNNING.values()
    response = await client.post(
        "/settings/delete-account/", {"password": "a-long-enough-password"}
    )
    assert response.status_code == 302
    assert await log.await_closed(2.0)
    assert not log.completed
    assert not await Message.objects.filter(conversation__owner_id=user.pk).aexists()
    # The answer ends cleanly although its owner is gone (its tokens have no one to count).
    assert running.task is not None
    await asyncio.wait([running.task], timeout=5)
    assert running.task.done()
    assert running.task.exception() is None
    await socket.close()
