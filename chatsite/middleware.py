"""Content-Security-Policy for every response, and error pages that live under it.

Model and user text is rendered on the server and sanitised, but the policy is the second
wall: even if markup slipped through, the browser would run no inline script, evaluate no
string, load no foreign image and connect to no other host.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)


def policy_with_form_action(*origins: str) -> str:
    """The policy, with forms also allowed to go to these origins: the sign-in page's
    single sign-on buttons post to the site, which redirects the form's navigation to the
    identity provider, and browsers hold that redirect to form-action too."""
    if not origins:
        return POLICY
    return POLICY.replace("form-action 'self'", " ".join(["form-action 'self'", *origins]))


class _ResponseMiddleware:
    """A middleware that only looks at the response (its view runs untouched), in a sync
    or an async stack alike: `after` on the response; `aafter` where the async stack must
    do it differently (a database read off the event loop)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return self.after(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        return await self.aafter(request, await get_response(request))

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        raise NotImplementedError

    async def aafter(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return self.after(request, response)


class ContentSecurityPolicyMiddleware(_ResponseMiddleware):
    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response


# Django's technical 500 page (debug only) styles and scripts itself inline.
DEBUG_500_POLICY = POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)


class DebugErrorPagesMiddleware(_ResponseMiddleware):
    """In debug, the site's own 404 page, and a technical 500 page the policy lets through.

    With DEBUG on, Django answers a 404 with its technical page, whose inline CSS the
    policy blocks: it showed a bare, unstyled "Page not found". What a person meets in
    production is the site's 404.html, so debug shows that too (Django still logs the path).
    Without DEBUG this does nothing: Django's handler404 renders 404.html itself.

    The technical 500 page stays in debug, since its traceback is what debug is for; its
    inline CSS and script would be blocked, so that response alone gets a policy allowing
    them. Production's 500 is 500.html under the strict policy. Must come after
    ContentSecurityPolicyMiddleware (which keeps a policy already set).
    """

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if _unrouted_not_found(request, response):
            return _not_found_page(request)
        return _debug_500_allowed(request, response)

    async def aafter(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if _unrouted_not_found(request, response):
            # The page reads the session's user: not on the event loop.
            return await sync_to_async(_not_found_page)(request)
        return _debug_500_allowed(request, response)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view's Http404 (a deleted or foreign conversation): the site's page, in debug."""
        if not settings.DEBUG:
            return None
        if isinstance(exception, Http404):
            return _not_found_page(request)
        request._chatsite_view_failed = True  # type: ignore[attr-defined]  # the technical 500 follows
        return None


def _unrouted_not_found(request: HttpRequest, response: HttpResponseBase) -> bool:
    # No URL matched (resolver_match is set only when one does): Django's technical 404.
    return settings.DEBUG and response.status_code == 404 and request.resolver_match is None


def _not_found_page(request: HttpRequest) -> HttpResponse:
    return render(request, "404.html", status=404)


def _debug_500_allowed(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if getattr(request, "_chatsite_view_failed", False) and response.status_code == 500:
        response.headers["Content-Security-Policy"] = DEBUG_500_POLICY
    return response
