"""Signs a suspended user out on their next request, whatever page they were on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from . import selectors


def _refusal(request: HttpRequest, notice: str) -> HttpResponse:
    html = render_to_string("registration/suspended.html", {"notice": notice}, request=request)
    return HttpResponse(html, status=403)


class SuspensionMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        user = request.user
        if user.is_authenticated:
            suspension = selectors.suspension_current(user_id=user.pk)
            if suspension is not None:
                logout(request)
                return _refusal(request, selectors.suspension_notice(suspension))
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        user = await request.auser()
        if user.is_authenticated:
            suspension = await sync_to_async(selectors.suspension_current)(user_id=user.pk)
            if suspension is not None:
                await sync_to_async(logout)(request)
                notice = selectors.suspension_notice(suspension)
                return await sync_to_async(_refusal)(request, notice)
        return await self.get_response(request)
