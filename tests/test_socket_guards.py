"""What a hostile page or a hostile client can do with a socket: nothing it should.

Pages of another origin on the same host, frames built to crash the consumer, loops of
cheap actions or of regenerations, and sockets that outlive their session.
"""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import UsageEvent
from chatsite.origins import origin_allowed
from tests.conftest import HOST, ORIGIN, Socket, make_user, open_socket, session_cookie
from tests.fake_openai import FakeUpstream, Stream
from tests.test_consumers import conversation_for, final_frame, messages_of

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]


def scope(origin: str | None, host: str = "127.0.0.1:8000", **extra: Any) -> dict[str, Any]:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    for name, value in extra.items():
        headers.append((name.replace("_", "-").encode(), value.encode()))
    return {"type": "websocket", "scheme": "ws", "headers": headers}


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://localhost:8000", "localhost:8000", True),
        # The same host name on another port, or another scheme, is another site.
        ("http://127.0.0.1:8298", "127.0.0.1:8000", False),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", False),
        ("http://127.0.0.1", "127.0.0.1:8000", False),
        ("http://localhost:8000", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000.evil.example", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000/path", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        (None, "127.0.0.1:8000", False),
        # A Host this site does not answer to gives no own origin at all.
        ("http://evil.example:8000", "evil.example:8000", False),
    ],
)
def test_a_socket_is_accepted_only_from_the_exact_origin_of_the_site(
    origin: str | None, host: str, allowed: bool
) -> None:
    assert origin_allowed(scope(origin, host)) is allowed


