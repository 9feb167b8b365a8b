"""Channel layers: in memory without a sweep of every channel per frame; Redis pub/sub that
keeps up with many answers at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels import layers
from redis.exceptions import RedisError

from chatsite.layers import InMemoryChannelLayer, RedisChannelLayer
from tests.servers import free_port, redis_server


async def test_a_group_send_reaches_every_member_in_order_and_a_full_one_misses_it() -> None:
    layer = InMemoryChannelLayer(capacity=2)
    for name in ("a", "b", "full"):
        await layer.group_add("g", f"specific.{name}")
    await layer.send("specific.full", {"type": "x", "n": -2})
    await layer.send("specific.full", {"type": "x", "n": -1})
    for n in range(2):
        await layer.group_send("g", {"type": "x", "n": n})
    for name in ("a", "b"):
        assert [(await layer.receive(f"specific.{name}"))["n"] for _ in range(2)] == [0, 1]
    # The full member kept what it had and missed the rest, as with channels' own layer.
    assert [(await layer.receive("specific.full"))["n"] for _ in range(2)] == [-2, -1]
    assert layer.channels.get("specific.full") is None


async def test_expired_messages_are_still_dropped() -> None:
    layer = InMemoryChannelLayer(expiry=0.1)
    await layer.group_add("g", "specific.gone")
    await layer.send("specific.gone", {"type": "old"})
    await asyncio.sleep(1.1)  # past the expiry and the sweep interval
    await layer.send("specific.other", {"type": "new"})
    assert (await layer.receive("specific.other"))["type"] == "new"
    assert "specific.gone" not in layer.channels
    assert "specific.gone" not in layer.groups.get("g", {})  # an expired member leaves


async def test_frames_do_not_sweep_every_channel_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sweeps = 0
    stock = layers.InMemoryChannelLayer._clean_expired

    def counted(self: Any) -> None:
        nonlocal sweeps
        sweeps += 1
        stock(self)

    monkeypatch.setattr(layers.InMemoryChannelLayer, "_clean_expired", counted)
    layer = InMemoryChannelLayer()
    for i in range(300):  # 300 open sockets, each with a frame waiting
        await layer.send(f"specific.idle{i}", {"type": "x"})
    await layer.group_add("g", "specific.reader")
    for _ in range(200):  # 200 frames of one answer, read as they come
        await layer.group_send("g", {"type": "x"})
        await layer.receive("specific.reader")
    assert sweeps <= 2  # the stock layer: 400 sweeps of 300 channels


# --- Redis (several processes): a real redis-server from Debian's package ----------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def processes(redis_url: str) -> AsyncIterator[list[RedisChannelLayer]]:
    """Two layers on one Redis: what two daphne processes have."""
    made = [RedisChannelLayer(hosts=[{"address": redis_url}], capacity=1000) for _ in "ab"]
    yield made
    for layer in made:
        await layer.flush()


async def _read(layer: RedisChannelLayer, channel: str, count: int) -> list[Any]:
    return [(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(count)]


async def test_redis_many_answers_at_once_reach_every_reader_whole_and_in_order(
    processes: list[RedisChannelLayer],
) -> None:
    # channels_redis's list-based layer lost most of these (50 answers streaming at once:
    # 44 of 50 readers got nothing), silently.
    here, there = processes
    readers = [await (here if i % 2 else there).new_channel() for i in range(50)]
    for i, channel in enumerate(readers):
        await (here if i % 2 else there).group_add(f"answer{i}", channel)

    async def answer(i: int) -> None:
        for n in range(100):
            await here.group_send(f"answer{i}", {"type": "chat.frame", "n": n})

    reads = [_read(here if i % 2 else there, c, 100) for i, c in enumerate(readers)]
    *_, received = await asyncio.gather(
        asyncio.gather(*(answer(i) for i in range(50))), asyncio.gather(*reads)
    )
    assert received == [list(range(100))] * 50


async def test_redis_a_message_reaches_one_channel_in_another_process(
    processes: list[RedisChannelLayer],
) -> None:
    # As Stop from a tab on process B reaches the answer running on process A.
    here, there = processes
    channel = await there.new_channel()
    other = await there.new_channel()
    await here.send(channel, {"type": "generation.stop", "n": 1})
    assert await _read(there, channel, 1) == [1]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(there.receive(other), 0.3)


async def test_redis_a_reader_that_falls_behind_misses_messages_but_not_the_others(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    layer = RedisChannelLayer(hosts=[{"address": redis_url}], capacity=3)
    try:
        slow, fast = await layer.new_channel(), await layer.new_channel()
        for channel in (slow, fast):
            await layer.group_add("g", channel)
        for n in range(5):
            await layer.group_send("g", {"type": "x", "n": n})
            await layer.receive(fast)
        await layer.group_send("g", {"type": "x", "n": 5})  # a marker: all before it arrived
        assert await _read(layer, fast, 1) == [5]
        assert await _read(layer, slow, 3) == [0, 1, 2]  # bounded: not all five kept
        assert "is full: a message was dropped" in caplog.text
    finally:
        await layer.flush()


async def test_redis_down_frames_are_dropped_and_logged_stop_fails_loudly_then_all_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    with redis_server(tmp_path, port) as url:
        layer = RedisChannelLayer(hosts=[{"address": url}])
        reader = await layer.new_channel()
        await layer.group_add("g", reader)
        await layer.group_send("g", {"type": "x", "n": 1})
        assert await _read(layer, reader, 1) == [1]
    try:
        # Down: a frame is lost, not raised into the answer that sent it (and no hang)...
        await asyncio.wait_for(layer.group_send("g", {"type": "x", "n": 2}), 10)
        assert "Redis unreachable" in caplog.text
        # ...but a message to one channel (Stop from another process) is an error.
        with pytest.raises(RedisError):
            await asyncio.wait_for(layer.send(reader, {"type": "x", "n": 3}), 10)
        with redis_server(tmp_path, port):  # back, where the clients expect it
            for _ in range(100):  # the subscriber reconnects within a second or so
                await layer.group_send("g", {"type": "x", "n": 4})
                with contextlib.suppress(TimeoutError):
                    assert await asyncio.wait_for(layer.receive(reader), 0.2) == {
                        "type": "x",
                        "n": 4,
                    }
                    break
            else:
                pytest.fail("frames did not flow again after Redis came back")
    finally:
        await layer.flush()
