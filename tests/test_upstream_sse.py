"""The upstream's raw event reader, against the real fake server over HTTP.

The body is parsed below the SDK (raw server-sent events and jiter) for its CPU cost; the
SDK's own typed loop is the reference: for the same stream both must read the same text,
finish reason and usage, and fail the same ways.
"""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

from conversations import upstream, upstream_errors, upstream_sse
from tests.fake_openai import Error, FakeUpstream, Stream

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hi"}]


def _config(fake: FakeUpstream) -> upstream.UpstreamConfig:
    return upstream.UpstreamConfig(base_url=fake.base_url, api_key="test-key")


async def _read(fake: FakeUpstream) -> list[upstream_sse.StreamEvent]:
    stream = await upstream.open_stream(_config(fake), model="m", messages=MESSAGES)
    try:
        return [event async for events in stream.batches() for event in events]
    finally:
        await stream.close()


async def _read_typed(fake: FakeUpstream) -> list[upstream_sse.StreamEvent]:
    client = AsyncOpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0)
    events = []
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.usage is not None:
            u = chunk.usage
            usage = upstream_sse.Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens)
            events.append(upstream_sse.StreamEvent(usage=usage))
        for choice in chunk.choices:
            text = choice.delta.content if choice.delta is not None else None
            if text or choice.finish_reason:
                events.append(upstream_sse.StreamEvent(text or "", choice.finish_reason))
    await client.close()
    return events


@pytest.mark.parametrize(
    "reply",
    [
        Stream(["Hello", ", ", "wörld", " ✓", "\n\n```py\nx = 1\n```"]),
        Stream(["no usage"], report_usage=False, finish_reason="length"),
        Stream(["no role chunk", ""], role_chunk=False, usage={"prompt_tokens": 3}),
    ],
)
async def test_raw_reader_reads_what_the_sdk_typed_loop_reads(
    fake_server: FakeUpstream, reply: Stream
) -> None:
    fake_server.reset()
    fake_server.enqueue(reply, reply)
    typed = await _read_typed(fake_server)
    raw = await _read(fake_server)
    assert raw == typed
    assert "".join(e.text for e in raw) == "".join(reply.pieces)


async def test_an_error_event_mid_stream_is_a_stream_error(fake_server: FakeUpstream) -> None:
    fake_server.reset()
    fake_server.enqueue(Stream(["one", "two", "three"], error_event_after=1))
    with pytest.raises(upstream_errors.UpstreamError) as caught:
        await _read(fake_server)
    assert caught.value.kind is upstream_errors.ErrorKind.STREAM_ERROR


async def test_a_malformed_chunk_is_a_protocol_error(fake_server: FakeUpstream) -> None:
    fake_server.reset()
    fake_server.enqueue(Stream(["one", "two", "three"], malformed_after=1))
    with pytest.raises(upstream_errors.UpstreamError) as caught:
        await _read(fake_server)
    assert caught.value.kind is upstream_errors.ErrorKind.PROTOCOL


async def test_a_dropped_connection_mid_stream_is_a_connection_error(
    fake_server: FakeUpstream,
) -> None:
    fake_server.reset()
    fake_server.enqueue(Stream(["one", "two", "three"], drop_after=1))
    with pytest.raises(upstream_errors.UpstreamError) as caught:
        await _read(fake_server)
    assert caught.value.kind is upstream_errors.ErrorKind.CONNECTION
    assert caught.value.retryable


async def test_status_errors_are_raised_when_the_stream_opens(fake_server: FakeUpstream) -> None:
    fake_server.reset()
    fake_server.enqueue(Error(429, headers={"retry-after": "7"}))
    with pytest.raises(upstream_errors.UpstreamError) as caught:
        await upstream.open_stream(_config(fake_server), model="m", messages=MESSAGES)
    assert caught.value.kind is upstream_errors.ErrorKind.RATE_LIMITED
    assert caught.value.retry_after == 7.0


