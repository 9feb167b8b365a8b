"""The in-memory channel layer: stock behaviour, without a sweep of every channel per frame."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels import layers

from chatsite.layers import InMemoryChannelLayer


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
