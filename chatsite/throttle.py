"""Per-user limits on cheap actions, counted in this process's memory.

Requests for answers are limited per minute in the database (every process counts them).
Cheap actions (switching versions, renaming, searching, reporting, frames on a socket)
cost little each, but a loop of them from one user would keep a process and its database
thread busy for everyone else. A token bucket per user and kind of action, in memory,
stops such a loop at once without a database trip. Counted per process: with several
processes a user gets that many times the rate, which is still a bound.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

BUCKETS_MAX = 50_000  # beyond this many (user, kind) buckets, full ones are forgotten


@dataclass
class _Bucket:
    tokens: float
    at: float


_buckets: dict[tuple[str, Any], _Bucket] = {}


def throttle_wait(*, kind: str, key: Any, rate: float, burst: int) -> float:
    """Take one token: 0 when the action may go ahead now, else the seconds to wait.
    `rate` tokens come back per second, up to `burst`."""
    if rate <= 0:
        return 0.0
    now = time.monotonic()
    bucket = _buckets.get((kind, key))
    if bucket is None:
        if len(_buckets) >= BUCKETS_MAX:
            _forget_full(now, rate, burst)
        bucket = _buckets[(kind, key)] = _Bucket(tokens=float(burst), at=now)
    bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
    bucket.at = now
    if bucket.tokens >= 1.0:
        bucket.tokens -= 1.0
        return 0.0
    return (1.0 - bucket.tokens) / rate


def _forget_full(now: float, rate: float, burst: int) -> None:
    # A bucket that has refilled is the same as no bucket: forgetting it changes nothing.
    for key, bucket in list(_buckets.items()):
        if bucket.tokens + (now - bucket.at) * rate >= burst:
            del _buckets[key]


def throttle_forget() -> None:
    """Tests: start from full buckets and no sockets counted."""
    _buckets.clear()
    _sockets.clear()


def slow_down_text(wait: float) -> str:
    return f"That was a lot at once. Try again in {max(1, math.ceil(wait))} s."


V = TypeVar("V", bound=Callable[..., Any])


def throttled(kind: str, *, rate: float, burst: int) -> Callable[[V], V]:
    """A view decorator: a signed-in user past the rate gets a 429 saying when to retry.
    Put it below @login_required."""

    def decorate(view: V) -> V:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = await request.auser()
            wait = throttle_wait(kind=kind, key=user.pk, rate=rate, burst=burst)
            if wait:
                response = HttpResponse(slow_down_text(wait), status=429)
                response["Retry-After"] = str(max(1, math.ceil(wait)))
                return response
            if iscoroutinefunction(view):
                return await view(request, *args, **kwargs)
            # A sync view reads the database: in a thread, as Django would run it.
            return await sync_to_async(view)(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# --- open sockets per user ------------------------------------------------------------------
# What an open socket costs (memory, a file descriptor, group memberships) is this
# process's, so the cap is counted where the cost is: per user and process.
_sockets: dict[Any, int] = {}


def socket_admit(*, key: Any, cap: int) -> bool:
    """Count a new socket of this user, unless they already hold `cap` (0: no cap)."""
    held = _sockets.get(key, 0)
    if cap and held >= cap:
        return False
    _sockets[key] = held + 1
    return True


def socket_release(*, key: Any) -> None:
    held = _sockets.get(key, 0) - 1
    if held > 0:
        _sockets[key] = held
    else:
        _sockets.pop(key, None)
