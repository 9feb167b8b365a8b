from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from chatsite.types import account_of
from moderation import access
from moderation import services as moderation_services
from moderation.access import PrivateTextLookupsMixin, ReasonRequiredMixin
from moderation.models import Flag

from . import attachment_selectors, share_selectors, share_services
from .models import ChunkLog, Conversation, Message, ShareLink
from .rendering import render


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
        "attached_files",
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

    # --- the chunk log (CHATSITE_CHUNK_LOG): superusers only, each viewing recorded ---

    def _chunk_log(self, request: HttpRequest, message: Message | None) -> ChunkLog | None:
        if message is None or not request.user.is_superuser:
            return None
        return ChunkLog.objects.filter(message=message).first()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        if self._chunk_log(request, obj) is not None:
            fields += ("raw_chunks",)
        return fields

    @admin.display(description="Chunk log")
    def raw_chunks(self, message: Message) -> str:
        chunk_log = ChunkLog.objects.get(message=message)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            (
                (
                    f"{entry.get('t', 0):.3f} s",
                    "request " + (entry["request"] or "(no id)")
                    if "request" in entry
                    else ("error" if "error" in entry else "read"),
                    entry.get("data", entry.get("error", "")),
                )
                for entry in chunk_log.entries
            ),
        )
        more = " The body went on past the bound; the rest was not kept." * chunk_log.truncated
        return format_html(
            "<p>{} bytes of the upstream body as it arrived, in {} reads.{}</p>"
            '<table class="chunk-log"><thead><tr><th>after</th><th>what</th><th>raw</th></tr>'
            "</thead><tbody>{}</tbody></table>",
            chunk_log.size,
            sum("data" in entry for entry in chunk_log.entries),
            more,
            rows,
        )

    # --- attached files: opened under the conversation's grant, each opening recorded ---

    def get_urls(self) -> list[URLPattern]:
        attachment = path(
            "<path:object_id>/attachments/<uuid:public_id>/",
            self.admin_site.admin_view(self.attachment_view),
            name="conversations_message_attachment",
        )
        return [attachment, *super().get_urls()]

    @admin.display(description="Attached files")
    def attached_files(self, message: Message) -> str:
        rows = attachment_selectors.attachments_by_message(message_ids=[message.pk])
        return format_html_join(
            "",
            '<p><a href="attachments/{}/">{}</a> ({}, {} bytes)</p>',
            (
                (row.public_id, row.name, row.get_kind_display(), row.size)
                for row in rows.get(message.pk, [])
            ),
        ) or format_html("{}", "None")

    def attachment_view(self, request: HttpRequest, object_id: str, public_id: str) -> Any:
        message = self.get_object(request, unquote(object_id))
        if message is None or not self.has_view_or_change_permission(request, message):
            raise PermissionDenied
        row = attachment_selectors.attachment_of_message(message=message, public_id=public_id)
        if row is None:
            raise Http404("No such file.")
        if not access.granted(request, message.conversation_id):
            # No reason given for this conversation (or it has run out): the change page
            # asks for one first.
            return HttpResponseRedirect(request.path.split("attachments/")[0] + "change/")
        moderation_services.access_record_attachment(
            staff=account_of(request.user), message=message, name=row.name, path=request.path
        )
        response = FileResponse(
            row.file.open("rb"),
            as_attachment=True,
            filename=row.name,
            content_type=row.content_type,
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        message = self.get_object(request, unquote(object_id))
        if (
            request.method == "GET"
            and message is not None
            and access.granted(request, message.conversation_id)
            and self._chunk_log(request, message) is not None
        ):
            # The raw model output is shown: recorded before it is, like any look.
            moderation_services.access_record_chunk_log(
                staff=account_of(request.user), message=message, path=request.path
            )
        return super().change_view(request, object_id, form_url, extra_context)


class ShareStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("taken_down", "Taken down"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at=None, taken_down_at=None)
        if self.value() == "taken_down":
            return queryset.exclude(taken_down_at=None)
        if self.value() == "revoked":
            return queryset.filter(~Q(revoked_at=None), taken_down_at=None)
        return queryset


@admin.register(ShareLink)
class ShareLinkAdmin(ReasonRequiredMixin, admin.ModelAdmin):
    """Shared conversations. The list shows titles and owners; opening one shows its
    messages, so it asks for a reason first and records it (the access log), like a
    conversation. Taking one down asks why; the reason, who and when stay on the link and
    in admin's history of it."""

    list_display = ("shared_title", "owner", "created_at", "state", "conversation_link")
    list_select_related = ("conversation__owner",)
    list_filter = (ShareStateFilter, "created_at")
    # A reported link's token finds its share (exactly: a prefix would be a guessing game).
    search_fields = ("title", "conversation__owner__username", "=token")
    search_help_text = "Titles, usernames, or a shared link's whole token."
    show_full_result_count = False
    fields = (
        "title",
        "owner",
        "conversation_link",
        "created_at",
        "state",
        "show_owner_name",
        "revoked_at",
        "taken_down_at",
        "taken_down_by",
        "taken_down_reason",
        "public_link",
        "snapshot",
    )
    readonly_fields = fields
    actions = ("take_down",)

    def conversation_of(self, obj: ShareLink) -> Conversation:
        return obj.conversation

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # owners make shares

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a take-down keeps the record; owners revoke or delete the conversation

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change permission is for the take-down action; a share's page is read only.
        return obj is None and super().has_change_permission(request)

    @admin.display(description="Title", ordering="title")
    def shared_title(self, share: ShareLink) -> str:
        return share.display_title

    @admin.display(description="Owner")
    def owner(self, share: ShareLink) -> Any:
        return share.conversation.owner

    @admin.display(description="State")
    def state(self, share: ShareLink) -> str:
        if share.taken_down_at is not None:
            return "Taken down"
        if share.revoked_at is not None:
            return "Revoked by its owner"
        return "Active"

    @admin.display(description="Conversation")
    def conversation_link(self, share: ShareLink) -> str:
        # Opening the conversation asks for its own reason.
        url = reverse(
            "admin:conversations_conversation_change", args=(quote(share.conversation_id),)
        )
        return format_html('<a href="{}">{}</a>', url, share.conversation.display_title)

    @admin.display(description="Public address")
    def public_link(self, share: ShareLink) -> str:
        return reverse("shared_conversation", args=[share.token])

    @admin.display(description="What the link shows")
    def snapshot(self, share: ShareLink) -> str:
        """The shared copy, rendered as safely as on the shared page."""
        rows = share_selectors.share_messages(share=share)
        parts = []
        for row in rows:
            if row.hidden:
                body = format_html("<p><em>{}</em></p>", "Hidden by moderation.")
            elif row.role == Message.Role.ASSISTANT:
                # render() is the site's sanitiser (nh3 allow-lists): safe as on the site.
                body = mark_safe(render(row.content))  # noqa: S308
            else:
                body = format_html('<p class="plain">{}</p>', row.content)
            if not row.hidden:  # the files' names the link shows (never the files)
                for file in row.attachments.all():
                    body += format_html(
                        "<p>Attached (not shared): {} · {} bytes</p>", file.name, file.size
                    )
            parts.append(format_html("<div><strong>{}</strong>{}</div>", row.role, body))
        return format_html('<div class="shared-snapshot">{}</div>', mark_safe("".join(parts)))  # noqa: S308

    @admin.action(description="Take down the selected shares (asks why)", permissions=["change"])
    def take_down(self, request: HttpRequest, queryset: QuerySet[ShareLink]) -> Any:
        shares = list(queryset.select_related("conversation"))
        reason = request.POST.get("take_down_reason")
        context = {
            **self.admin_site.each_context(request),
            "title": "Take down shared conversations",
            "shares": shares,
            "opts": self.opts,
        }
        if reason is None:
            return TemplateResponse(
                request, "admin/conversations/sharelink/take_down.html", context
            )
        done = 0
        for share in shares:
            try:
                taken = share_services.share_take_down(
                    share=share, moderator=account_of(request.user), reason=reason
                )
            except ValidationError as exc:
                context["error"] = " ".join(exc.messages)
                return TemplateResponse(
                    request, "admin/conversations/sharelink/take_down.html", context, status=400
                )
            if taken:
                done += 1
                # Admin's history of the link: who took it down, when, why.
                self.log_change(request, share, f"Taken down: {share.taken_down_reason}")
        self.message_user(request, f"{done} share(s) taken down.", messages.SUCCESS)
        return None
