from django.contrib import admin

from moderation.access import ReasonRequiredMixin

from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "content", "model", "finish_reason", "created_at")
    readonly_fields = fields
    show_change_link = True
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(ReasonRequiredMixin, admin.ModelAdmin):
    """Opening one shows its messages: a reason is asked for and recorded first."""

    list_display = ("display_title", "owner", "model", "created_at", "updated_at")
    list_select_related = ("owner",)
    list_filter = ("model", "created_at")
    search_fields = ("title", "owner__username", "public_id")
    readonly_fields = ("public_id", "created_at", "updated_at")
    inlines = [MessageInline]

    def conversation_of(self, obj: Conversation) -> Conversation:
        return obj


@admin.register(Message)
class MessageAdmin(ReasonRequiredMixin, admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "model", "created_at")
    list_select_related = ("conversation",)
    list_filter = ("role", "status", "model")
    readonly_fields = (
        "content",  # a user's or a model's words are not staff's to rewrite
        "created_at",
        "first_token_at",
        "completed_at",
        "upstream_request_id",
        "generation_channel",
    )
    raw_id_fields = ("conversation",)
    # The list shows no text: searching it by content would read everyone's messages.
    search_fields = ("conversation__title", "upstream_request_id")

    def conversation_of(self, obj: Message) -> Conversation:
        return obj.conversation
