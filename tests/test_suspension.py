"""Suspending a user: open sockets close, running answers stop and are saved, sign-in is
refused with the reason, and the suspension lifts by itself when it ends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client
from django.utils import timezone

from accounts.models import Suspension
from conversations.models import Message
from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.test_consumers import conversation_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]
PASSWORD = "a-long-enough-password"


async def _superuser_client() -> AsyncClient:
    boss = await sync_to_async(make_user)("boss")  # the first account: the superuser
    client = AsyncClient()
    await sync_to_async(client.force_login)(boss)
    return client


async def test_suspending_closes_open_sockets_and_stops_the_running_answer(
    fake: FakeUpstream,
) -> None:
    admin = await _superuser_client()
    fake.enqueue(Stream([f"w{i} " for i in range(400)], interval=0.02))
    user = await sync_to_async(make_user)("troll")
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "go"})
    await socket.receive_until(lambda f: "w2" in f)
    log = fake.completions()[-1]
    response = await admin.post(
        "/admin/accounts/suspension/add/",
        {"user": user.pk, "reason": "Spamming the model.", "until_0": "", "until_1": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert await log.await_closed(3.0)  # the upstream saw the hang-up
    closed = await socket.communicator.receive_output(timeout=3)
    while closed["type"] != "websocket.close":
        closed = await socket.communicator.receive_output(timeout=3)
    assert closed["code"] == 4403
    for _ in range(150):  # the socket may close a moment before the partial is saved
        answer = await Message.objects.aget(role="assistant")
        if answer.status != "streaming":
            break
        await asyncio.sleep(0.02)
    assert answer.status == "stopped"
    assert answer.content.startswith("w0 w1 w2")  # the partial answer is kept
    connected, _ = await open_socket(conversation, user)
    assert not connected  # and it cannot come back


def _suspend(user: Any, *, until: Any = None) -> None:
    Suspension.objects.create(user=user, until=until, reason="Rude to moderators.")


def test_sign_in_is_refused_with_the_reason_and_the_end_date() -> None:
    make_user("boss")
    user = make_user("troll", PASSWORD)
    until = timezone.now() + timedelta(days=3)
    _suspend(user, until=until)
    response = Client().post("/accounts/login/", {"username": "troll", "password": PASSWORD})
    body = response.content.decode()
    assert response.status_code == 200  # the form again, with the notice
    assert "suspended until" in body
    assert f"{timezone.localtime(until):%Y-%m-%d}" in body
    assert "Rude to moderators." in body
    # A wrong password says nothing about the suspension.
    wrong = Client().post("/accounts/login/", {"username": "troll", "password": "nope"})
    assert "Rude to moderators." not in wrong.content.decode()


def test_a_signed_in_user_is_signed_out_at_the_next_request() -> None:
    make_user("boss")
    user = make_user("troll", PASSWORD)
    client = Client()
    client.force_login(user)
    assert client.get("/").status_code == 200
    _suspend(user)
    page = client.get("/")
    assert page.status_code == 403
    assert "suspended until further notice" in page.content.decode()
    assert client.get("/").status_code == 302  # signed out: sent to sign in


def test_a_suspension_lifts_by_itself_when_it_ends() -> None:
    make_user("boss")
    user = make_user("troll", PASSWORD)
    _suspend(user, until=timezone.now() + timedelta(days=1))
    Suspension.objects.update(until=timezone.now() - timedelta(seconds=1))  # time passes
    client = Client()
    response = client.post("/accounts/login/", {"username": "troll", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_only_staff_with_permission_can_suspend() -> None:
    make_user("boss")
    target = make_user("target")
    plain = Client()
    plain.force_login(make_user("plain"))
    plain.post("/admin/accounts/suspension/add/", {"user": target.pk, "reason": "x"})
    assert not Suspension.objects.exists()
