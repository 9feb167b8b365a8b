"""Pages: the home page, a conversation, starting one; the sidebar's next page, search, and
a conversation's download. Views orchestrate: reads through selectors, writes through
services and turns. The htmx actions on a conversation are in action_views."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseLocation
from django_htmx.middleware import HtmxDetails

from accounts import quotas
from chatsite.errors import ActionRefused
from chatsite.throttle import throttled
from chatsite.types import Account, account_of

from . import (
    attachment_selectors,
    catalog,
    message_selectors,
    selectors,
    services,
    upstream,
    usage_selectors,
)
from .fragments import SIDEBAR
from .models import Conversation
from .portability import exports
from .streaming import turns


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails  # set by django_htmx's middleware for every request


# Cheap actions, per user and process (chatsite/throttle.py): generous for a person, a
# wall for a loop.
SEARCHES_PER_SECOND, SEARCHES_BURST = 5.0, 20


@require_GET
@login_required
async def home(request: HttpRequest) -> HttpResponse:
    user = account_of(await request.auser())
    choices = await model_choices(request)
    return await sync_to_async(_home_page)(
        request, user, choices, archived=request.GET.get("archived") == "1"
    )


def _home_page(
    request: HttpRequest,
    user: Account,
    choices: list[str],
    *,
    archived: bool = False,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    preferences = selectors.user_settings_for(user=user)
    conversations, next_cursor = selectors.conversation_page(user=user)
    context = {
        "conversations": conversations,  # the sidebar's
        "next_cursor": next_cursor,
        "archived": archived,
        "archived_conversations": (
            selectors.conversation_list(user=user, archived=True) if archived else []
        ),
        "model_choices": choices,
        "selected_model": extra.pop("selected_model", "") or preferences.default_model,
        # Files uploaded and not sent keep their chips: a reload or a refusal loses none.
        "form_attachments": attachment_selectors.attachments_pending(user=user),
        "service_problem": _service_problem(request),
        **extra,
    }
    return render(request, "conversations/home.html", context, status=status)


@require_GET
@login_required
async def conversation_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    user = account_of(await request.auser())
    choices = await model_choices(request)
    return await sync_to_async(_conversation_page)(request, user, public_id, choices)


def _conversation_page(
    request: HttpRequest,
    user: Account,
    public_id: str,
    choices: list[str],
    *,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    conversation = selectors.conversation_get(user=user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    messages = message_selectors.message_list(conversation=conversation)
    streaming = any(item.message.is_streaming for item in messages)
    last = messages[-1].message if messages else None
    conversations, next_cursor = selectors.conversation_page(user=user)
    return render(
        request,
        "conversations/conversation.html",
        {
            "conversation": conversation,
            "messages": messages,
            "streaming": streaming,
            "conversations": conversations,
            "next_cursor": next_cursor,
            "model_choices": with_current(choices, conversation.model),
            "usage": usage_selectors.usage_for_conversation(conversation=conversation),
            "pending_attachments": attachment_selectors.attachments_pending(user=user),
            "quota_text": _quota_text(user),
            "service_problem": _service_problem(request),
            "ws_path": f"/ws/conversations/{conversation.public_id}/"
            + (f"?seen={last.pk}-{last.status}" if last is not None else ""),
            **extra,
        },
        status=status,
    )


async def whole_page(
    request: HttpRequest, conversation: Conversation, *, status: int = 200, **extra: Any
) -> HttpResponse:
    """A form that was submitted without htmx (no script yet, or a swap not yet
    processed): the result as a whole page, so nothing typed is lost."""
    if status == 200:
        # 303: the reload that follows is a GET, not the form again.
        url = reverse("conversation_detail", args=[conversation.public_id])
        return HttpResponseRedirect(url, status=303)
    user = account_of(await request.auser())
    choices = await model_choices(request)
    return await sync_to_async(_conversation_page)(
        request, user, str(conversation.public_id), choices, status=status, **extra
    )


def _quota_text(user: Account) -> str:
    allowance = quotas.allowance(user_id=user.pk)
    return allowance.text if allowance is not None and allowance.low else ""


async def model_choices(request: HttpRequest) -> list[str]:
    config = upstream.configured(server=_server_address(request))
    return await catalog.model_choices(config=config)


def _service_problem(request: HttpRequest) -> str:
    """What the page says when the model service could not be used moments ago (listing
    its models for this very page found out), before anyone types a message that fails."""
    return catalog.service_problem(config=upstream.configured(server=_server_address(request)))


def with_current(choices: list[str], current: str) -> list[str]:
    # A model no longer offered still shows as the conversation's current one.
    return choices if current in choices or not current else [current, *choices]


@require_POST
@login_required
async def conversation_create(request: HtmxHttpRequest) -> HttpResponse:
    """Create a conversation, optionally with its first message (whose answer starts now)."""
    user = account_of(await request.auser())
    text = request.POST.get("message", "")
    attachment_ids = request.POST.getlist("attachments")
    if text.strip() or attachment_ids:
        try:
            services.message_text_clean(text=text)
        except ValidationError as exc:
            return await _home_with_error(request, user, text, " ".join(exc.messages), 400)
    choices = await model_choices(request)
    preferences = await sync_to_async(selectors.user_settings_for)(user=user)
    model = request.POST.get("model") or preferences.default_model
    # A model that is not (or no longer) offered falls back to the site's default.
    model = model if model in choices else choices[0]
    prompt = preferences.default_system_prompt
    if not text.strip():
        conversation = await sync_to_async(services.conversation_create)(
            owner=user, model=model, system_prompt=prompt
        )
        return _opened(request, conversation)
    try:
        turn = await turns.conversation_start(
            owner=user,
            model=model,
            system_prompt=prompt,
            text=text,
            server=_server_address(request),
            attachment_ids=attachment_ids,
        )
    except ActionRefused as exc:  # a limit, or a quota: try again later
        return await _home_with_error(request, user, text, exc.user_message, 429)
    except ValidationError as exc:  # an attached file that is no longer there
        return await _home_with_error(request, user, text, " ".join(exc.messages), 400)
    return _opened(request, turn.user_message.conversation)


def _opened(request: HtmxHttpRequest, conversation: Conversation) -> HttpResponse:
    url = reverse("conversation_detail", args=[conversation.public_id])
    if request.htmx:
        # The home page becomes the conversation in place (its answer already streams),
        # and the address becomes the conversation's.
        return HttpResponseLocation(url, target="#app", select="#app", swap="outerHTML")
    return HttpResponseRedirect(url)


async def _home_with_error(
    request: HtmxHttpRequest, user: Account, text: str, error: str, status: int
) -> HttpResponse:
    if request.htmx:
        status = 422  # htmx swaps a 422 in (base.html's responseHandling): the error shows
    choices = await model_choices(request)
    return await sync_to_async(_home_page)(
        request,
        user,
        choices,
        status=status,
        form_error=error,
        form_message=text[: settings.CHATSITE_MAX_MESSAGE_CHARS],
        selected_model=request.POST.get("model", ""),
    )


def _server_address(request: HttpRequest) -> tuple[str, int] | None:
    """The address this server accepted the request on (for reaching the demo model)."""
    scope = getattr(request, "scope", None)
    server = scope.get("server") if scope else None
    if server and len(server) == 2 and server[1] is not None:
        return (str(server[0]), int(server[1]))
    return None


@require_GET
@login_required
def conversation_sidebar(request: HttpRequest) -> HttpResponse:
    """The next page of the sidebar, loaded by htmx as the reader scrolls to its end."""
    conversations, next_cursor = selectors.conversation_page(
        user=request.user, after=request.GET.get("after", "")
    )
    current = selectors.conversation_get(user=request.user, public_id=request.GET.get("current"))
    return render(
        request,
        f"{SIDEBAR}#sidebar_items",
        {
            "conversations": conversations,
            "next_cursor": next_cursor,
            "after_label": request.GET.get("label", ""),
            "conversation": current,
        },
    )


@require_GET
@login_required
@throttled("search", rate=SEARCHES_PER_SECOND, burst=SEARCHES_BURST)
def conversation_search(request: HtmxHttpRequest) -> HttpResponse:
    """Results as the user types (an htmx fragment), or a page of its own without script."""
    query = request.GET.get("q", "")[:200]
    results = selectors.conversation_search(user=request.user, query=query) if query else []
    context = {"query": query, "results": results}
    if request.htmx:
        # Nothing at all for an empty box, so that the sidebar's list shows again.
        html = render_to_string("conversations/search.html#results", context, request=request)
        return HttpResponse(html.strip())
    return render(request, "conversations/search.html", context)


@require_GET
@login_required
def conversation_export(request: HttpRequest, public_id: str, kind: str) -> HttpResponse:
    """One conversation as a download: JSON (every version) or Markdown (what is shown)."""
    conversation = selectors.conversation_get(user=request.user, public_id=public_id)
    if conversation is None or kind not in ("json", "md"):
        raise Http404("No such conversation.")
    stem = exports.file_stem(conversation)
    everything = message_selectors.message_all(conversation=conversation)
    files = attachment_selectors.attachments_for_export(message_ids=[m.pk for m in everything])
    if kind == "json":
        document = exports.conversation_document(conversation, everything, files)
        response = HttpResponse(
            exports.to_json([document]), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{stem}.json"'
        return response
    path = [item.message for item in message_selectors.message_list(conversation=conversation)]
    names = {pk: [row.name for row, _ in rows] for pk, rows in files.items()}
    response = HttpResponse(
        exports.to_markdown(conversation, path, len(everything), names),
        content_type="text/markdown; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{stem}.md"'
    return response
