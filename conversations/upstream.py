"""The upstream model: one AsyncOpenAI client per configuration, chunk reading, error kinds.

This module knows HTTP and the OpenAI wire format, nothing about the database, sockets or
pages. It turns the SDK's chunks into small `StreamEvent`s and every failure into an
`UpstreamError` with a kind the rest of the app can reason about and a sentence a person
understands. Raw upstream bodies are logged here (with the request id), never returned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, cast

import httpx2
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

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


@lru_cache(maxsize=16)
def client_for(config: UpstreamConfig) -> AsyncOpenAI:
    """One client (one connection pool) per configuration for the life of the process."""
    return AsyncOpenAI(
        base_url=config.base_url,
        api_key=config.api_key,
        # Retries are the generation's business: it knows whether text has been shown.
        max_retries=0,
        timeout=httpx2.Timeout(
            connect=config.connect_timeout,
            read=config.idle_timeout,
            write=config.connect_timeout,
            pool=config.connect_timeout,
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
    CONNECTION = "connection"
    PROTOCOL = "protocol"
    STREAM_ERROR = "stream_error"


USER_MESSAGES = {
    ErrorKind.RATE_LIMITED: "The model is rate limited right now. Please try again in a moment.",
    ErrorKind.UNAVAILABLE: "The model service is unavailable right now.",
    ErrorKind.AUTH: "The model service rejected this site's API key. An operator must fix it.",
    ErrorKind.NOT_FOUND: "The model was not found on the model service.",
    ErrorKind.BAD_REQUEST: "The model service refused this request.",
    ErrorKind.TIMEOUT: "The model service stopped responding.",
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
        if self.kind in (ErrorKind.CONNECTION, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE):
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
    if isinstance(exc, openai.APITimeoutError):
        log.warning("upstream timeout request_id=%s", request_id or "-")
        return UpstreamError(ErrorKind.TIMEOUT, request_id=request_id)
    if isinstance(exc, openai.APIConnectionError):
        log.warning("upstream connection error request_id=%s: %r", request_id or "-", exc.__cause__)
        return UpstreamError(ErrorKind.CONNECTION, request_id=request_id)
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        log.warning("upstream stream error request_id=%s body=%r", request_id or "-", exc.body)
        return UpstreamError(ErrorKind.STREAM_ERROR, request_id=request_id)
    log.warning("upstream unreadable response request_id=%s: %r", request_id or "-", exc)
    return UpstreamError(ErrorKind.PROTOCOL, request_id=request_id)


# What the SDK or the transport may raise while a call is in flight (CancelledError is
# deliberately not here: a Stop must travel through untouched).
UPSTREAM_EXCEPTIONS: tuple[type[BaseException], ...] = (
    openai.OpenAIError,
    httpx2.HTTPError,
    json.JSONDecodeError,
    ValueError,
)


class ChatStream:
    """An open streaming chat completion: iterate for events, close to hang up."""

    def __init__(self, stream: openai.AsyncStream[Any], request_id: str) -> None:
        self._stream = stream
        self.request_id = request_id

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        try:
            async for chunk in self._stream:
                usage = chunk.usage
                if usage is not None:
                    yield StreamEvent(
                        usage=Usage(
                            prompt_tokens=usage.prompt_tokens,
                            completion_tokens=usage.completion_tokens,
                            total_tokens=usage.total_tokens,
                        )
                    )
                for choice in chunk.choices:
                    # Role-only and empty deltas carry no text; the finish chunk has none.
                    text = choice.delta.content if choice.delta is not None else None
                    if text or choice.finish_reason:
                        yield StreamEvent(text=text or "", finish_reason=choice.finish_reason)
        except UPSTREAM_EXCEPTIONS as exc:
            raise classify(exc, request_id=self.request_id) from exc

    async def close(self) -> None:
        """Hang up: the upstream sees its connection close."""
        await self._stream.close()


async def open_stream(
    config: UpstreamConfig, *, model: str, messages: list[dict[str, str]]
) -> ChatStream:
    client = client_for(config)
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=cast("list[ChatCompletionMessageParam]", messages),
            stream=True,
            stream_options={"include_usage": True},
        )
    except UPSTREAM_EXCEPTIONS as exc:
        raise classify(exc) from exc
    request_id = stream.response.headers.get("x-request-id", "")
    return ChatStream(stream, request_id)


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
