"""The moderators' flag queue, the rules and the policies, in Django admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Case, Count, OuterRef, QuerySet, Subquery, When
from django.http import HttpRequest, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from accounts import services as account_services
from chatsite.types import account_of
from conversations.models import Message
from conversations.rendering import render

from . import services
from .access import PrivateTextLookupsMixin, RecordAdminMixin
from .models import AccessLog, Flag, Policy, Rule


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("pattern", "is_regex", "category", "enabled", "created_at")
    list_filter = ("category", "enabled", "is_regex")
    search_fields = ("pattern", "category", "note")


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("category", "action")
    list_editable = ("action",)


@admin.register(Flag)
class FlagAdmin(PrivateTextLookupsMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "status",
        "source",
        "category",
        "subject",
        "earlier_flags",
        "excerpt_short",
    )
    list_filter = ("status", "source", "category", "created_at")
    # Not the excerpt: up to 500 characters of the message, of which the list shows 80;
    # searching it would test the rest unrecorded. The comment is the reporter's note to
    # moderators, shown on the flag: searchable.
    search_fields = ("subject__username", "category", "comment")
    private_text_fields = ("excerpt",)
    list_select_related = ("subject", "message", "conversation")
    readonly_fields = (
        "conversation",
        "message",
        "subject",
        "reporter",
        "source",
        "category",
        "action",
        "scores",
        "comment",
        "in_context",
        "created_at",
        "resolved_by",
        "resolved_at",
    )
    exclude = ("excerpt",)
    actions = ("dismiss", "hide_message", "unhide_message", "suspend_user")

    class Media:
        css = {"all": ("chatsite/admin-flag.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Flag]:
        earlier = (
            Flag.objects.filter(subject=OuterRef("subject"), created_at__lt=OuterRef("created_at"))
            .order_by()
            .values("subject")
            .annotate(n=Count("id"))
            .values("n")
        )
        # Open flags first; a bounded number of queries whatever the number of rows.
        return (
            super()
            .get_queryset(request)
            .annotate(
                earlier=Subquery(earlier),
                open_first=Case(When(status=Flag.Status.OPEN, then=0), default=1),
            )
            .order_by("open_first", "-created_at")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # flags come from screening and reports

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        flag = self.get_object(request, object_id)
        if flag is not None and self.has_view_or_change_permission(request, flag):
            # Reading a flag shows the user's turns: recorded, with the flag as the reason.
            services.access_record(
                staff=account_of(request.user),
                conversation=flag.conversation,
                reason=f"Flag #{flag.pk} ({flag.get_source_display()}: {flag.category})",
                path=request.get_full_path(),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Earlier flags of this user")
    def earlier_flags(self, flag: Flag) -> int:
        return getattr(flag, "earlier", None) or 0

    @admin.display(description="Text")
    def excerpt_short(self, flag: Flag) -> str:
        return flag.excerpt[:80]

    @admin.display(description="The flagged text in its context")
    def in_context(self, flag: Flag) -> str:
        """The turns around the flagged message, on its own path of versions, rendered as
        safely as on the site, inside a container that keeps admin's styles off them
        (admin-flag.css: no heading drawn as admin's blue bar, no Copy button)."""
        turns = _turns_around(flag)
        if not turns:
            return format_html("<p>{}</p>", flag.excerpt)
        return render_to_string("admin/moderation/flag/in_context.html", {"turns": turns})

    @admin.action(description="Suspend the user (asks until when, and why)", permissions=["change"])
    def suspend_user(self, request: HttpRequest, queryset: QuerySet[Flag]) -> Any:
        subjects = {flag.subject_id for flag in queryset}
        if len(subjects) != 1:
            self.message_user(request, "Select the flags of one user.", messages.ERROR)
            return None
        flags = list(queryset)
        try:
            # Before the flags are closed as "suspended": the form would refuse it anyway.
            account_services.suspension_permitted(
                user=flags[0].subject, moderator=account_of(request.user)
            )
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return None
        services.flag_resolve(
            flags=flags,
            moderator=account_of(request.user),
            status=Flag.Status.SUSPENDED,
            note="User suspension opened from the flag queue.",
        )
        reason = f"Flagged for {', '.join(sorted({f.category for f in flags}))}."
        query = urlencode({"user": subjects.pop(), "reason": reason})
        return HttpResponseRedirect(reverse("admin:accounts_suspension_add") + "?" + query)

    def _resolve(self, request: HttpRequest, queryset: QuerySet[Flag], status: str) -> None:
        flags = list(queryset)
        note = f"{Flag.Status(status).label} from the flag queue."
        count = services.flag_resolve(
            flags=flags, moderator=account_of(request.user), status=status, note=note
        )
        self.message_user(request, f"{count} flag(s) updated.", messages.SUCCESS)

    @admin.action(description="Dismiss the selected flags", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet[Flag]) -> None:
        self._resolve(request, queryset, Flag.Status.DISMISSED)

    @admin.action(description="Hide the flagged messages", permissions=["change"])
    def hide_message(self, request: HttpRequest, queryset: QuerySet[Flag]) -> None:
        self._resolve(request, queryset, Flag.Status.HIDDEN)

    @admin.action(description="Unhide the flagged messages", permissions=["change"])
    def unhide_message(self, request: HttpRequest, queryset: QuerySet[Flag]) -> None:
        count = services.flag_unhide(
            flags=list(queryset), moderator=account_of(request.user), note="Message shown again."
        )
        self.message_user(request, f"{count} message(s) shown again.", messages.SUCCESS)


@admin.register(AccessLog)
class AccessLogAdmin(RecordAdminMixin, admin.ModelAdmin):
    """Read only, for everyone: nobody adds, edits or deletes an entry here."""

    list_display = ("at", "staff_username", "owner", "conversation_title", "reason")
    list_select_related = ("owner",)
    list_filter = ("at",)
    search_fields = ("staff_username", "owner__username", "conversation_title", "reason")


@dataclass(frozen=True)
class Turn:
    """One message as the flag page shows it: which version of its turn, and its text as
    safe HTML (an answer's markdown through the site's sanitiser; a user's text escaped)."""

    message: Message
    version: int
    versions: int
    flagged: bool
    html: str


def _turns_around(flag: Flag) -> list[Turn]:
    """The flagged message with the two messages before it on its path (its question and
    the answer before that) and the newest one after it; for a whole conversation, its
    first six messages. Other versions are left out, and each shown one says which version
    it is: two answers to one question read as a conversation otherwise. Two queries."""
    rows = list(flag.conversation.messages.order_by("id").values_list("id", "parent_id"))
    parent_of = dict(rows)
    versions: dict[int | None, list[int]] = {}
    newest_child: dict[int | None, int] = {}
    for pk, parent_id in rows:  # in id order: versions oldest first, the last child newest
        versions.setdefault(parent_id, []).append(pk)
        newest_child[parent_id] = pk
    ids: list[int] = []
    if flag.message_id in parent_of:
        node: int | None = flag.message_id
        while node is not None and len(ids) < 3:
            ids.insert(0, node)
            node = parent_of.get(node)
        if flag.message_id in newest_child:
            ids.append(newest_child[flag.message_id])
    else:
        node = newest_child.get(None)
        while node is not None and len(ids) < 6:
            ids.append(node)
            node = newest_child.get(node)
    by_id = Message.objects.in_bulk(ids)
    turns = []
    for pk in ids:
        message = by_id[pk]
        siblings = versions[parent_of[pk]]
        html = (
            # render() is the site's sanitiser (nh3 allow-lists): safe as on the site.
            mark_safe(render(message.content))  # noqa: S308
            if message.role == Message.Role.ASSISTANT
            else format_html("<p>{}</p>", message.content)
        )
        turns.append(
            Turn(message, siblings.index(pk) + 1, len(siblings), pk == flag.message_id, html)
        )
    return turns
