"""Suspensions in admin: saving one ends the user's sockets and answers at once."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialApp, SocialToken
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from chatsite.types import account_of
from moderation.access import RecordAdminMixin

from . import (
    services,
    user_admin,  # noqa: F401  # registers the user admin with its data actions
)
from .models import Quota, Suspension, UsageEvent

# Identity providers come from the environment only (README, Single sign-on), and their
# secrets and tokens are never shown: allauth's admin pages for them are taken away, and
# its e-mail addresses too (the site reads a user's own address field, nothing else).
for _model in (SocialApp, SocialToken, EmailAddress):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class SuspensionForm(ModelForm):
    moderator: Any = None  # who is suspending: set per request by SuspensionAdmin.get_form

    class Meta:
        model = Suspension
        fields = ("user", "until", "reason")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        user = data.get("user")
        if user is None:
            return data
        # The rules live in the service; checking here shows them on the form instead of
        # failing in save_model. With a field already wrong, still say who may not be
        # suspended at once.
        if self.errors:
            services.suspension_permitted(user=user, moderator=self.moderator)
        else:
            services.suspension_validate(
                user=user,
                until=data.get("until"),
                reason=data.get("reason") or "",
                moderator=self.moderator,
            )
        return data


@admin.register(Suspension)
class SuspensionAdmin(admin.ModelAdmin):
    form = SuspensionForm
    list_display = ("user", "until", "reason", "created_by", "created_at", "lifted_at")
    list_select_related = ("user", "created_by")
    list_filter = ("lifted_at", "until")
    search_fields = ("user__username", "reason")
    raw_id_fields = ("user",)
    actions = ("lift",)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form: Any = super().get_form(request, obj, change, **kwargs)
        # modelform_factory made a new class for this request: safe to mark it.
        form.moderator = request.user
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A suspension is a record: changed by lifting it, not by editing it.
        return ("user", "until", "reason", "created_by", "lifted_at", "lifted_by") if obj else ()

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if "reason" in request.GET:
            initial["reason"] = request.GET["reason"][:500]
        return initial

    def save_model(self, request: HttpRequest, obj: Suspension, form: Any, change: bool) -> None:
        if change:
            return
        suspension = services.user_suspend(
            user=obj.user, until=obj.until, reason=obj.reason, moderator=account_of(request.user)
        )
        obj.pk = suspension.pk

    @admin.action(description="Lift the selected suspensions", permissions=["change"])
    def lift(self, request: HttpRequest, queryset: QuerySet[Suspension]) -> None:
        for suspension in queryset:
            services.suspension_lift(suspension=suspension, moderator=account_of(request.user))
        self.message_user(request, "Lifted.", messages.SUCCESS)


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "messages_per_day",
        "tokens_per_day",
        "tokens_per_month",
        "concurrent_answers",
        "attachment_bytes",
        "attachment_file_bytes",
        "attachment_files",
    )
    list_select_related = ("user", "group")
    raw_id_fields = ("user",)
    search_fields = ("user__username", "group__name")


@admin.register(UsageEvent)
class UsageEventAdmin(RecordAdminMixin, admin.ModelAdmin):
    """The ledger quotas count from: read only."""

    list_display = ("at", "user", "kind", "model", "tokens", "estimated")
    list_filter = ("kind", "estimated", "model", "at")
    list_select_related = ("user",)
    search_fields = ("user__username", "model")
