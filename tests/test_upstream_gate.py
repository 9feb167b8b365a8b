"""A concurrency limit per upstream (local model servers): answers take turns in order and
are told their place; titles and the model list never run beside an answer."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from conversations import catalog, gate
from conversations.gate import Busy, Gate
from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.test_consumers import answer, conversation_for, final_frame


def recorder() -> tuple[list[int], Any]:
    heard: list[int] = []

    async def on_wait(ahead: int) -> None:
        heard.append(ahead)

    return heard, on_wait


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_answers_take_their_turn_in_order_and_hear_their_place() -> None:
    turns = Gate(limit=1)
    order: list[str] = []
    await turns.acquire(recorder()[1])  # the first answer runs
    heard_b, wait_b = recorder()
    heard_c, wait_c = recorder()

    async def answer_(name: str, on_wait: Any) -> None:
        await turns.acquire(on_wait)
        order.append(name)

    b = asyncio.create_task(answer_("b", wait_b))
    await settle()
    c = asyncio.create_task(answer_("c", wait_c))
    await settle()
    assert (heard_b, heard_c, order) == ([1], [2], [])

    turns.release()  # the first answer ends: b's turn, c is next
    await settle()
    assert order == ["b"]
    assert heard_c == [2, 1]
    assert turns.running == 1

    turns.release()
    await asyncio.gather(b, c)
    assert order == ["b", "c"]
    turns.release()
    assert (turns.running, turns.waiting) == (0, 0)


async def test_an_answer_stopped_while_waiting_leaves_the_queue_and_the_next_moves_up() -> None:
    turns = Gate(limit=1)
    await turns.acquire(recorder()[1])
    _, wait_b = recorder()
    heard_c, wait_c = recorder()
    b = asyncio.create_task(turns.acquire(wait_b))
    await settle()
    c = asyncio.create_task(turns.acquire(wait_c))
    await settle()
    b.cancel()  # Stop pressed on the waiting answer
    await asyncio.gather(b, return_exceptions=True)
    await settle()
    assert heard_c == [2, 1]
    assert turns.waiting == 1
    turns.release()
    await c
    assert (turns.running, turns.waiting) == (1, 0)


async def test_background_requests_wait_for_idle_and_an_answer_cuts_them_short() -> None:
    turns = Gate(limit=1)
    started: list[int] = []
    cut: list[int] = []

    async def title() -> str:
        started.append(1)
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            cut.append(1)
            raise
        return "A title"

    request = asyncio.create_task(turns.background(title, wait=True))
    await settle()
    assert started == [1]

    await turns.acquire(recorder()[1])  # an answer arrives: the title gives way at once
    await settle()
    assert cut == [1]
    with pytest.raises(Busy):  # a request that will not wait (the model list) is refused
        await turns.background(title, wait=False)
    assert started == [1]  # …without being sent

    turns.release()  # idle again: the title asks again, and this time finishes
    assert await request == "A title"
    assert started == [1, 1]


async def test_unlimited_upstreams_have_no_gate(fake: FakeUpstream, settings: Any) -> None:
    settings.CHATSITE_UPSTREAM_CONCURRENCY = 0
    from conversations import upstream

    assert gate.gate_for(upstream.configured()) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_stray_generations")
async def test_with_a_limit_of_one_a_second_answer_waits_its_turn_and_the_title_waits_too(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_UPSTREAM_CONCURRENCY = 1
    fake.enqueue(
        Stream([f"first{i} " for i in range(12)], interval=0.05),
        Stream(["second ", "answer."]),
    )
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    first = await conversation_for(alice)
    second = await conversation_for(bob)
    _, socket_a = await open_socket(first, alice)
    _, socket_b = await open_socket(second, bob)

    await socket_a.send_json({"action": "send", "message": "a long answer, please"})
    await fake.await_request(1)
    await socket_b.send_json({"action": "send", "message": "and one for me"})
    waiting = await socket_b.receive_until(lambda f: "Waiting for the model" in f)
    assert "Waiting for the model: 1 answer ahead" in waiting
    # While it waits, nothing of its answer has been asked for.
    assert len(fake.completions()) == 1

    done_a = await socket_a.receive_until(final_frame)
    assert "first11" in done_a
    done_b = await socket_b.receive_until(final_frame)
    assert "second answer." in done_b
    b_answer = await answer(second)
    assert b_answer.status == "complete"
    # Once its turn came the waiting line went away (an empty status line).
    frames_b = socket_b.frames
    cleared = [
        i
        for i, f in enumerate(frames_b)
        if re.search(rf'id="message-{b_answer.pk}-note"[^>]*></p>', f)
    ]
    assert cleared, frames_b

    # The first conversation's title is asked for only after both answers: never beside one.
    await socket_a.receive_until(lambda f: 'id="conversation-title"' in f)
    assert fake.peak_active == 1
    first_request, second_request = fake.completions()
    assert first_request.finished_at is not None
    assert second_request.received_at >= first_request.finished_at
    titles = fake.plain_completions()
    assert titles
    assert all(t.received_at >= (second_request.finished_at or 0) for t in titles)
    await socket_a.close()
    await socket_b.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_stray_generations")
async def test_the_model_list_is_not_asked_for_while_a_limited_upstream_writes(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_UPSTREAM_CONCURRENCY = 1
    catalog.cache_clear()
    fake.models = ["fake-model", "local-llama"]
    fake.enqueue(Stream([f"w{i} " for i in range(20)], interval=0.05))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    client = AsyncClient()
    await client.aforce_login(user)

    await socket.send_json({"action": "send", "message": "write for a while"})
    await fake.await_request(1)
    page = await client.get(f"/conversations/{conversation.public_id}/")
    assert page.status_code == 200
    # The page came without asking the model server (which would cut the answer short).
    assert not [r for r in fake.requests if r.path.endswith("/models")]
    assert "could not" not in page.content.decode().lower()

    await socket.receive_until(final_frame)
    assert (await answer(conversation)).status == "complete"
    await fake_idle(fake)
    page = await client.get(f"/conversations/{conversation.public_id}/")
    assert [r for r in fake.requests if r.path.endswith("/models")]
    assert "local-llama" in page.content.decode()
    await socket.close()


async def fake_idle(fake: FakeUpstream, timeout: float = 5.0) -> None:
    """Wait until the fake server answers nothing (the title request, here)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while fake.active or any(r.finished_at is None for r in fake.requests):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
