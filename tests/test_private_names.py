"""The private names of other libraries that chatsite's code leans on still exist.

chatsite/layers.py subclasses private parts of channels and channels_redis,
chatsite/lifecycle.py reaches into Twisted's asyncio reactor, and conversations/upstream_sse.py
reads the body from aiohttp's buffer under httpx2's wrapper. pyproject.toml bounds those
libraries above (httpx2 through openai's bound); when a bound is raised, this test says at
once which name moved, rather than a socket, a shutdown or a read failing later in a way
that is hard to trace.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
from channels import layers
from channels_redis import pubsub
from channels_redis import utils as redis_utils

from chatsite.layers import InMemoryChannelLayer, RedisChannelLayer


def _methods(cls: type, *names: str) -> list[str]:
    return [name for name in names if not callable(getattr(cls, name, None))]


def test_the_in_memory_layer_internals_we_override_still_exist() -> None:
    assert _methods(layers.InMemoryChannelLayer, "_clean_expired", "send") == []
    layer = InMemoryChannelLayer()
    assert isinstance(layer.groups, dict)


def test_the_redis_pubsub_internals_we_subclass_still_exist() -> None:
    assert _methods(pubsub.RedisPubSubChannelLayer, "_get_layer") == []
    assert (
        _methods(pubsub.RedisPubSubLoopLayer, "_subscribe_to_channel", "_get_shard", "group_send")
        == []
    )
    assert (
        _methods(
            pubsub.RedisSingleShardConnection,
            "publish",
            "subscribe",
            "_ensure_redis",
            "_receive_message",
        )
        == []
    )
    assert _methods(redis_utils, "_wrap_close", "decode_hosts") == []
    # Attributes set in constructors, which layers.py reads and replaces.
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1/0"])
    assert {"_layers", "_args", "_kwargs"} <= set(vars(layer))
    loop_layer = pubsub.RedisPubSubLoopLayer(hosts=["redis://127.0.0.1:1/0"], channel_layer=layer)
    assert {"_shards", "channels", "groups"} <= set(vars(loop_layer))
    shard = loop_layer._shards[0]
    assert {"_redis", "channel_layer"} <= set(vars(shard))
    parameters = inspect.signature(pubsub.RedisSingleShardConnection.__init__).parameters
    assert list(parameters)[1:3] == ["host", "channel_layer"]


def test_the_twisted_reactor_internals_lifecycle_uses_still_exist() -> None:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    loop = asyncio.new_event_loop()
    try:
        reactor = AsyncioSelectorReactor(loop)
        assert reactor._asyncioEventloop is loop  # where the supervisor is started
        assert callable(reactor.sigInt)
        assert callable(reactor.sigTerm)
    finally:
        loop.close()


def test_the_channels_dispatch_we_replace_still_has_the_same_shape() -> None:
    # conversations/consumers.py's DirectDispatch repeats AsyncConsumer.dispatch without
    # its per-message database hop: the handler lookup must still be this function.
    from channels import consumer

    assert consumer.get_handler_name({"type": "chat.frame"}) == "chat_frame"
    source = inspect.getsource(consumer.AsyncConsumer.dispatch)
    assert "get_handler_name(message)" in source
    assert "aclose_old_connections" in source  # the hop DirectDispatch leaves out


async def test_the_sdk_aiohttp_response_body_upstream_reads_still_exists() -> None:
    # conversations/upstream_sse.py reads the body straight from the aiohttp response under
    # the SDK's httpx2 response (`_aiohttp_response`); if it moved, reads fall back to
    # httpx2's iterator, slower but correct, and this test says so.
    import aiohttp
    from httpx2._client import BoundAsyncStream
    from openai._vendor.httpx_aiohttp.transport import AiohttpResponseStream

    assert "_aiohttp_response" in inspect.getsource(AiohttpResponseStream.__init__)
    assert "self._stream = stream" in inspect.getsource(BoundAsyncStream.__init__)
    assert callable(aiohttp.StreamReader.readany)
    # What arrived before a dropped connection (upstream_sse._unread).
    assert "self._buffer" in inspect.getsource(aiohttp.StreamReader.__init__)
    assert callable(aiohttp.StreamReader._read_nowait_chunk)


@pytest.mark.parametrize(
    "package", ["channels", "channels-redis", "twisted", "daphne", "openai", "aiohttp"]
)
def test_libraries_whose_internals_we_use_have_an_upper_bound(package: str) -> None:
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    line = next(line for line in pyproject.splitlines() if line.strip().startswith(f'"{package}>'))
    assert ",<" in line, line
