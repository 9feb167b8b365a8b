"""The upstream model: which one, one AsyncOpenAI client per configuration, and the calls
made to it (a streaming answer, the model list, moderation, a short completion).

This module knows HTTP and the OpenAI wire format, nothing about the database, sockets or
pages. Reading a streaming body is upstream_sse's job; turning failures into
`UpstreamError`s is upstream_errors'.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, cast

import httpx2
import openai
from django.conf import settings
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from .upstream_errors import UPSTREAM_EXCEPTIONS, classify
from .upstream_sse import ChatStream, ChunkRecord


@dataclass(frozen=True)
class UpstreamConfig:
    base_url: str
    api_key: str
    connect_timeout: float = 10.0
    # Longest silence between two chunks before the call is abandoned.
    idle_timeout: float = 60.0

    def __repr__(self) -> str:  # never print the key, even in a traceback's locals
        return f"UpstreamConfig(base_url={self.base_url!r}, api_key='***')"


def configured(*, server: tuple[str, int] | None = None) -> UpstreamConfig:
    """The upstream for new answers: the configured one, or this site's demo endpoint at
    the address the server accepted a request on (`server`), so any port works."""
    if settings.CHATSITE_DEMO_MODE:
        base_url = settings.CHATSITE_DEMO_BASE_URL
        if not base_url:
            host, port = server or ("127.0.0.1", 8000)
            if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind: call ourselves on loopback
                host = "127.0.0.1"
            base_url = f"http://{host}:{port}/demo/v1"
        api_key = settings.CHATSITE_DEMO_API_KEY  # the demo answers only us and signed-in users
    else:
        base_url = settings.OPENAI_BASE_URL
        api_key = settings.OPENAI_API_KEY or "none"  # local servers often need no key
    return UpstreamConfig(
        base_url=base_url,
        api_key=api_key,
        connect_timeout=settings.CHATSITE_UPSTREAM_CONNECT_TIMEOUT,
        idle_timeout=settings.CHATSITE_UPSTREAM_IDLE_TIMEOUT,
    )


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; the upstream's Retry-After wins when given."""
    if retry_after is not None:
        return retry_after
    ceiling = min(8.0, settings.CHATSITE_RETRY_BASE_DELAY * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def client_for(config: UpstreamConfig) -> AsyncOpenAI:
    """One client (one connection pool) per configuration for the life of the loop."""
    loop = asyncio.get_running_loop()
    client = _CLIENTS.get((config, loop))
    if client is None:
        client = _CLIENTS[(config, loop)] = _client(config)
    return client


def clients_forget() -> None:
    """Drop every client (tests: each runs its own event loop)."""
    _CLIENTS.clear()


async def clients_close() -> None:
    """Close this loop's clients and their connections (a graceful shutdown)."""
    loop = asyncio.get_running_loop()
    for key in [key for key in _CLIENTS if key[1] is loop]:
        await _CLIENTS.pop(key).close()


# Clients by configuration and event loop: aiohttp's session belongs to one loop.
_CLIENTS: dict[tuple[UpstreamConfig, asyncio.AbstractEventLoop], AsyncOpenAI] = {}


def _client(config: UpstreamConfig) -> AsyncOpenAI:
    # aiohttp under the SDK: the SDK's request building, status errors and types stay,
    # but a body read costs a fraction of httpx2/anyio's (no cancel scope per read),
    # which is most of what a streaming chunk costs (README, Performance).
    timeout = httpx2.Timeout(
        connect=config.connect_timeout,
        read=config.idle_timeout,
        write=config.connect_timeout,
        pool=config.connect_timeout,
    )
    return AsyncOpenAI(
        base_url=config.base_url,
        api_key=config.api_key,
        # Retries are the generation's business: it knows whether text has been shown.
        max_retries=0,
        timeout=timeout,
        http_client=openai.DefaultAioHttpClient(
            timeout=timeout,
            # One connection per streaming answer: the pool must hold as many as run
            # (aiohttp's own default is 100; None would fall back to it).
            limits=httpx2.Limits(max_connections=100_000, max_keepalive_connections=100),
        ),
    )


async def open_stream(
    config: UpstreamConfig,
    *,
    model: str,
    messages: list[dict[str, Any]],
    record: ChunkRecord | None = None,
) -> ChatStream:
    client = client_for(config)
    manager = client.chat.completions.with_streaming_response.create(
        model=model,
        messages=cast("list[ChatCompletionMessageParam]", messages),
        stream=True,
        stream_options={"include_usage": True},
        # A compressed body is read through httpx2's decoder, lazily: between two frames
        # nothing reads it, and bytes still in the kernel are lost if the connection is
        # reset. Uncompressed, aiohttp takes every byte as it arrives (upstream_sse).
        extra_headers={"Accept-Encoding": "identity"},
    )
    if record is not None:
        record.request()
    try:
        # Sends the request; a status error (429, 5xx, ...) is raised here, by the SDK.
        response = await manager.__aenter__()
    except UPSTREAM_EXCEPTIONS as exc:
        error = classify(exc)
        if record is not None:
            record.failed(error)
        raise error from exc
    request_id = response.headers.get("x-request-id", "")
    if record is not None:
        record.opened(request_id)
    return ChatStream(manager, response, request_id, record)


async def list_models(config: UpstreamConfig) -> list[str]:
    """The model ids the upstream offers (GET /models). Raises UpstreamError."""
    client = client_for(config)
    try:
        page = await client.models.list()
    except UPSTREAM_EXCEPTIONS as exc:
        raise classify(exc) from exc
    return [model.id for model in page.data if isinstance(model.id, str) and model.id]


@dataclass(frozen=True)
class Moderation:
    flagged_categories: list[str]
    scores: dict[str, float]


async def moderate(config: UpstreamConfig, *, text: str, model: str = "") -> Moderation:
    """The upstream's /moderations verdict on one text. Raises UpstreamError."""
    client = client_for(config)
    try:
        if model:
            response = await client.moderations.create(input=text, model=model)
        else:
            response = await client.moderations.create(input=text)
    except UPSTREAM_EXCEPTIONS as exc:
        raise classify(exc) from exc
    flagged: list[str] = []
    scores: dict[str, float] = {}
    for result in response.results:
        for name, value in result.categories.model_dump(by_alias=True).items():
            if value and name not in flagged:
                flagged.append(name)
        for name, score in result.category_scores.model_dump(by_alias=True).items():
            if isinstance(score, (int, float)):
                scores[name] = max(scores.get(name, 0.0), float(score))
    return Moderation(flagged_categories=flagged, scores=scores)


async def complete_text(
    config: UpstreamConfig, *, model: str, messages: list[dict[str, str]], max_tokens: int = 30
) -> str:
    """A short non-streaming completion (titles). Raises UpstreamError."""
    client = client_for(config)
    try:
        completion = await client.chat.completions.create(
            model=model,
            messages=cast("list[ChatCompletionMessageParam]", messages),
            max_tokens=max_tokens,
            stream=False,
        )
    except UPSTREAM_EXCEPTIONS as exc:
        raise classify(exc) from exc
    if not completion.choices:
        return ""
    return completion.choices[0].message.content or ""
