"""Shared fixtures: the fake upstream, users, sockets through the real ASGI application."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts import services as account_services
from chatsite.throttle import throttle_forget
from conversations import catalog, gate, upstream
from conversations.streaming import generation
from moderation import screening

if TYPE_CHECKING:
    from tests.fake_openai import FakeUpstream

API_KEY = "sk-test-THIS-KEY-MUST-NEVER-LEAK-0123456789"
ORIGIN = b"http://127.0.0.1:8000"
HOST = b"127.0.0.1:8000"  # a browser's socket to the page's own origin carries its Host


@pytest.fixture(scope="session", autouse=True)
def _asgi_application_loaded() -> None:
    # Loading the ASGI application sets Django up again, and with it the logging
    # configuration, which would drop the handler of a test's caplog that was installed
    # before: load it once, first.
    import chatsite.asgi  # noqa: F401


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeUpstream]:
    from tests.fake_openai import FakeUpstream

    with FakeUpstream() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeUpstream, settings: Any) -> Iterator[FakeUpstream]:
    """The fake OpenAI-compatible server, configured as this site's upstream."""
    fake_server.reset()
    settings.CHATSITE_DEMO_MODE = False
    settings.OPENAI_BASE_URL = fake_server.base_url
    settings.OPENAI_API_KEY = API_KEY
    settings.OPENAI_MODEL = "fake-model"
    yield fake_server
    fake_server.reset()


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    # Each test runs its own event loop: loop-bound objects must not leak between tests.
    channel_layers.backends.clear()
    upstream.clients_forget()
    gate.gates_forget()
    # The model list is cached by base URL, and the fake server's URL is the same in
    # every test: one test's list must not decide which models the next one may use.
    catalog.cache_clear()
    throttle_forget()  # user ids are reused between tests
    # Rules rolled back with a test's transaction send no signal: forget them.
    screening.rules_forget()
    yield
    channel_layers.backends.clear()
    screening.rules_forget()
    upstream.clients_forget()
    gate.gates_forget()
    catalog.cache_clear()


@pytest.fixture
async def no_stray_generations() -> AsyncIterator[None]:
    yield
    tasks = [g.task for g in list(generation.RUNNING.values()) if g.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def make_user(username: str = "alice", password: str = "a-long-enough-password") -> Any:
    return account_services.user_create(username=username, password=password)


def session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


class Socket:
    """A browser-like websocket to a conversation, through chatsite.asgi.application."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.frames: list[str] = []

    async def send_json(self, payload: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps(payload))

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 5.0) -> str:
        frame = await self.communicator.receive_from(timeout=timeout)
        self.frames.append(frame)
        return frame

    async def receive_until(self, predicate: Any, timeout: float = 10.0) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout}s; got {self.frames[-5:]}")
            frame = await self.receive(timeout=remaining)
            if predicate(frame):
                return frame

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_socket(
    conversation: Any,
    user: Any | None,
    *,
    origin: bytes = ORIGIN,
    query: str = "",
    host: bytes = HOST,
    cookie: bytes | None = None,
) -> tuple[bool, Socket]:
    """A socket to a conversation as a page of `origin` opens it on `host`, with the
    user's session (a new one, or `cookie`)."""
    from chatsite.asgi import application

    headers = [(b"origin", origin), (b"host", host)]
    if cookie is not None:
        headers.append((b"cookie", cookie))
    elif user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.public_id}/{query}", headers=headers
    )
    connected, _ = await communicator.connect(timeout=5)
    return connected, Socket(communicator)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Browser tests last: Playwright's sync API keeps its event loop running in the main
    # thread for the rest of the session, where asyncio tests could not start their own.
    items.sort(key=lambda item: "/browser/" in str(item.path))
