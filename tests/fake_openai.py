"""A real OpenAI-compatible HTTP server on 127.0.0.1, with fault modes.

The app talks to it through the real openai SDK, so everything between a chunk leaving
an upstream and a frame reaching a browser is exercised. It runs its own event loop in a
daemon thread, speaks HTTP/1.1 with keep-alive and chunked responses, and watches every
connection for the client hanging up while it streams, so a test can assert that Stop
really closed the upstream connection, and how fast.

Run alone for benchmarks: `python -m tests.fake_openai --port 8765 --pieces 300 --rate 30`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# --- replies ------------------------------------------------------------------------------


@dataclass
class Stream:
    """A streamed chat completion; the *_after faults trigger after N content chunks."""

    pieces: list[str] = field(default_factory=lambda: ["Hello", ", ", "world", "!"])
    interval: float = 0.0
    first_delay: float = 0.0
    finish_reason: str | None = "stop"
    usage: dict[str, int] | None = None
    # False: like servers that ignore stream_options.include_usage, no usage chunk at all.
    report_usage: bool = True
    role_chunk: bool = True
    drop_after: int | None = None
    hang_after: int | None = None
    malformed_after: int | None = None
    error_event_after: int | None = None
    done: bool = True
    model: str | None = None


@dataclass
class Error:
    status: int
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """Read the request and never answer."""


@dataclass
class Drop:
    """Read the request and close the connection without a response."""


@dataclass
class Json:
    body: dict[str, Any]
    status: int = 200


Reply = Stream | Error | Hang | Drop | Json

ERROR_TYPES = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    403: ("permission_denied", "You are not allowed to use this model."),
    404: ("invalid_request_error", "The model does not exist."),
    408: ("timeout", "Request timed out."),
    409: ("conflict", "Conflict."),
    429: ("rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", "The server had an error while processing your request."),
    502: ("server_error", "Bad gateway."),
    503: ("server_error", "The engine is currently overloaded."),
}
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
MODERATION_CATEGORIES = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
]


@dataclass
class RequestLog:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)
    chunks_sent: int = 0
    chunk_times: list[float] = field(default_factory=list)
    completed: bool = False
    client_closed_at: float | None = None
    finished_at: float | None = None
    closed: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def wait_closed(self, timeout: float) -> bool:
        return self.closed.wait(timeout)

    async def await_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.closed.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True


class ClientGone(Exception):
    pass


# --- the server ---------------------------------------------------------------------------


class FakeUpstream:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.models: list[str] = ["fake-model", "fake-model-mini"]
        self.default: Reply = Stream()
        self.requests: list[RequestLog] = []
        self._queue: deque[Reply] = deque()
        self._moderation_queue: deque[Reply] = deque()
        self._plain_queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # Requests being answered at once, and the most there ever were (since reset).
        self.active = 0
        self.peak_active = 0

    # -- control (any thread) --
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def enqueue_plain(self, *replies: Reply) -> None:
        """Replies for non-streaming chat completions (titles), kept apart from streams."""
        with self._lock:
            self._plain_queue.extend(replies)

    def enqueue_moderation(self, *replies: Reply) -> None:
        with self._lock:
            self._moderation_queue.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._moderation_queue.clear()
            self._plain_queue.clear()
            self.requests = []
            self.peak_active = self.active
            self.default = Stream()
            self.models = ["fake-model", "fake-model-mini"]

    def completions(self) -> list[RequestLog]:
        """Streaming chat completion requests (the answers)."""
        return [
            r
            for r in self.requests
            if r.path.endswith("/chat/completions")
            and isinstance(r.body, dict)
            and r.body.get("stream")
        ]

    def plain_completions(self) -> list[RequestLog]:
        """Non-streaming chat completion requests (titles)."""
        return [
            r
            for r in self.requests
            if r.path.endswith("/chat/completions")
            and not (isinstance(r.body, dict) and r.body.get("stream"))
        ]

    def wait_for_request(self, n: int = 1, timeout: float = 5.0) -> RequestLog:
        deadline = time.monotonic() + timeout
        while len(self.completions()) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} completion requests within {timeout}s")
            time.sleep(0.005)
        return self.completions()[n - 1]

    async def await_request(self, n: int = 1, timeout: float = 5.0) -> RequestLog:
        deadline = time.monotonic() + timeout
        while len(self.completions()) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} completion requests within {timeout}s")
            await asyncio.sleep(0.005)
        return self.completions()[n - 1]

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._connection, self.host, self.port)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            loop.close()

    def _next(self, queue: deque[Reply], default: Reply | None) -> Reply | None:
        with self._lock:
            return queue.popleft() if queue else default

    # -- HTTP --
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                keep_alive = await self._handle(request, reader, writer)
                if not keep_alive:
                    return
        except (ConnectionError, ClientGone, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> RequestLog | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = b""
        if int(headers.get("content-length", "0") or 0):
            raw = await reader.readexactly(int(headers["content-length"]))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        log = RequestLog(method=method, path=path.split("?")[0], headers=headers, body=body)
        with self._lock:
            self.requests.append(log)
        return log

    async def _handle(
        self, log: RequestLog, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        rid = f"req_fake_{next(self._counter)}"
        with self._lock:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
        try:
            if log.method == "GET" and log.path == "/v1/models":
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in self.models
                ]
                await self._json(writer, 200, {"object": "list", "data": data}, rid)
                return True
            if log.method == "POST" and log.path == "/v1/moderations":
                return await self._reply(
                    self._next(self._moderation_queue, None) or self._moderation(log),
                    log,
                    reader,
                    writer,
                    rid,
                )
            if log.method == "POST" and log.path == "/v1/chat/completions":
                streaming = isinstance(log.body, dict) and bool(log.body.get("stream"))
                queue = self._queue if streaming else self._plain_queue
                reply = self._next(queue, None)
                if reply is None:
                    reply = self.default if streaming else self._completion(log)
                if isinstance(reply, Stream) and not streaming:
                    reply = self._completion(log, "".join(reply.pieces))
                return await self._reply(reply, log, reader, writer, rid)
            await self._json(writer, 404, _error_body(404), rid)
            return True
        finally:
            log.finished_at = time.monotonic()
            with self._lock:
                self.active -= 1
            log.finished.set()

    async def _reply(
        self,
        reply: Reply,
        log: RequestLog,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rid: str,
    ) -> bool:
        if isinstance(reply, Json):
            await self._json(writer, reply.status, reply.body, rid)
            return True
        if isinstance(reply, Error):
            body = reply.body if reply.body is not None else _error_body(reply.status)
            await self._json(writer, reply.status, body, rid, reply.headers)
            return True
        if isinstance(reply, Drop):
            writer.transport.abort()
            return False
        if isinstance(reply, Hang):
            await self._watch(log, reader, None)
            return False
        return await self._stream(reply, log, reader, writer, rid)

    async def _json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: dict[str, Any] | str,
        rid: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = (body if isinstance(body, str) else json.dumps(body)).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nx-request-id: {rid}\r\n{extra}\r\n".encode()
            + payload
        )
        await writer.drain()

    async def _watch(
        self, log: RequestLog, reader: asyncio.StreamReader, work: asyncio.Task[Any] | None
    ) -> None:
        """Wait for `work` (or forever); if the client hangs up first, record it."""
        eof = asyncio.ensure_future(reader.read(65536))
        waiting = {eof} if work is None else {eof, work}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if eof.done() and not eof.cancelled():
            eof.exception()  # a reset is a hang-up too; mark the exception as seen
        if eof in done and (work is None or not work.done()):
            log.client_closed_at = time.monotonic()
            log.closed.set()
            if work is not None:
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
            return
        eof.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await eof
        if work is not None:
            work.result()  # re-raise what the writer raised

    async def _stream(
        self,
        reply: Stream,
        log: RequestLog,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rid: str,
    ) -> bool:
        work = asyncio.ensure_future(self._write_stream(reply, log, writer, rid))
        await self._watch(log, reader, work)
        return log.completed and not log.closed.is_set()

    async def _write_stream(
        self, reply: Stream, log: RequestLog, writer: asyncio.StreamWriter, rid: str
    ) -> None:
        body = log.body if isinstance(log.body, dict) else {}
        model = reply.model or body.get("model") or "fake-model"
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        cid = f"chatcmpl-fake{next(self._counter)}"
        created = int(time.time())

        async def send(data: str) -> None:
            raw = data.encode()
            writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [choice],
                "usage": None,
            }
            return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"

        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
            + f"x-request-id: {rid}\r\n\r\n".encode()
        )
        if reply.role_chunk:
            await send(chunk({"role": "assistant", "content": "", "refusal": None}))
        for index, piece in enumerate(reply.pieces):
            if reply.drop_after is not None and index == reply.drop_after:
                writer.transport.abort()
                raise ClientGone  # not the client, but this connection is over
            if reply.hang_after is not None and index == reply.hang_after:
                await asyncio.Event().wait()
            if reply.malformed_after is not None and index == reply.malformed_after:
                await send('data: {"choices": [\n\n')
            if reply.error_event_after is not None and index == reply.error_event_after:
                error = {
                    "error": {
                        "message": "The server had an error while processing your request.",
                        "type": "server_error",
                        "code": None,
                    }
                }
                await send(f"data: {json.dumps(error)}\n\n")
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                log.completed = True
                return
            if index and reply.interval:
                await asyncio.sleep(reply.interval)
            await send(chunk({"content": piece}))
            log.chunks_sent += 1
            log.chunk_times.append(time.time())
        if reply.finish_reason is not None:
            await send(chunk({}, reply.finish_reason))
        if include_usage and reply.report_usage:
            usage = reply.usage or {
                "prompt_tokens": 7,
                "completion_tokens": len(reply.pieces),
                "total_tokens": 7 + len(reply.pieces),
            }
            payload: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [],
                "usage": usage,
            }
            await send(f"data: {json.dumps(payload, separators=(',', ':'))}\n\n")
        if reply.done:
            await send("data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        log.completed = True

    def _completion(self, log: RequestLog, text: str | None = None) -> Json:
        body = log.body if isinstance(log.body, dict) else {}
        if text is None:
            default = self.default
            text = "".join(default.pieces) if isinstance(default, Stream) else "Fake answer"
        return Json(
            {
                "id": f"chatcmpl-fake{next(self._counter)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or "fake-model",
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            }
        )

    def _moderation(self, log: RequestLog) -> Json:
        body = log.body if isinstance(log.body, dict) else {}
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        result = {
            "flagged": False,
            "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
            "category_scores": dict.fromkeys(MODERATION_CATEGORIES, 0.0),
        }
        return Json(
            {"id": "modr-fake", "model": "omni-moderation-latest", "results": [result] * count}
        )


def _error_body(status: int) -> dict[str, Any]:
    kind, message = ERROR_TYPES.get(status, ("server_error", "Error."))
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pieces", type=int, default=300)
    parser.add_argument("--rate", type=float, default=30.0, help="content chunks per second")
    args = parser.parse_args(argv)
    server = FakeUpstream(port=args.port)
    server.default = Stream([f"t{i} " for i in range(args.pieces)], interval=1 / args.rate)
    server.start()
    print(f"READY {server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()
