"""Request bodies are capped before Django reads them.

Django's ASGI handler reads a whole request body into a temporary file before any
middleware or view runs, so a CSRF refusal or a login check comes after a stranger's
100 MB have been copied. This ASGI middleware sits in front of it:

* a body that declares a Content-Length over its limit is refused with 413 at once,
  without reading a byte of it;
* a body that does not declare its length (chunked) is counted as it arrives and refused
  the moment it passes the limit.

The limit is `CHATSITE_MAX_REQUEST_BYTES` for every request; the import form alone
accepts `CHATSITE_IMPORT_MAX_BYTES` (plus room for the form around the file), and the
attachment upload `CHATSITE_ATTACHMENT_MAX_BYTES`, each only from a signed-in
session. In front of daphne, the proxy's own limit (nginx's `client_max_body_size`)
stops such bodies earlier still: daphne itself buffers a body to disk before handing it
to the application.
"""

from __future__ import annotations

import hmac
from http.cookies import CookieError, SimpleCookie
from importlib import import_module
from typing import Any

from django.conf import settings
from django.urls import reverse

MULTIPART_ROOM = 1_000_000  # the form's other fields and boundaries around an import file


def _header(scope: dict[str, Any], wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


async def _signed_in(scope: dict[str, Any]) -> bool:
    """Whether the request carries a session with a signed-in user (who that is, and
    whether they may import, the view decides)."""
    raw = _header(scope, b"cookie")
    if not raw:
        return False
    try:
        cookie = SimpleCookie(raw)
    except CookieError:
        return False
    morsel = cookie.get(settings.SESSION_COOKIE_NAME)
    if morsel is None or not morsel.value:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=morsel.value)
    return bool(await store.aget("_auth_user_id"))


# This site's own requests to its demo model carry a conversation's images (base64).
DEMO_PATH = "/demo/v1/chat/completions"
DEMO_REQUEST_BYTES = 64_000_000


def demo_key_presented(authorization: str) -> bool:
    """Whether an Authorization header presents the key this site's own calls to its
    demo model use (derived from the secret key; never in a browser)."""
    presented = authorization.removeprefix("Bearer ").strip()
    return bool(presented) and hmac.compare_digest(
        presented.encode(), settings.CHATSITE_DEMO_API_KEY.encode()
    )


async def body_limit(scope: dict[str, Any]) -> int:
    limit = int(settings.CHATSITE_MAX_REQUEST_BYTES)
    if scope.get("path") == reverse("conversation_import") and await _signed_in(scope):
        limit = max(limit, int(settings.CHATSITE_IMPORT_MAX_BYTES) + MULTIPART_ROOM)
    elif scope.get("path") == reverse("attachment_upload") and await _signed_in(scope):
        # The picker may send a message's worth of files in one request.
        files = int(settings.CHATSITE_ATTACHMENT_MAX_BYTES) * int(
            settings.CHATSITE_ATTACHMENTS_PER_MESSAGE
        )
        limit = max(limit, files + MULTIPART_ROOM)
    elif scope.get("path") == DEMO_PATH and demo_key_presented(
        _header(scope, b"authorization") or ""
    ):
        limit = max(limit, DEMO_REQUEST_BYTES)
    return limit


async def _refuse(send: Any, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestBodyLimit:
    """ASGI middleware: HTTP bodies past their limit get a 413 and are never read whole."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await self.application(scope, receive, send)
        declared_text = _header(scope, b"content-length")
        try:
            declared = int(declared_text) if declared_text is not None else None
        except ValueError:
            return await _refuse(send, 400, "The Content-Length header is not a number.\n")
        limit = await body_limit(scope)
        too_large = f"That request is too large (the limit is {limit:,} bytes).\n"
        if declared is not None and declared > limit:
            return await _refuse(send, 413, too_large)
        received = 0
        refused = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await _refuse(send, 413, too_large)
                    # Django stops reading at a disconnect and answers nothing itself.
                    return {"type": "http.disconnect"}
            return message

        return await self.application(scope, counted_receive, send)
