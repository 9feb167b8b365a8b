"""Websockets accept only pages of this very site: the same origin, exactly.

A browser sends the user's cookies with a websocket handshake from any page, and no
preflight protects a socket, so the Origin header is the only thing that tells this site's
own pages from a foreign page opened in the same browser. Channels'
`AllowedHostsOriginValidator` compares host names only: a page served by anything else on
the same host (another port, or http beside https) passed it and could read and send as
the user. This check compares scheme, host and port, the way Django's CSRF protection
checks the Origin of a form post:

* the origin the socket was opened on: `ws` or `wss` (or `https` as a TLS-terminating
  proxy reports it through `SECURE_PROXY_SSL_HEADER`) with the Host header, which must
  itself be one of `ALLOWED_HOSTS`;
* or one of `CSRF_TRUSTED_ORIGINS`, exactly (a `*.` entry matches its subdomains, as it
  does for CSRF).

A handshake with no Origin at all is refused: every browser sends one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalised(origin: str) -> str | None:
    """scheme://host[:port] with the default port left out, or None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


def _is_secure(scope: dict[str, Any], headers: dict[str, str]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, secure_value = proxy
        # "HTTP_X_FORWARDED_PROTO" is the WSGI name of the "x-forwarded-proto" header.
        header = name.removeprefix("HTTP_").replace("_", "-").lower()
        value = headers.get(header, "").split(",")[0].strip()
        return value == secure_value
    return False


def own_origin(scope: dict[str, Any]) -> str | None:
    """The origin of the page that may open this socket: its scheme and Host, when the
    Host is one this site answers to."""
    headers = _headers(scope)
    host = headers.get("host", "")
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return _normalised(f"{'https' if _is_secure(scope, headers) else 'http'}://{host}")


def _trusted(origin: str, trusted: Iterable[str]) -> bool:
    for entry in trusted:
        scheme, _, rest = entry.partition("://")
        if rest.startswith("*."):
            # "https://*.example.com" as in CSRF_TRUSTED_ORIGINS: any subdomain, that scheme.
            suffix = rest[1:].lower()
            candidate = urlsplit(origin)
            if candidate.scheme == scheme and (candidate.netloc or "").endswith(suffix):
                return True
        elif _normalised(entry) == origin:
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    origin = _normalised(_headers(scope).get("origin", ""))
    if origin is None:
        return False
    return origin == own_origin(scope) or _trusted(origin, settings.CSRF_TRUSTED_ORIGINS)


class SameOriginValidator:
    """ASGI middleware for websockets: refuse the handshake (HTTP 403) unless the page
    that opens the socket is one of this site's own origins."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
