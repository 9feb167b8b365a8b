"""The upstream model: one AsyncOpenAI client per configuration, chunk reading, error kinds.

This module knows HTTP and the OpenAI wire format, nothing about the database, sockets or
pages. It turns the SDK's chunks into small `StreamEvent`s and every failure into an
`UpstreamError` with a kind the rest of the app can reason about and a sentence a person
understands. Raw upstream bodies are logged here (with the request id), never returned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import httpx2
import jiter
import openai
from django.conf import settings
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

if TYPE_CHECKING:
    from openai._response import AsyncAPIResponse, AsyncResponseContextManager

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True)
class StreamEvent:
    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class ErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # no connection could be made
    CONNECTION = "connection"  # a connection that was made broke
    PROTOCOL = "protocol"
    STREAM_ERROR = "stream_error"


USER_MESSAGES = {
    ErrorKind.RATE_LIMITED: "The model is rate limited right now. Please try again in a moment.",
    ErrorKind.UNAVAILABLE: "The model service is unavailable right now.",
    ErrorKind.AUTH: "The model service rejected this site's API key. An operator must fix it.",
    ErrorKind.NOT_FOUND: "The model was not found on the model service.",
    ErrorKind.BAD_REQUEST: "The model service refused this request.",
    ErrorKind.TIMEOUT: "The model service stopped responding.",
    ErrorKind.UNREACHABLE: "Could not reach the model service.",
    ErrorKind.CONNECTION: "The connection to the model service was lost.",
    ErrorKind.PROTOCOL: "The model service sent a response that could not be read.",
    ErrorKind.STREAM_ERROR: "The model service reported an error while answering.",
}


class UpstreamError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        *,
        status: int | None = None,
        request_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind} (status={status}, request_id={request_id or '-'})")
        self.kind = kind
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def user_message(self) -> str:
        return USER_MESSAGES[self.kind]

    @property
    def retryable(self) -> bool:
        """Worth another try before any text was shown (408/409/429/5xx, network)."""
        if self.kind in (
            ErrorKind.UNREACHABLE,
            ErrorKind.CONNECTION,
            ErrorKind.TIMEOUT,
            ErrorKind.UNAVAILABLE,
        ):
            return True
        if self.kind is ErrorKind.RATE_LIMITED:
            return True
        return self.status in (408, 409)


def _retry_after(headers: httpx2.Headers | None) -> float | None:
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None  # an HTTP date: rare for model APIs; fall back to our backoff
    return None


def classify(exc: BaseException, *, request_id: str = "") -> UpstreamError:
    """Map an SDK/transport exception to an UpstreamError, logging the raw detail."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        rid = exc.request_id or request_id
        if status == 429:
            kind = ErrorKind.RATE_LIMITED
        elif status in (401, 403):
            kind = ErrorKind.AUTH
        elif status == 404:
            kind = ErrorKind.NOT_FOUND
        elif status >= 500 or status in (408, 409):
            kind = ErrorKind.UNAVAILABLE
        else:
            kind = ErrorKind.BAD_REQUEST
        # The body is the upstream's words: logged for operators, never shown to users.
        log.warning("upstream %s status=%s request_id=%s body=%r", kind, status, rid, exc.body)
        return UpstreamError(
            kind, status=status, request_id=rid, retry_after=_retry_after(exc.response.headers)
        )
    if isinstance(exc, openai.APITimeoutError) and not _caused_by(
        exc, aiohttp.ClientConnectorError
    ):
        log.warning("upstream timeout request_id=%s", request_id or "-")
        return UpstreamError(ErrorKind.TIMEOUT, request_id=request_id)
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError's parent
        # (aiohttp's transport reports a refused connection as a connect timeout.)
        # Raised while the request is sent: no connection was made (refused, no route,
        # a name that does not resolve), which is not the same as losing one.
        log.warning("upstream unreachable request_id=%s: %r", request_id or "-", exc.__cause__)
        return UpstreamError(ErrorKind.UNREACHABLE, request_id=request_id)
    # The body is read below the SDK: its transport errors arrive as aiohttp's or
    # httpx2's own.
    if isinstance(exc, (httpx2.TimeoutException, aiohttp.ServerTimeoutError, TimeoutError)):
        log.warning("upstream timeout mid-stream request_id=%s", request_id or "-")
        return UpstreamError(ErrorKind.TIMEOUT, request_id=request_id)
    if isinstance(exc, (httpx2.TransportError, aiohttp.ClientError)):
        log.warning("upstream connection lost request_id=%s: %r", request_id or "-", exc)
        return UpstreamError(ErrorKind.CONNECTION, request_id=request_id)
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        log.warning("upstream stream error request_id=%s body=%r", request_id or "-", exc.body)
        return UpstreamError(ErrorKind.STREAM_ERROR, request_id=request_id)
    log.warning("upstream unreadable response request_id=%s: %r", request_id or "-", exc)
    return UpstreamError(ErrorKind.PROTOCOL, request_id=request_id)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# What the SDK or the transport may raise while a call is in flight (CancelledError is
