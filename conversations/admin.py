from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from moderation import access
from moderation.access import PrivateTextLookupsMixin, ReasonRequiredMixin
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
class ConversationAdmin(ReasonRequiredMixin, PrivateTextLookupsMixin, admin.ModelAdmin):
    """Opening one shows its messages: a reason is asked for and recorded first."""

    list_display = ("display_title", "owner", "model", "archived", "created_at", "updated_at")
    list_select_related = ("owner",)
    list_filter = (FlaggedFilter, "model", "archived", "updated_at", "created_at")
    # Not message text: a search tells whose words hold a phrase, so it has its own page
    # that asks for a reason and records what it reveals (text_search_view).
    search_fields = ("title", "owner__username", "=public_id")
    private_text_fields = ("system_prompt",)  # no ?system_prompt__icontains=…
    search_help_text = (
        "Titles, usernames and public ids. Message text: “Search message text” (asks why)."
    )
    show_full_result_count = False  # no second COUNT over every row on big sites
    readonly_fields = ("public_id", "created_at", "updated_at")
    inlines = [MessageInline]

    def conversation_of(self, obj: Conversation) -> Conversation:
        return obj

    def get_urls(self) -> list[URLPattern]:
        search = path(
            "text-search/",
            self.admin_site.admin_view(self.text_search_view),
            name="conversations_conversation_text_search",
        )
        return [search, *super().get_urls()]

    def text_search_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):  # not the Moderators group
            raise PermissionDenied
        return access.text_search(request, context=self.admin_site.each_context(request))


@admin.register(Message)
class MessageAdmin(ReasonRequiredMixin, PrivateTextLookupsMixin, admin.ModelAdmin):
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
    private_text_fields = ("content",)  # no ?content__icontains=…
    # The list shows no text; message text is searched on its own page (asks why).
    search_fields = ("conversation__title", "conversation__owner__username", "upstream_request_id")

    @admin.display(description="Owner")
    def owner(self, message: Message) -> Any:
        return message.conversation.owner

    def conversation_of(self, obj: Message) -> Conversation:
        return obj.conversation