async def test_closing_mid_stream_hangs_up_on_the_upstream(fake_server: FakeUpstream) -> None:
    fake_server.reset()
    fake_server.enqueue(Stream(["x"] * 500, interval=0.01))
    stream = await upstream.open_stream(_config(fake_server), model="m", messages=MESSAGES)
    seen = 0
    async for events in stream.batches():
        seen += len(events)
        if seen >= 3:
            break
    await stream.close()
    log = fake_server.completions()[-1]
    assert await log.await_closed(2.0)
    assert not log.completed


async def test_events_split_anywhere_and_crlf_lines_parse_the_same() -> None:
    body = (
        b": keep-alive\r\n\r\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"a\\r\\nb"},'
        b'"finish_reason":null}]}\r\n\r\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    for size in (1, 2, 3, 7, len(body)):
        parser = upstream_sse.SSEParser()
        datas = [d for i in range(0, len(body), size) for d in parser.feed(body[i : i + size])]
        assert len(datas) == 3, size
        events = [
            e for d in datas[:2] for e in upstream_sse._events(upstream_sse.jiter.from_json(d))
        ]
        assert events == [
            upstream_sse.StreamEvent(text="a\r\nb"),
            upstream_sse.StreamEvent(finish_reason="stop"),
        ]
        assert datas[2] == b"[DONE]"


async def test_a_service_that_cannot_be_reached_is_not_a_lost_connection() -> None:
    """No connection was ever made: the page must not say it was lost."""
    from tests.live import free_port

    config = upstream.UpstreamConfig(
        base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k", connect_timeout=2
    )
    with pytest.raises(upstream_errors.UpstreamError) as caught:
        await upstream.open_stream(config, model="m", messages=MESSAGES)
    assert caught.value.kind is upstream_errors.ErrorKind.UNREACHABLE
    assert caught.value.user_message == "Could not reach the model service."
    assert caught.value.retryable


async def test_the_body_is_read_straight_from_aiohttp_under_the_sdk(fake: FakeUpstream) -> None:
    # httpx2 wraps the transport's stream (BoundAsyncStream): unless it is unwrapped, every
    # read goes through httpx2's four async iterators instead, silently and slower.
    fake.enqueue(Stream(["straight"]))
    stream = await upstream.open_stream(_config(fake), model="m", messages=MESSAGES)
    try:
        assert stream._body is not None
        assert [e.text async for events in stream.batches() for e in events if e.text] == [
            "straight"
        ]
    finally:
        await stream.close()


async def test_text_that_arrived_while_the_reader_paused_survives_a_dropped_connection(
    fake: FakeUpstream,
) -> None:
    # A generation does not read between frames; when the connection drops meanwhile,
    # aiohttp raises the failure before handing over what it already had.
    import asyncio

    fake.enqueue(Stream([f"p{i} " for i in range(8)], interval=0.01, drop_after=5))
    stream = await upstream.open_stream(_config(fake), model="m", messages=MESSAGES)
    texts: list[str] = []
    ready_after_pause = False

    async def read_pausing() -> None:
        nonlocal ready_after_pause
        async for events in stream.batches():
            texts.extend(event.text for event in events if event.text)
            if texts == ["p0 "]:
                await asyncio.sleep(0.3)  # the rest arrives, then the connection drops
                ready_after_pause = stream.ready()

    try:
        with pytest.raises(upstream_errors.UpstreamError):
            await read_pausing()
    finally:
        await stream.close()
    assert ready_after_pause
    assert "".join(texts) == "p0 p1 p2 p3 p4 "


async def test_the_stream_is_asked_for_uncompressed(fake: FakeUpstream) -> None:
    # A compressed body would be read lazily through httpx2's decoder (see upstream.py).
    fake.enqueue(Stream(["plain"]))
    await _read(fake)
    assert fake.completions()[0].headers["accept-encoding"] == "identity"
