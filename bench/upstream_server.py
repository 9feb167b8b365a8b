"""A fast OpenAI-compatible streaming server for the benchmark, with a log of every token.

Run as its own process (`python -m bench.upstream_server --port P --models bench-30x150`).
A model named `bench-<rate>x<chunks>` streams `<chunks>` chunks at `<rate>` chunks per
second. Chunk number `seq` carries the marker `zq<seq>` inside realistic markdown (a
heading, paragraphs with bold, code and links, a list, a code fence), so a client can tell
from any frame which tokens it holds. Each request names its stream in the last user
message (`bench-<id>`); the log keeps, per stream, when the request arrived, when each
chunk was written to the socket and, if the client hung up before the end, when.

One scheduler task writes every due chunk of every stream (a heap of due times), so the
server's own cost stays small next to the app's at hundreds of streams. Time is
`time.monotonic()`: on Linux one clock for every process on the machine, which is what
lets the benchmark subtract the server's send time from a client's receive time.

    GET  /v1/models        the models given on the command line
    POST /v1/chat/completions   streaming or not (titles)
    GET  /bench/log        {"streams": {id: {...}}} and clears it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

MARKER = "zq"
_STREAM_ID = re.compile(r"bench-(\d+)")
_MODEL = re.compile(r"^bench-(\d+(?:\.\d+)?)x(\d+)$")


def chunk_text(seq: int) -> str:
    """The text of chunk `seq`: a marker inside a 60-chunk cycle of typical markdown."""
    p = seq % 60
    m = f"{MARKER}{seq}"
    if p == 0:
        return f"## Part {m}\n\n"
    if p < 25:
        return {
            3: f" **{m}",
            5: f" {m}**,",
            8: f" `{m}`",
            12: f" [{m}](https://example.com/{seq})",
            24: f" {m}.\n\n",
        }.get(p, f" {m}")
    if p < 37:
        return f"- item {m}\n" + ("\n" if p == 36 else "")
    if p == 37:
        return f"```python\ndef {m}(x):\n"
    if p < 48:
        return f"    return {m} + x\n"
    if p == 48:
        return "```\n\n"  # carries no marker: the client counts markers, not chunks
    return f" {m}" + (".\n\n" if p == 59 else "")


def marker_count(chunks: int) -> int:
    """How many of the first `chunks` chunks carry a marker."""
    return sum(1 for seq in range(chunks) if MARKER in chunk_text(seq))


def parse_model(name: str) -> tuple[float, int] | None:
    match = _MODEL.match(name)
    return (float(match.group(1)), int(match.group(2))) if match else None


@dataclass
class Stream:
    id: str
    rate: float
    chunks: int
    requested_at: float
    sent: list[float] = field(default_factory=list)
    closed_early_at: float | None = None
    finished: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "chunks": self.chunks,
            "requested_at": self.requested_at,
            "sent": self.sent,
            "closed_early_at": self.closed_early_at,
            "finished": self.finished,
        }


class Upstream:
    def __init__(self, models: list[str]) -> None:
        self.models = models
        self.log: dict[str, Stream] = {}
        self._heap: list[tuple[float, int, Stream, BenchProtocol]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._anonymous = itertools.count(1)

    def start(self, stream: Stream, proto: BenchProtocol) -> None:
        self.log[stream.id] = stream
        heapq.heappush(self._heap, (stream.requested_at, next(self._order), stream, proto))
        self._wake.set()

    async def run(self) -> None:
        heap = self._heap
        while True:
            if not heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                _, _, stream, proto = heapq.heappop(heap)
                if proto.closed:
                    continue
                seq = len(stream.sent)
                proto.send_chunk(stream, seq)
                stream.sent.append(time.monotonic())
                if seq + 1 < stream.chunks:
                    # Due times follow the schedule, not the last send: no drift under load.
                    nxt = stream.requested_at + (seq + 1) / stream.rate
                    heapq.heappush(heap, (nxt, next(self._order), stream, proto))
                else:
                    proto.send_end(stream)
            if heap:
                self._wake.clear()
                delay = heap[0][0] - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):  # due, or woken by a new stream
                        await asyncio.wait_for(self._wake.wait(), delay)

    def stream_id(self, body: dict[str, Any]) -> str:
        for message in reversed(body.get("messages") or []):
            if message.get("role") == "user":
                match = _STREAM_ID.search(str(message.get("content", "")))
                if match:
                    return match.group(1)
                break
        return f"anonymous-{next(self._anonymous)}"


def _sse(payload: dict[str, Any]) -> bytes:
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)  # one HTTP chunk per event


def _chunk(stream: Stream, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-bench-{stream.id}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": f"bench-{stream.rate:g}x{stream.chunks}",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class BenchProtocol(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.streaming: Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        stream = self.streaming
        if stream is not None and not stream.finished and stream.closed_early_at is None:
            stream.closed_early_at = time.monotonic()  # the client hung up mid-answer

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4 : head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length :]
            method, path, _ = head[0].split(" ", 2)
            self.handle(method, path.split("?")[0], body)

    def reply(self, status: str, payload: Any) -> None:
        assert self.transport is not None
        data = json.dumps(payload).encode()
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status.encode(), len(data), data)
        )

    def handle(self, method: str, path: str, raw: bytes) -> None:
        if method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "bench"} for m in self.upstream.models]
            self.reply("200 OK", {"object": "list", "data": data})
        elif method == "GET" and path == "/bench/log":
            streams = {k: s.as_json() for k, s in self.upstream.log.items()}
            self.upstream.log.clear()
            self.reply("200 OK", {"streams": streams})
        elif method == "POST" and path == "/v1/chat/completions":
            body = json.loads(raw or b"{}")
            shape = parse_model(str(body.get("model", "")))
            if shape is None:
                self.reply("404 Not Found", {"error": {"message": "no such model"}})
            elif not body.get("stream"):
                self.reply(
                    "200 OK",
                    {
                        "id": "chatcmpl-bench",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "Benchmark title"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                    },
                )
            else:
                stream = Stream(
                    id=self.upstream.stream_id(body),
                    rate=shape[0],
                    chunks=shape[1],
                    requested_at=time.monotonic(),
                )
                assert self.transport is not None
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\nx-request-id: bench-%s\r\n\r\n"
                    % stream.id.encode()
                )
                self.transport.write(_sse(_chunk(stream, {"role": "assistant", "content": ""})))
                self.streaming = stream
                self.upstream.start(stream, self)
        else:
            self.reply("404 Not Found", {"error": {"message": "not found"}})

    def send_chunk(self, stream: Stream, seq: int) -> None:
        assert self.transport is not None
        self.transport.write(_sse(_chunk(stream, {"content": chunk_text(seq)})))

    def send_end(self, stream: Stream) -> None:
        assert self.transport is not None
        stream.finished = True
        self.streaming = None
        usage = {"prompt_tokens": 20, "completion_tokens": stream.chunks}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        end = _chunk(stream, {}, "stop")
        tail = {**_chunk(stream, {}), "choices": [], "usage": usage}
        done = b"data: [DONE]\n\n"
        self.transport.write(
            _sse(end) + _sse(tail) + b"%x\r\n%s\r\n" % (len(done), done) + b"0\r\n\r\n"
        )


async def serve(port: int, models: list[str]) -> None:
    upstream = Upstream(models)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: BenchProtocol(upstream), "127.0.0.1", port)
    print("ready", flush=True)  # the benchmark waits for this line
    async with server:
        await upstream.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", default="bench-30x150")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.models.split(",")))


if __name__ == "__main__":
    main()
