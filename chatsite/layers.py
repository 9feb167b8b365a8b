"""Channel layers: in memory (one process) with a cheaper expiry sweep, and Redis pub/sub
(several processes) with a bounded queue per channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from copy import deepcopy
from typing import Any

from channels import layers
from channels.exceptions import ChannelFull
from channels_redis import pubsub
from channels_redis import utils as redis_utils
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Values a message may hold for a shallow copy to keep its receivers apart.
_FLAT = frozenset({str, int, float, bool, type(None)})

# Seconds between two sweeps for expired messages and group memberships.
SWEEP_INTERVAL = 1.0


def _settle(
    batch: list[tuple[str, bytes, asyncio.Future[None]]], error: BaseException | None
) -> None:
    """Tell each publisher of a batch how it went."""
    for channel, _, sent in batch:
        if sent.done():
            continue  # its publisher was cancelled
        if isinstance(error, asyncio.CancelledError):
            sent.cancel()
        elif error is None or pubsub_group(channel):
            sent.set_result(None)
        else:
            sent.set_exception(error)


def pubsub_group(channel: str) -> bool:
    """A group's pub/sub channel (live frames to every tab) rather than one consumer's."""
    return "__group__" in channel


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    """channels' in-memory layer, cheaper per frame.

    The stock layer walks every channel and every group on each receive and group send,
    so with N open sockets each frame costs O(N) and the process O(N²): 5% of its time
    with 50 answers streaming, and growing. Here the sweep runs at most once a second;
    expiry (60 s here) is unchanged, a message is dropped at most a second later than
    before, which no reader can tell. A group send also puts the message in each queue
    directly rather than through a task per member.
    """

    _swept_at: float = float("-inf")

    def _queue(self, channel: str) -> asyncio.Queue[Any]:
        # The stock layer builds a queue on every send and receive (setdefault's argument)
        # and drops it at once when the channel has one: two per frame per socket.
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        # Each receiver gets a copy of its own, as with the stock layer; frames are flat
        # (strings and numbers), for which a shallow copy is that copy, at a tenth of
        # deepcopy's cost.
        flat = all(type(value) in _FLAT for value in message.values())
        copied = dict(message) if flat else deepcopy(message)
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, copied))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)  # as the stock layer: no idle queues kept
        return message

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < SWEEP_INTERVAL:
            return
        self._swept_at = now
        super()._clean_expired()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            # As the stock layer: a full channel (1,000 waiting) misses this message.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)  # never suspends: a queue put


class RedisChannelLayer(pubsub.RedisPubSubChannelLayer):
    """Redis for several processes: pub/sub, with a bounded queue per channel.

    channels_redis's list-based layer receives every message of a process through one
    loop of round trips (BZPOPMIN, then a clean-up, one message at a time). With 50
    answers streaming that loop fell seconds behind, its queues hit their capacity and
    group sends were dropped without a word: most readers saw nothing. Pub/sub pushes
    each message to the processes that listen for it, with no round trip per message on
    the receiving side, so a frame costs about what it costs in memory.

    What pub/sub does not do, and why that is enough here: a message published while a
    process is not connected to Redis is lost (frames are a live view of what the
    database keeps; a page that misses one asks for a snapshot, a page that reconnects
    catches up), and nothing expires (nothing is queued in Redis). So a group send while
    Redis is down is logged and dropped, not raised into the answer that sent it; a send
    to one channel (Stop, a snapshot) raises. What upstream's pub/sub layer does not do
    and this does: a channel holds at most `capacity` messages, so a reader that does not
    keep up misses messages (as with the other layers) instead of growing without end;
    and publishes waiting at the same moment go out in one pipeline.
    """

    def __init__(self, *args: Any, capacity: int = 1000, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capacity = capacity

    def _get_layer(self) -> _RedisLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = _RedisLoopLayer(
                *self._args, capacity=self.capacity, channel_layer=self, **self._kwargs
            )
            self._layers[loop] = layer
            redis_utils._wrap_close(self, loop)  # flushed when its loop closes, as upstream
        return layer


class _RedisLoopLayer(pubsub.RedisPubSubLoopLayer):
    def __init__(self, hosts: Any = None, *, capacity: int, **kwargs: Any) -> None:
        super().__init__(hosts, **kwargs)
        self.capacity = capacity
        self._shards = [_RedisShard(host, self) for host in redis_utils.decode_hosts(hosts)]

    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = asyncio.Queue(maxsize=self.capacity)
        await self._get_shard(channel).subscribe(channel)


class _RedisShard(pubsub.RedisSingleShardConnection):
    def __init__(self, host: Any, channel_layer: Any) -> None:
        super().__init__(host, channel_layer)
        self._outbox: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._reported_at = float("-inf")

    async def publish(self, channel: str, message: bytes) -> None:
        # Upstream publishes under the shard's lock, one round trip each: with 50 answers
        # streaming, every frame waited for all those before it to be acknowledged. Here
        # whatever is waiting goes out in one pipeline, in the order it was published.
        sent = asyncio.get_running_loop().create_future()
        self._outbox.append((channel, message, sent))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="redis-layer-writer")
        await sent

    async def _write(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                self._ensure_redis()
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, message, _ in batch:
                        pipe.publish(channel, message)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # Redis is down or restarting. Frames to a group are a live view of what the
                # database keeps: they are lost, like any message published while a process
                # is away, and the answer goes on (a page that misses a frame asks for a
                # snapshot). A message to one channel (Stop, a snapshot) is an error for
                # its sender. The pool reconnects on the next batch.
                self._report(exc, len(batch))
                _settle(batch, exc)
            except asyncio.CancelledError as exc:
                _settle(batch, exc)
                raise
            else:
                _settle(batch, None)

    def _report(self, exc: Exception, count: int) -> None:
        now = time.monotonic()
        if now - self._reported_at >= 5:  # once every few seconds, not once a frame
            self._reported_at = now
            log.warning("Redis unreachable (%s): %d message(s) not delivered", exc, count)

    def _receive_message(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        layer = self.channel_layer
        # A message to one channel, or to a group: every member of it in this process.
        members = (name,) if name in layer.channels else tuple(layer.groups.get(name, ()))
        for channel in members:
            queue = layer.channels.get(channel)
            if queue is None:
                continue
            try:
                queue.put_nowait(message["data"])
            except asyncio.QueueFull:
                # A reader this far behind misses this message, as with the other layers
                # (its page sees the gap and asks the answer for a snapshot).
                log.warning("channel %s is full: a message was dropped", channel)
