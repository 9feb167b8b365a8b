"""htmx actions on one conversation: rename, pin and archive, configure, delete, report it,
rate an answer. Each sends back the part of the page it changed (or, without htmx, the
whole page). Views orchestrate: reads through selectors, writes through services."""

from __future__ import annotations

import re
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from chatsite.throttle import throttled
from chatsite.types import Account, account_of
from moderation import services as moderation_services

from . import message_selectors, selectors, services
from .fragments import PAGE, SIDEBAR
from .models import Conversation
from .streaming import broadcast
from .views import HtmxHttpRequest, model_choices, whole_page, with_current

# Cheap actions, per user and process (chatsite/throttle.py): generous for a person, a
# wall for a loop. Reports fill the moderators' queue, so fewer of those.
EDITS_PER_SECOND, EDITS_BURST = 5.0, 20
REPORTS_PER_SECOND, REPORTS_BURST = 0.1, 5


async def _owned(request: HttpRequest, public_id: Any) -> Conversation:
    user = account_of(await request.auser())
    conversation = await sync_to_async(selectors.conversation_get)(user=user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


async def _title_area(
    request: HttpRequest, conversation: Conversation, *, status: int = 200, **extra: Any
) -> HttpResponse:
    user = account_of(await request.auser())
    conversations, next_cursor = await sync_to_async(selectors.conversation_page)(user=user)
    context = {"conversation": conversation, **extra}
    area = await sync_to_async(render_to_string)(f"{PAGE}#title_area", context, request=request)
    # The sidebar marks the conversation the page shows, which is not this one when the
    # change came from another conversation's sidebar.
    shown = await sync_to_async(_shown_conversation)(request, user)
    sidebar_context = {
        "conversation": shown,
        "conversations": conversations,
        "next_cursor": next_cursor,
        "oob": True,
    }
    sidebar = await sync_to_async(render_to_string)(
        f"{SIDEBAR}#sidebar_list", sidebar_context, request=request
    )
    return HttpResponse(area + sidebar, status=status)


_CONVERSATION_PATH = re.compile(r"^/conversations/([0-9a-f-]{36})/")


def _shown_conversation(request: HttpRequest, user: Account) -> Conversation | None:
    """The conversation of the page an htmx request came from (HX-Current-URL), if any."""
    details = getattr(request, "htmx", None)
    path = (details.current_url_abs_path or "") if details else request.path
    match = _CONVERSATION_PATH.match(path)
    return selectors.conversation_get(user=user, public_id=match.group(1)) if match else None


@require_POST
@login_required
@throttled("edit", rate=EDITS_PER_SECOND, burst=EDITS_BURST)
async def conversation_rename(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    conversation = await _owned(request, public_id)
    title = request.POST.get("title", "")
    try:
        await sync_to_async(services.conversation_rename)(conversation=conversation, title=title)
    except ValidationError as exc:
        error = {"rename_error": " ".join(exc.messages), "rename_value": title[:300]}
        if not request.htmx:
            return await whole_page(request, conversation, status=422, **error)
        # 422: htmx swaps it in (see responseHandling in base.html) so the error shows.
        return await _title_area(request, conversation, status=422, **error)
    await broadcast.conversation_announce_title(conversation=conversation)
    if not request.htmx:
        return await whole_page(request, conversation)
    return await _title_area(request, conversation)


@require_POST
@login_required
@throttled("edit", rate=EDITS_PER_SECOND, burst=EDITS_BURST)
async def conversation_flags(request: HttpRequest, public_id: str) -> HttpResponse:
    conversation = await _owned(request, public_id)
    flags = {
        name: request.POST[name] == "1" for name in ("pinned", "archived") if name in request.POST
    }
    await sync_to_async(services.conversation_set_flags)(conversation=conversation, **flags)
    return await _title_area(request, conversation)


@require_POST
@login_required
async def conversation_delete(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    conversation = await _owned(request, public_id)
    await broadcast.conversation_remove(conversation=conversation)
    page = reverse("conversation_detail", args=[conversation.public_id])
    came_from = request.htmx.current_url_abs_path if request.htmx else None
    if came_from and not came_from.startswith(page):
        # From the sidebar of another page: that page stays; every tab's sidebar loses
        # the entry through the user's frames.
        return HttpResponse(status=204)
    if request.htmx:
        # Not a 302: the browser's XHR would follow it and htmx would swap the home page
        # into the button. htmx navigates on HX-Redirect instead.
        return HttpResponseClientRedirect(reverse("home"))
    return HttpResponseRedirect(reverse("home"))


@require_POST
@login_required
@throttled("edit", rate=EDITS_PER_SECOND, burst=EDITS_BURST)
async def conversation_configure(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """The model for the next answers, and the conversation's instructions."""
    conversation = await _owned(request, public_id)
    choices = await model_choices(request)
    # The model picker and the instructions dialog post separately; each gets itself back.
    part = "instructions" if "system_prompt" in request.POST else "configure"
    context: dict[str, Any] = {"conversation": conversation}
    status = 200
    try:
        await sync_to_async(services.conversation_configure)(
            conversation=conversation,
            choices=choices,
            model=request.POST.get("model"),
            system_prompt=request.POST.get("system_prompt"),
        )
        context[f"{part}_saved"] = True
    except ValidationError as exc:
        context[f"{part}_error"] = " ".join(exc.messages)
        status = 422
    if not request.htmx:
        error = {"configure_error": context[f"{part}_error"]} if status == 422 else {}
        return await whole_page(request, conversation, status=status, **error)
    context["model_choices"] = with_current(choices, conversation.model)
    html = await sync_to_async(render_to_string)(f"{PAGE}#{part}", context, request=request)
    return HttpResponse(html, status=status)


@require_POST
@login_required
@throttled("report", rate=REPORTS_PER_SECOND, burst=REPORTS_BURST)
def conversation_report(request: HttpRequest, public_id: str) -> HttpResponse:
    """A user reports an answer (or the whole conversation) to the moderators."""
    conversation = selectors.conversation_get(user=request.user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    try:
        moderation_services.flag_report(
            reporter=account_of(request.user),
            conversation=conversation,
            message_id=request.POST.get("message_id"),
            category=request.POST.get("category"),
            comment=request.POST.get("comment", ""),
        )
    except ValidationError as exc:
        text = escape(" ".join(exc.messages))
        return HttpResponse(f'<p class="feedback error" role="alert">{text}</p>', status=422)
    return HttpResponse(
        '<p class="feedback" role="status">Thank you. The moderators will look at it.</p>'
    )


@require_POST
@login_required
@throttled("edit", rate=EDITS_PER_SECOND, burst=EDITS_BURST)
def answer_feedback(request: HttpRequest, public_id: str) -> HttpResponse:
    """The owner rates an answer (helpful or not, with an optional comment); the rating's
    own partial comes back."""
    conversation = selectors.conversation_get(user=request.user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    message_id = request.POST.get("message_id")
    context: dict[str, Any] = {}
    status = 200
    try:
        services.answer_feedback_set(
            conversation=conversation,
            message_id=message_id,
            value=request.POST.get("value", ""),
            comment=request.POST.get("comment", ""),
        )
        context["rating_saved"] = True
        # A fresh verdict asks for a comment at once; a saved comment closes the form.
        context["ask_comment"] = "comment" not in request.POST and bool(request.POST.get("value"))
    except ValidationError as exc:
        context["rating_error"] = " ".join(exc.messages)
        status = 422
    message = message_selectors.message_get(conversation=conversation, message_id=message_id)
    if message is None:
        return HttpResponse(escape(context.get("rating_error", "")), status=422)
    context["item"] = message_selectors.message_view(message=message)
    return render(request, f"{PAGE}#rating", context, status=status)
