"""A streaming answer's body: server-sent events parsed as they arrive (`SSEParser`), each
chunk turned into small `StreamEvent`s, the open stream a generation reads (`ChatStream`)
and the chunk log's record of the raw body (`ChunkRecord`). Failures leave as
upstream_errors' `UpstreamError`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx2
import jiter
import openai
from httpx2._client import BoundAsyncStream

from .upstream_errors import UPSTREAM_EXCEPTIONS, UpstreamError, classify

if TYPE_CHECKING:
    from openai._response import AsyncAPIResponse, AsyncResponseContextManager


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
        self._body = _raw_body(response.http_response)
        self._read = 0  # bytes read from _body

    def ready(self) -> bool:
        """Whether reading on would not wait: bytes (or the end) arrived since the last
        read. False when it cannot tell (another transport)."""
        body = self._body
        return body is not None and (body.total_bytes > self._read or body.is_eof())

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        """The events of each network read, together. A reader that pauses between reads
        gets everything that arrived meanwhile in one read: the transport's cost is per
        read, not per event, so pausing until the next frame is due is nearly free."""
        parser = SSEParser()
        body = self._body
        chunks = self._response.http_response.aiter_bytes() if body is None else None
        failure: BaseException | None = None
        try:
            while True:
                if body is not None:
                    try:
                        chunk = await body.readany()
                    except UPSTREAM_EXCEPTIONS as exc:
                        # The reader waits between frames: what arrived before the
                        # connection failed is still unread, and it is the answer's.
                        chunk, failure = _unread(body), exc
                        if not chunk:
                            raise
                    if not chunk:
                        return
                    self._read += len(chunk)
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
                if failure is not None:
                    raise failure
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
    stream = response.stream
    if isinstance(stream, BoundAsyncStream):
        stream = stream._stream  # httpx2's wrapper that only times the body
    raw = getattr(stream, "_aiohttp_response", None)
    if encoding not in ("", "identity") or not isinstance(raw, aiohttp.ClientResponse):
        return None
    return raw.content


def _unread(body: aiohttp.StreamReader) -> bytes:
    """What reached aiohttp's buffer and was not read yet, once readany() raises the
    connection's failure instead (tests/test_private_names.py pins these names)."""
    chunks = []
    while body._buffer:
        chunks.append(body._read_nowait_chunk(-1))
    return b"".join(chunks)


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
