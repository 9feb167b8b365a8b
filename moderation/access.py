"""Admin pages that show a user's messages ask staff for a reason first and record it.

The reason is posted (with the CSRF token) to a small endpoint beside the change page,
recorded in the access log, and answered with a redirect to the page; what opens it is a
grant kept in the staff member's session, for that conversation, for GRANT_SECONDS. The
reason is never in a URL: not in browser history, server logs or Referer headers.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from chatsite.types import account_of
from conversations import search
from conversations import selectors as conversation_selectors
from conversations.models import Conversation

from . import services

REASON = "access_reason"
# Long enough to read the conversation, follow its messages and save an edit made while
# reading; short enough that a later look needs a new reason. Re-giving one starts again.
GRANT_SECONDS = 15 * 60
_GRANTS = "chatsite_access_grants"

TEXT_SEARCH_RESULTS = 20  # conversations shown (and logged) per search, newest first


# --- grants -------------------------------------------------------------------------------


def _grant_key(request: HttpRequest, conversation_id: int) -> str:
    return f"{request.user.pk}:{conversation_id}"  # a session is one user's, but be sure


def grant(request: HttpRequest, conversation_id: int) -> None:
    now = time.time()
    grants = {k: v for k, v in request.session.get(_GRANTS, {}).items() if v > now}
    grants[_grant_key(request, conversation_id)] = now + GRANT_SECONDS
    request.session[_GRANTS] = grants


def granted(request: HttpRequest, conversation_id: int) -> bool:
    expires = request.session.get(_GRANTS, {}).get(_grant_key(request, conversation_id), 0)
    return bool(expires > time.time())


# --- the reason form ----------------------------------------------------------------------


def _ask(
    request: HttpRequest,
    conversation: Conversation,
    *,
    action: str,
    context: dict[str, Any],
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        **context,
        "owner": conversation.owner,
        "action": action,
        "error": error,
        "unsaved": request.method == "POST" and not error,
        "grant_minutes": GRANT_SECONDS // 60,
        "shown_to_owner": settings.CHATSITE_SHOW_ACCESS_LOG_TO_USERS,
        "title": "A reason is needed",
    }
    return TemplateResponse(request, "admin/access_reason.html", context, status=status)


class ReasonRequiredMixin:
    """For ModelAdmins whose change page shows a user's messages: the change page (its
    GET and its POST, whose errors re-render the messages) opens only with a grant; the
    `reason/` endpoint beside it records a reason and gives one."""

    def conversation_of(self, obj: Any) -> Conversation:
        raise NotImplementedError

    def _url(self, name: str, obj: Any) -> str:
        opts = self.opts  # type: ignore[attr-defined]
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_{name}",
            args=(quote(obj.pk),),
            current_app=self.admin_site.name,  # type: ignore[attr-defined]
        )

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts  # type: ignore[attr-defined]
        reason = path(
            "<path:object_id>/reason/",
            self.admin_site.admin_view(self.reason_view),  # type: ignore[attr-defined]
            name=f"{opts.app_label}_{opts.model_name}_reason",
        )
        return [reason, *super().get_urls()]  # type: ignore[misc]

    def reason_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        if not self.has_view_or_change_permission(request, obj):  # type: ignore[attr-defined]
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])  # a reason in a URL would be kept
        conversation = self.conversation_of(obj)
        change_url = self._url("change", obj)
        try:
            services.access_record(
                staff=account_of(request.user),
                conversation=conversation,
                reason=request.POST.get(REASON, ""),
                path=change_url,
            )
        except ValidationError as exc:
            return _ask(
                request,
                conversation,
                action=request.path,
                context=self.admin_site.each_context(request),  # type: ignore[attr-defined]
                error=" ".join(exc.messages),
                status=400,
            )
        grant(request, conversation.pk)
        # 303: the browser follows with a GET, and the reason stays in this POST only.
        response = HttpResponseRedirect(change_url)
        response.status_code = 303
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None or not self.has_view_or_change_permission(request, obj):  # type: ignore[attr-defined]
            # Admin's own 404 redirect or 403: nothing of the conversation is shown.
            return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        conversation = self.conversation_of(obj)
        if granted(request, conversation.pk):
            return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        # Without a grant nothing opens and nothing is saved (a POST's errors would
        # re-render the messages, and a write needs a reason as much as a read).
        return _ask(
            request,
            conversation,
            action=self._url("reason", obj),
            context=self.admin_site.each_context(request),  # type: ignore[attr-defined]
            status=403 if request.method == "POST" else 200,
        )


# --- searching message text ---------------------------------------------------------------


def text_search(request: HttpRequest, *, context: dict[str, Any]) -> HttpResponse:
    """The admin page that searches message text across users: words and a reason, by
    POST; each conversation it reveals is recorded in the access log with that reason.
    It shows titles and owners only; opening one asks for its own reason."""
    context = {
        **context,
        "title": "Search message text",
        "max_results": TEXT_SEARCH_RESULTS,
        "shown_to_owner": settings.CHATSITE_SHOW_ACCESS_LOG_TO_USERS,
    }
    if request.method != "POST":
        return TemplateResponse(request, "admin/conversation_text_search.html", context)
    query = request.POST.get("words", "")
    words = search.query_words(query)
    context["words"] = query[:200]
    if not words:
        return _search_error(request, context, "Give the words to look for.")
    conversations = conversation_selectors.conversations_with_text_staff_wide(
        words=words, limit=TEXT_SEARCH_RESULTS
    )
    try:  # recorded before anything is shown; without a reason nothing is
        services.access_record_text_search(
            staff=account_of(request.user),
            conversations=conversations,
            words=" ".join(words),
            reason=request.POST.get(REASON, ""),
            path=request.path,
        )
    except ValidationError as exc:
        return _search_error(request, context, " ".join(exc.messages))
    context["searched"] = True
    context["results"] = [
        (c, reverse("admin:conversations_conversation_change", args=(quote(c.pk),)))
        for c in conversations
    ]
    return TemplateResponse(request, "admin/conversation_text_search.html", context)


def _search_error(request: HttpRequest, context: dict[str, Any], error: str) -> HttpResponse:
    return TemplateResponse(
        request, "admin/conversation_text_search.html", {**context, "error": error}, status=400
    )


class PrivateTextLookupsMixin:
    """Admin list pages filter by any local field from the query string
    (`?content__icontains=…`): refused for fields holding users' or models' words, which
    would otherwise tell whose text holds a phrase without a reason or a record."""

    private_text_fields: tuple[str, ...] = ()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup.split("__", 1)[0] in self.private_text_fields:
            return False
        return bool(super().lookup_allowed(lookup, value, request))  # type: ignore[misc]


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
