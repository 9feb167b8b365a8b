from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest

from moderation.access import ReasonRequiredMixin
from moderation.models import Flag

from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "content", "model", "finish_reason", "created_at")
    readonly_fields = fields
    show_change_link = True
    can_delete = False


class FlaggedFilter(admin.SimpleListFilter):
    title = "flagged"
    parameter_name = "flagged"
    field = "conversation"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open flags"), ("any", "Any flag"), ("none", "Never flagged")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        flags = Flag.objects.filter(**{self.field: OuterRef("pk")})
        if self.value() == "open":
            return queryset.filter(Exists(flags.filter(status=Flag.Status.OPEN)))
        if self.value() == "any":
            return queryset.filter(Exists(flags))
        if self.value() == "none":
            return queryset.exclude(Exists(flags))
        return queryset


class MessageFlaggedFilter(FlaggedFilter):
    field = "message"


@admin.register(Conversation)
class ConversationAdmin(ReasonRequiredMixin, admin.ModelAdmin):
    """Opening one shows its messages: a reason is asked for and recorded first."""

    list_display = ("display_title", "owner", "model", "archived", "created_at", "updated_at")
    list_select_related = ("owner",)
    list_filter = (FlaggedFilter, "model", "archived", "updated_at", "created_at")
    # By user, title and text: the list shows titles only; opening one asks for a reason.
    search_fields = ("title", "owner__username", "=public_id", "messages__content")
    show_full_result_count = False  # no second COUNT over every row on big sites
    readonly_fields = ("public_id", "created_at", "updated_at")
    inlines = [MessageInline]

    def conversation_of(self, obj: Conversation) -> Conversation:
        return obj


@admin.register(Message)
class MessageAdmin(ReasonRequiredMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "conversation",
        "owner",
        "role",
        "status",
        "model",
        "hidden",
        "created_at",
    )
    list_select_related = ("conversation__owner",)
    list_filter = (MessageFlaggedFilter, "role", "status", "model", "hidden", "created_at")
    show_full_result_count = False
    readonly_fields = (
        "content",  # a user's or a model's words are not staff's to rewrite
        "created_at",
        "first_token_at",
        "completed_at",
        "upstream_request_id",
        "generation_channel",
    )
    raw_id_fields = ("conversation",)
    # The list shows no text; text search is on the conversation list (titles only).
    search_fields = ("conversation__title", "conversation__owner__username", "upstream_request_id")

    @admin.display(description="Owner")
    def owner(self, message: Message) -> Any:
        return message.conversation.owner

    def conversation_of(self, obj: Message) -> Conversation:
        return obj.conversation
