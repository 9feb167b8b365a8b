"""Pages. Views orchestrate: reads through selectors, writes through services/generation."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from . import generation, selectors, services
from .fragments import PAGE
from .models import Conversation


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    archived = request.GET.get("archived") == "1"
    conversations = selectors.conversation_list(user=request.user, archived=archived)
    return render(
        request, "conversations/home.html", {"conversations": conversations, "archived": archived}
    )


@require_GET
@login_required
def conversation_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    conversation = selectors.conversation_get(user=request.user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    messages = selectors.message_list(conversation=conversation)
    streaming = any(m.is_streaming for m in messages)
    conversations, next_cursor = selectors.conversation_page(user=request.user)
    return render(
        request,
        "conversations/conversation.html",
        {
            "conversation": conversation,
            "messages": messages,
            "streaming": streaming,
            "conversations": conversations,
            "next_cursor": next_cursor,
            "ws_path": f"/ws/conversations/{conversation.public_id}/"
            + (f"?seen={messages[-1].pk}-{messages[-1].status}" if messages else ""),
        },
    )


@require_POST
@login_required
async def conversation_create(request: HttpRequest) -> HttpResponse:
    """Create a conversation, optionally with its first message (whose answer starts now)."""
    user = await request.auser()
    text = request.POST.get("message", "")
    if text.strip():
        try:
            services.message_text_clean(text=text)
        except ValidationError as exc:
            return await _home_with_error(request, user, text, " ".join(exc.messages), 400)
    conversation = await sync_to_async(services.conversation_create)(
        owner=user, model=settings.OPENAI_MODEL
    )
    if text.strip():
        server = _server_address(request)
        try:
            await generation.generation_begin(conversation=conversation, text=text, server=server)
        except (services.RateLimited, services.ConversationBusy) as exc:
            # Nothing was saved for the message: leave no empty conversation behind either.
            await conversation.adelete()
            return await _home_with_error(request, user, text, exc.user_message, 429)
    return HttpResponseRedirect(reverse("conversation_detail", args=[conversation.public_id]))


async def _home_with_error(
    request: HttpRequest, user: object, text: str, error: str, status: int
) -> HttpResponse:
    conversations = [c async for c in selectors.conversation_list(user=user)]
    return await sync_to_async(render)(
        request,
        "conversations/home.html",
        {
            "conversations": conversations,
            "form_error": error,
            "form_message": text[: settings.CHATSITE_MAX_MESSAGE_CHARS],
        },
        status=status,
    )


def _server_address(request: HttpRequest) -> tuple[str, int] | None:
    """The address this server accepted the request on (for reaching the demo model)."""
    scope = getattr(request, "scope", None)
    server = scope.get("server") if scope else None
    if server and len(server) == 2 and server[1] is not None:
        return (str(server[0]), int(server[1]))
    return None


async def _owned(request: HttpRequest, public_id: Any) -> Conversation:
    user = await request.auser()
    conversation = await sync_to_async(selectors.conversation_get)(user=user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


async def _title_area(
    request: HttpRequest, conversation: Conversation, *, status: int = 200, **extra: Any
) -> HttpResponse:
    user = await request.auser()
    conversations, next_cursor = await sync_to_async(selectors.conversation_page)(user=user)
    context = {
        "conversation": conversation,
        "conversations": conversations,
        "next_cursor": next_cursor,
        **extra,
    }
    area = await sync_to_async(render_to_string)(f"{PAGE}#title_area", context, request=request)
    sidebar = await sync_to_async(render_to_string)(
        f"{PAGE}#sidebar_list", context, request=request
    )
    return HttpResponse(area + sidebar, status=status)


@require_POST
@login_required
async def conversation_rename(request: HttpRequest, public_id: str) -> HttpResponse:
    conversation = await _owned(request, public_id)
    title = request.POST.get("title", "")
    try:
        await sync_to_async(services.conversation_rename)(conversation=conversation, title=title)
    except ValidationError as exc:
        # 422: htmx swaps it in (see responseHandling in base.html) so the error shows.
        return await _title_area(
            request,
            conversation,
            status=422,
            rename_error=" ".join(exc.messages),
            rename_value=title[:300],
        )
    await generation.conversation_announce_title(conversation=conversation)
    return await _title_area(request, conversation)


@require_POST
@login_required
async def conversation_flags(request: HttpRequest, public_id: str) -> HttpResponse:
    conversation = await _owned(request, public_id)
    flags = {
        name: request.POST[name] == "1" for name in ("pinned", "archived") if name in request.POST
    }
    await sync_to_async(services.conversation_set_flags)(conversation=conversation, **flags)
    return await _title_area(request, conversation)


@require_POST
@login_required
async def conversation_delete(request: HttpRequest, public_id: str) -> HttpResponse:
    conversation = await _owned(request, public_id)
    await generation.conversation_remove(conversation=conversation)
    if request.headers.get("HX-Request"):
        # Not a 302: the browser's XHR would follow it and htmx would swap the home page
        # into the button. htmx navigates on HX-Redirect instead.
        response = HttpResponse(status=200)
        response["HX-Redirect"] = reverse("home")
        return response
    return HttpResponseRedirect(reverse("home"))


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
        f"{PAGE}#sidebar_items",
        {
            "conversations": conversations,
            "next_cursor": next_cursor,
            "after_label": request.GET.get("label", ""),
            "conversation": current,
        },
    )


@require_GET
@login_required
def conversation_search(request: HttpRequest) -> HttpResponse:
    """Results as the user types (an htmx fragment), or a page of its own without script."""
    query = request.GET.get("q", "")[:200]
    results = selectors.conversation_search(user=request.user, query=query) if query else []
    context = {"query": query, "results": results}
    if request.headers.get("HX-Request"):
        # Nothing at all for an empty box, so that the sidebar's list shows again.
        html = render_to_string("conversations/search.html#results", context, request=request)
        return HttpResponse(html.strip())
    return render(request, "conversations/search.html", context)
