"""The upstream's failures: every SDK or transport exception becomes an `UpstreamError` with
a kind the rest of the app can reason about (may it be retried? when?) and a sentence a
person understands. Raw upstream bodies are logged here (with the request id), never
returned.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum

import aiohttp
import httpx2
import openai

# The upstream's log keeps its name from before upstream.py was split (operators filter on it).
log = logging.getLogger("conversations.upstream")


class ErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # no connection could be made
    CONNECTION = "connection"  # a connection that was made broke
    PROTOCOL = "protocol"
    STREAM_ERROR = "stream_error"


USER_MESSAGES = {
    ErrorKind.RATE_LIMITED: "The model is rate limited right now. Please try again in a moment.",
    ErrorKind.UNAVAILABLE: "The model service is unavailable right now.",
    ErrorKind.AUTH: "The model service rejected this site's API key. An operator must fix it.",
    ErrorKind.NOT_FOUND: "The model was not found on the model service.",
    ErrorKind.BAD_REQUEST: "The model service refused this request.",
    ErrorKind.TIMEOUT: "The model service stopped responding.",
    ErrorKind.UNREACHABLE: "Could not reach the model service.",
    ErrorKind.CONNECTION: "The connection to the model service was lost.",
    ErrorKind.PROTOCOL: "The model service sent a response that could not be read.",
    ErrorKind.STREAM_ERROR: "The model service reported an error while answering.",
}


class UpstreamError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        *,
        status: int | None = None,
        request_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind} (status={status}, request_id={request_id or '-'})")
        self.kind = kind
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def user_message(self) -> str:
        return USER_MESSAGES[self.kind]

    @property
    def retryable(self) -> bool:
        """Worth another try before any text was shown (408/409/429/5xx, network)."""
        if self.kind in (
            ErrorKind.UNREACHABLE,
            ErrorKind.CONNECTION,
            ErrorKind.TIMEOUT,
            ErrorKind.UNAVAILABLE,
        ):
            return True
        if self.kind is ErrorKind.RATE_LIMITED:
            return True
        return self.status in (408, 409)


def _retry_after(headers: httpx2.Headers | None) -> float | None:
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None  # an HTTP date: rare for model APIs; fall back to our backoff
    return None


def classify(exc: BaseException, *, request_id: str = "") -> UpstreamError:
    """Map an SDK/transport exception to an UpstreamError, logging the raw detail."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        rid = exc.request_id or request_id
        if status == 429:
            kind = ErrorKind.RATE_LIMITED
        elif status in (401, 403):
            kind = ErrorKind.AUTH
        elif status == 404:
            kind = ErrorKind.NOT_FOUND
        elif status >= 500 or status in (408, 409):
            kind = ErrorKind.UNAVAILABLE
        else:
            kind = ErrorKind.BAD_REQUEST
        # The body is the upstream's words: logged for operators, never shown to users.
        log.warning("upstream %s status=%s request_id=%s body=%r", kind, status, rid, exc.body)
        return UpstreamError(
            kind, status=status, request_id=rid, retry_after=_retry_after(exc.response.headers)
        )
    if isinstance(exc, openai.APITimeoutError) and not _caused_by(
        exc, aiohttp.ClientConnectorError
    ):
        log.warning("upstream timeout request_id=%s", request_id or "-")
        return UpstreamError(ErrorKind.TIMEOUT, request_id=request_id)
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError's parent
        # (aiohttp's transport reports a refused connection as a connect timeout.)
        # Raised while the request is sent: no connection was made (refused, no route,
        # a name that does not resolve), which is not the same as losing one.
        log.warning("upstream unreachable request_id=%s: %r", request_id or "-", exc.__cause__)
        return UpstreamError(ErrorKind.UNREACHABLE, request_id=request_id)
    # The body is read below the SDK: its transport errors arrive as aiohttp's or
    # httpx2's own.
    if isinstance(exc, (httpx2.TimeoutException, aiohttp.ServerTimeoutError, TimeoutError)):
        log.warning("upstream timeout mid-stream request_id=%s", request_id or "-")
        return UpstreamError(ErrorKind.TIMEOUT, request_id=request_id)
    if isinstance(exc, (httpx2.TransportError, aiohttp.ClientError)):
        log.warning("upstream connection lost request_id=%s: %r", request_id or "-", exc)
        return UpstreamError(ErrorKind.CONNECTION, request_id=request_id)
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        log.warning("upstream stream error request_id=%s body=%r", request_id or "-", exc.body)
        return UpstreamError(ErrorKind.STREAM_ERROR, request_id=request_id)
    log.warning("upstream unreadable response request_id=%s: %r", request_id or "-", exc)
    return UpstreamError(ErrorKind.PROTOCOL, request_id=request_id)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# What the SDK or the transport may raise while a call is in flight (CancelledError is
# deliberately not here: a Stop must travel through untouched).
UPSTREAM_EXCEPTIONS: tuple[type[BaseException], ...] = (
    openai.OpenAIError,
    httpx2.HTTPError,
    aiohttp.ClientError,
    TimeoutError,  # aiohttp's read timeout
    json.JSONDecodeError,
    ValueError,
)
