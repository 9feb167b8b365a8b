"""How many requests one upstream takes at once from this process.

Local model servers answer one request at a time (llama.cpp's `llama-server` with one
slot, llama-cpp-python), and llama-cpp-python even ends the stream it is writing when
another request arrives. With `CHATSITE_UPSTREAM_CONCURRENCY` set (0: unlimited):

* answers take their turn in order, and the waiting ones are told their place;
* background requests (titles, the model list) start only when no answer runs or waits,
  and one that is running when an answer comes is cancelled on the spot, so they never
  delay an answer (nor make the server drop one, nor discard its prompt cache).

The limit holds per process: with several workers, give the local server's upstream to
one of them or divide the limit (README, Local model servers).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from django.conf import settings

from .upstream import UpstreamConfig

T = TypeVar("T")


class Busy(Exception):
    """A background request that would not wait found (or was cut by) an answer."""


class _Waiter:
    def __init__(self) -> None:
        self.granted = False
        self.moved = asyncio.Event()


class Gate:
    """One upstream's turns in one event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._queue: deque[_Waiter] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._background: set[asyncio.Task[Any]] = set()
        self._preempted: set[asyncio.Task[Any]] = set()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def acquire(self, on_wait: Callable[[int], Awaitable[None]]) -> None:
        """An answer's turn; `on_wait(ahead)` each time its place in the queue changes."""
        self._idle.clear()
        self._preempt()
        if self.running < self.limit and not self._queue:
            self.running += 1
            return
        entry = _Waiter()
        self._queue.append(entry)
        try:
            while not entry.granted:
                entry.moved.clear()  # before on_wait: a move during it is not missed
                await on_wait(self._queue.index(entry) + 1)
                if not entry.granted:
                    await entry.moved.wait()
        except BaseException:
            # Stopped (or cancelled) while waiting: leave the queue; a turn given in the
            # meantime goes to the next one.
            if entry.granted:
                self.release()
            else:
                self._queue.remove(entry)
                self._advance()
            raise

    def release(self) -> None:
        self.running -= 1
        self._advance()

    def _advance(self) -> None:
        while self._queue and self.running < self.limit:
            entry = self._queue.popleft()
            entry.granted = True
            self.running += 1
            entry.moved.set()
        for entry in self._queue:
            entry.moved.set()  # one place closer
        if self.running == 0 and not self._queue:
            self._idle.set()

    def _preempt(self) -> None:
        for task in self._background:
            if not task.done():
                self._preempted.add(task)
                task.cancel()

    async def background(self, make: Callable[[], Awaitable[T]], *, wait: bool) -> T:
        """`make()`'s result, run only while no answer runs or waits. Cut short by an
        answer, it starts again once the upstream is idle (`wait`) or raises Busy."""
        while True:
            if not self._idle.is_set():
                if not wait:
                    raise Busy
                await self._idle.wait()
                continue  # woken: check again that no answer came in between
            task: asyncio.Task[T] = asyncio.ensure_future(make())
            self._background.add(task)
            try:
                return await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if task not in self._preempted or (current is not None and current.cancelling()):
                    raise  # this request itself is being cancelled
                if not wait:
                    raise Busy from None
            finally:
                self._background.discard(task)
                self._preempted.discard(task)


# Gates by upstream and event loop: asyncio's primitives belong to one loop.
_GATES: dict[tuple[str, asyncio.AbstractEventLoop], Gate] = {}


def gate_for(config: UpstreamConfig) -> Gate | None:
    """This upstream's gate, or None when its requests are not limited."""
    limit = settings.CHATSITE_UPSTREAM_CONCURRENCY
    if limit <= 0:
        return None
    key = (config.base_url, asyncio.get_running_loop())
    gate = _GATES.get(key)
    if gate is None or gate.limit != limit:
        gate = _GATES[key] = Gate(limit)
    return gate


def gates_forget() -> None:
    """Drop every gate (tests: each runs its own event loop)."""
    _GATES.clear()


@asynccontextmanager
async def answer_turn(
    config: UpstreamConfig, *, on_wait: Callable[[int], Awaitable[None]]
) -> AsyncIterator[bool]:
    """Hold one of the upstream's turns for an answer's request; yields whether it had to
    wait for it."""
    gate = gate_for(config)
    if gate is None:
        yield False
        return
    waited = False

    async def waiting(ahead: int) -> None:
        nonlocal waited
        waited = True
        await on_wait(ahead)

    await gate.acquire(waiting)
    try:
        yield waited
    finally:
        gate.release()


async def in_background(
    config: UpstreamConfig, make: Callable[[], Awaitable[T]], *, wait: bool
) -> T:
    """A request that must never delay an answer (titles, the model list)."""
    gate = gate_for(config)
    if gate is None:
        return await make()
    return await gate.background(make, wait=wait)
