"""Admin pages that show a user's messages ask staff for a reason first and record it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from conversations.models import Conversation

from . import services

REASON = "access_reason"


def gate(
    request: HttpRequest, conversation: Conversation | None, show: Any, *args: Any, **kwargs: Any
) -> HttpResponse:
    """Show the page only with a written reason, recorded first; else ask for one."""
    if conversation is None:
        return show(*args, **kwargs)  # no such object: admin's own 404 handling
    reason = request.GET.get(REASON, "")
    if reason:
        try:
            services.access_record(
                staff=request.user,
                conversation=conversation,
                reason=reason,
                path=request.get_full_path(),
            )
        except ValidationError as exc:
            return _ask(request, conversation, " ".join(exc.messages))
        return show(*args, **kwargs)
    return _ask(request, conversation, "")


def _ask(request: HttpRequest, conversation: Conversation, error: str) -> HttpResponse:
    context = {
        "owner": conversation.owner,
        "error": error,
        "shown_to_owner": settings.CHATSITE_SHOW_ACCESS_LOG_TO_USERS,
        "title": "A reason is needed",
        "site_header": "chatsite administration",
    }
    return TemplateResponse(
        request, "admin/access_reason.html", context, status=403 if error else 200
    )


class ReasonRequiredMixin:
    """For ModelAdmins whose change page shows a user's messages."""

    def conversation_of(self, obj: Any) -> Conversation | None:
        raise NotImplementedError

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is not None and not self.has_view_or_change_permission(request, obj):  # type: ignore[attr-defined]
            return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        return gate(
            request,
            self.conversation_of(obj) if obj is not None else None,
            super().change_view,  # type: ignore[misc]
            request,
            object_id,
            form_url,
            extra_context,
        )


class RecordAdminMixin:
    """For append-only records (the access log, the usage ledger): nobody adds, edits or
    deletes one through admin, not even a superuser, and there are no bulk actions."""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}  # not even the bulk delete action

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