# deliberately not here: a Stop must travel through untouched).
UPSTREAM_EXCEPTIONS: tuple[type[BaseException], ...] = (
    openai.OpenAIError,
    httpx2.HTTPError,
    aiohttp.ClientError,
    TimeoutError,  # aiohttp's read timeout
    json.JSONDecodeError,
    ValueError,
)


class ChunkRecord:
    """An answer's upstream body as it arrives, each read with its time since the answer's
    first request, up to `max_bytes` (the chunk log: CHATSITE_CHUNK_LOG). Retries each
    open with the request id they got."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: list[dict[str, Any]] = []
        self.size = 0
        self.truncated = False
        self._started: float | None = None

    def _now(self) -> float:
        if self._started is None:
            self._started = time.monotonic()
        return round(time.monotonic() - self._started, 4)

    def request(self) -> None:
        """A request is about to be sent (its id is known once the status line is)."""
        self.entries.append({"t": self._now(), "request": ""})

    def opened(self, request_id: str) -> None:
        if self.entries and "request" in self.entries[-1]:
            self.entries[-1]["request"] = request_id

    def failed(self, error: UpstreamError) -> None:
        self.opened(error.request_id)
        self.entries.append({"t": self._now(), "error": str(error)})

    def add(self, chunk: bytes) -> None:
        t = self._now()
        if self.truncated:
            return
        room = self.max_bytes - self.size
        if len(chunk) > room:
            chunk, self.truncated = chunk[:room], True
        if chunk:
            self.size += len(chunk)
            self.entries.append({"t": t, "data": chunk.decode("utf-8", "replace")})


class ChatStream:
    """An open streaming chat completion: iterate for events, close to hang up.

    The request, its retries and its status errors are the SDK's; the body is read here,
    as raw server-sent events parsed with jiter (the parser the SDK itself uses) into the
    three things an answer needs. The SDK's typed loop builds a pydantic object per chunk,
    which measured twice the CPU of everything else a chunk costs on its way to a reader.
    """

    def __init__(
        self,
        manager: AsyncResponseContextManager[AsyncAPIResponse[Any]],
        response: AsyncAPIResponse[Any],
        request_id: str,
        record: ChunkRecord | None = None,
    ) -> None:
        self._manager = manager
        self._response = response
        self.request_id = request_id
        self._record = record

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        """The events of each network read, together. A reader that pauses between reads
        gets everything that arrived meanwhile in one read: the transport's cost is per
        read, not per event, so pausing until the next frame is due is nearly free."""
        parser = SSEParser()
        body = _raw_body(self._response.http_response)
        chunks = self._response.http_response.aiter_bytes() if body is None else None
        try:
            while True:
                if body is not None:
                    chunk = await body.readany()
                    if not chunk:
                        return
                else:
                    assert chunks is not None
                    chunk = await anext(chunks, b"")
                    if not chunk:
                        return
                if self._record is not None:
                    self._record.add(chunk)
                events: list[StreamEvent] = []
                done = False
                try:
                    for data in parser.feed(chunk):
                        if data.startswith(b"[DONE]"):
                            done = True
                            break
                        events += _events(jiter.from_json(data))
                except UPSTREAM_EXCEPTIONS:
                    # Text that came before the error in the same read is the answer's.
                    if events:
                        yield events
                    raise
                if events:
                    yield events
                if parser.failed:  # as the SDK does with an error event
                    raise openai.APIError(
                        "error event in the stream", request=_NO_REQUEST, body=None
                    )
                if done:
                    return
        except UPSTREAM_EXCEPTIONS as exc:
            raise classify(exc, request_id=self.request_id) from exc

    async def close(self) -> None:
        """Hang up: the upstream sees its connection close."""
        await self._manager.__aexit__(None, None, None)


def _raw_body(response: httpx2.Response) -> aiohttp.StreamReader | None:
    """The aiohttp body under the SDK's response, read straight: httpx2's iterators add
    four async generators and a decoder per read. Not when the body is compressed (httpx2
    decodes it) or the transport is another (tests/test_private_names.py pins the name)."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    raw = getattr(response.stream, "_aiohttp_response", None)
    if encoding not in ("", "identity") or not isinstance(raw, aiohttp.ClientResponse):
        return None
    return raw.content


