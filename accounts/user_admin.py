"""Django's user admin, plus exporting or deleting all data of one user. The export shows
a user's messages: it asks for a reason first and records it in the access log."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from chatsite.types import Account
from conversations import selectors as conversation_selectors
from moderation import services as moderation_services

from . import services
from .views import export_zip_response

User = get_user_model()


class ChatsiteUserAdmin(UserAdmin):
    actions = ("export_user_data", "delete_user_data")

    def _one(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        users = list(queryset[:2])
        if len(users) != 1:
            self.message_user(request, "Select exactly one user.", messages.ERROR)
            return None
        return users[0]

    def _confirm(
        self, request: HttpRequest, user: Account, action: str, **extra: Any
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "target": user,
            "action": action,
            "conversations": len(conversation_selectors.conversation_ids(user=user)),
            **extra,
        }
        return TemplateResponse(request, "admin/user_data_action.html", context)

    @admin.action(description="Export all data of the selected user (asks for a reason)")
    def export_user_data(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        if not request.user.is_superuser:
            self.message_user(request, "Only superusers can export a user's data.", messages.ERROR)
            return None
        user = self._one(request, queryset)
        if user is None:
            return None
        reason = request.POST.get("access_reason", "")
        if not reason:
            return self._confirm(request, user, "export_user_data")
        try:
            moderation_services.access_record(
                staff=request.user,
                conversation=None,
                owner=user,
                reason=f"Export of all data: {reason}",
                path=request.get_full_path(),
            )
        except ValidationError as exc:
            return self._confirm(request, user, "export_user_data", error=exc.messages[0])
        return export_zip_response(user)

    @admin.action(description="Delete all conversations of the selected user")
    def delete_user_data(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        if not request.user.is_superuser:
            self.message_user(request, "Only superusers can delete a user's data.", messages.ERROR)
            return None
        user = self._one(request, queryset)
        if user is None:
            return None
        if request.POST.get("confirmed") != "yes":
            return self._confirm(request, user, "delete_user_data")
        count = services.user_history_delete(user=user)
        self.message_user(
            request, f"Deleted the data of {user} ({count} conversations).", messages.SUCCESS
        )
        return None


admin.site.unregister(User)
admin.site.register(User, ChatsiteUserAdmin)