def test_behind_a_tls_proxy_the_https_origin_is_the_sites_own(settings: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    behind_tls = scope("https://chat.example.com", "chat.example.com", x_forwarded_proto="https")
    assert origin_allowed(behind_tls)
    # The proxy says the socket came over TLS: a plain-http page is another origin.
    assert not origin_allowed(
        scope("http://chat.example.com", "chat.example.com", x_forwarded_proto="https")
    )


def test_trusted_origins_are_matched_exactly(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "https://*.corp.example"]
    assert origin_allowed(scope("https://app.example.com"))
    assert origin_allowed(scope("https://app.example.com:443"))
    assert origin_allowed(scope("https://team.corp.example"))
    assert not origin_allowed(scope("http://app.example.com"))
    assert not origin_allowed(scope("https://app.example.com:8443"))
    assert not origin_allowed(scope("https://evilcorp.example"))


async def test_a_page_on_another_port_cannot_use_the_users_sockets(fake: FakeUpstream) -> None:
    """The attack: a page served from http://127.0.0.1:8298 opened with her cookies."""
    from chatsite.asgi import application

    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    foreign = b"http://127.0.0.1:8298"
    connected, _ = await open_socket(conversation, user, origin=foreign)
    assert not connected
    me = WebsocketCommunicator(
        application,
        "/ws/me/",
        headers=[
            (b"origin", foreign),
            (b"host", HOST),
            (b"cookie", await sync_to_async(session_cookie)(user)),
        ],
    )
    connected, _ = await me.connect(timeout=5)
    assert not connected
    # The same page from the site's own origin is welcome.
    connected, socket = await open_socket(conversation, user, origin=ORIGIN)
    assert connected
    await socket.close()


async def next_close(socket: Socket, timeout: float = 5.0) -> int:
    """Frames until the server closes the socket; its close code."""
    while True:
        output = await socket.communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return int(output.get("code", 1000))
        socket.frames.append(output.get("text", ""))


@pytest.mark.parametrize(
    "frame",
    [
        '{"action": "version", "message_id": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "[" * 100_000 + "]" * 100_000,
        '{"action": "version", "message_id": 1e999}',
        '{"action": "retry", "message_id": 1e999}',
        '{"action": "edit", "message_id": 99999999999999999999999, "message": "x"}',
        '{"action": "continue", "message_id": -1}',
        '{"action": "version", "message_id": true}',
        '{"action": "send", "message": {"nested": 1}}',
    ],
)
async def test_hostile_frames_get_a_clear_error_and_the_socket_stays_usable(
    fake: FakeUpstream, frame: str
) -> None:
    fake.enqueue(Stream(["still ", "working"]))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_raw(frame)
    error = await socket.receive_until(lambda f: "feedback error" in f)
    assert re.search(r"not valid JSON|does not exist|must be text|cannot|only", error), error
    # Still open, still answering.
    await socket.send_json({"action": "send", "message": "hello"})
    final = await socket.receive_until(final_frame)
    assert "still working" in html.unescape(final)
    await socket.close()


async def test_signing_out_closes_that_sessions_sockets_only(fake: FakeUpstream) -> None:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    leaving, staying = Client(), Client()
    await sync_to_async(leaving.force_login)(user)
    await sync_to_async(staying.force_login)(user)
    cookie_of = lambda c: f"sessionid={c.cookies['sessionid'].value}".encode()  # noqa: E731
    _, signed_out = await open_socket(conversation, user, cookie=cookie_of(leaving))
    _, other_tab = await open_socket(conversation, user, cookie=cookie_of(staying))
    for socket in (signed_out, other_tab):
        await socket.receive()  # the saved state every socket starts with

    response = await sync_to_async(leaving.post)("/accounts/logout/")
    assert response.status_code == 302

    assert await next_close(signed_out) == 4401
    assert "You signed out" in html.unescape(signed_out.frames[-1])
    # The other session's page goes on.
    fake.enqueue(Stream(["fine"]))
    await other_tab.send_json({"action": "send", "message": "still here?"})
    assert "fine" in html.unescape(await other_tab.receive_until(final_frame))
    await other_tab.close()


async def test_a_loop_of_cheap_actions_is_slowed_down_but_stop_always_works(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_SOCKET_ACTIONS_PER_SECOND = 1
    settings.CHATSITE_SOCKET_ACTIONS_BURST = 5
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.receive()
    for _ in range(8):
        await socket.send_json({"action": "version", "message_id": 1})
    errors = [await socket.receive_until(lambda f: "feedback error" in f) for _ in range(8)]
    slowed = [e for e in errors if "That was a lot at once" in html.unescape(e)]
    assert len(slowed) >= 3, errors
    assert re.search(r"Try again in \d+ s\.", html.unescape(slowed[0]))
    # Stop is never slowed down: it must always reach a running answer.
    fake.enqueue(Stream([f"w{i} " for i in range(500)], interval=0.02))
    await asyncio.sleep(1.1)  # one token back for the send
    await socket.send_json({"action": "send", "message": "go on"})
    await socket.receive_until(lambda f: "w1 " in f)
    for _ in range(10):
        await socket.send_json({"action": "version", "message_id": 1})
    await socket.send_json({"action": "stop"})
    final = await socket.receive_until(final_frame)
    assert 'data-status="stopped"' in final
    await socket.close()


async def test_regenerate_and_continue_count_against_the_rate_limit(
    fake: FakeUpstream, settings: Any
) -> None:
    """A loop of {"action": "retry"} made 94 upstream requests in 10 s."""
    settings.CHATSITE_MESSAGES_PER_MINUTE = 3
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "one"})
    await socket.receive_until(final_frame)
    for _ in range(5):
        answer_id = (await messages_of(conversation))[-1].pk
        await socket.send_json({"action": "retry", "message_id": answer_id})
        frame = await socket.receive_until(lambda f: final_frame(f) or "feedback error" in f)
        if "feedback error" in frame:
            break
    text = html.unescape(frame)
    assert re.search(r"3 answers a minute .*Try again in \d+ s\.", text), text
    assert len(fake.completions()) == 3  # one message and two regenerations, no more
    counted = await UsageEvent.objects.filter(user=user, kind="message").acount()
    assert counted == 3
    await socket.close()


async def test_regenerations_count_against_the_daily_message_quota(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_QUOTA_MESSAGES_PER_DAY = 2
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": "one"})
    await socket.receive_until(final_frame)
    answer_id = (await messages_of(conversation))[-1].pk
    await socket.send_json({"action": "retry", "message_id": answer_id})
    await socket.receive_until(final_frame)
    answer_id = (await messages_of(conversation))[-1].pk
    await socket.send_json({"action": "retry", "message_id": answer_id})
    refused = html.unescape(await socket.receive_until(lambda f: "feedback error" in f))
    assert "You have used your 2 messages today" in refused
    assert len(fake.completions()) == 2
    await socket.close()


async def test_sockets_past_the_cap_are_refused_with_a_reason(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_MAX_SOCKETS_PER_USER = 2
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    cookie = await sync_to_async(session_cookie)(user)
    opened = []
    for _ in range(2):
        connected, socket = await open_socket(conversation, user, cookie=cookie)
        assert connected
        opened.append(socket)
    connected, third = await open_socket(conversation, user, cookie=cookie)
    assert await next_close(third) == 4429
    assert "You have 2 pages of this site open" in html.unescape(third.frames[-1])
    # Closing a page makes room again.
    await opened.pop().close()
    connected, again = await open_socket(conversation, user, cookie=cookie)
    assert connected
    await again.receive()
    for socket in [*opened, again]:
        await socket.close()