class SSEParser:
    """Server-sent events from bytes split anywhere: feed() returns the data of each event
    completed (its `data:` lines joined), in order. An `event: error` ends the stream:
    the data before it is returned, `failed` is set and nothing after it is read."""

    def __init__(self) -> None:
        self._buffer = b""
        self.failed = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self.failed:
            return []
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # CR LF and lone CR end lines too; a CR last may be half of a CR LF.
            keep = buffer.endswith(b"\r")
            buffer = buffer[:-1] if keep else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            buffer = buffer + b"\r" if keep else buffer
        if b"\n\n" not in buffer:
            self._buffer = buffer
            return []
        *events, self._buffer = buffer.split(b"\n\n")
        out = []
        for event in events:
            data = _event_data(event)
            if data is ERROR_EVENT:
                self.failed = True
                break
            if data is not None:
                out.append(data)
        return out


ERROR_EVENT = b"event: error"  # compared by identity, never as data


def _event_data(event: bytes) -> bytes | None:
    if event.startswith(b"data: ") and b"\n" not in event:  # nearly every event
        return event[6:]
    data: list[bytes] = []
    name = b""
    for line in event.split(b"\n"):
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    if not data:
        return None  # a comment or a keep-alive
    if name == b"error":
        return ERROR_EVENT
    return b"\n".join(data)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _events(payload: object) -> list[StreamEvent]:
    if not isinstance(payload, dict):
        raise ValueError(f"a stream chunk that is not an object: {type(payload).__name__}")
    if payload.get("error"):
        raise openai.APIError("error in the stream", request=_NO_REQUEST, body=payload["error"])
    events = []
    usage = payload.get("usage")
    if isinstance(usage, dict):
        events.append(
            StreamEvent(
                usage=Usage(
                    prompt_tokens=_int(usage.get("prompt_tokens")),
                    completion_tokens=_int(usage.get("completion_tokens")),
                    total_tokens=_int(usage.get("total_tokens")),
                )
            )
        )
    for choice in payload.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        text = text if isinstance(text, str) else ""
        finish = choice.get("finish_reason")
        finish = finish if isinstance(finish, str) else None
        # Role-only and empty deltas carry no text; the finish chunk has none.
        if text or finish:
            events.append(StreamEvent(text=text, finish_reason=finish))
    return events


# APIError wants the request; an event inside a body has none of its own.
_NO_REQUEST = httpx2.Request("POST", "http://upstream/chat/completions")


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
