"""Pages. Views orchestrate: reads through selectors, writes through services/generation."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from . import generation, selectors, services


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    conversations = selectors.conversation_list(user=request.user)
    return render(request, "conversations/home.html", {"conversations": conversations})


@require_GET
@login_required
def conversation_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    conversation = selectors.conversation_get(user=request.user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    messages = selectors.message_list(conversation=conversation)
    streaming = any(m.is_streaming for m in messages)
    return render(
        request,
        "conversations/conversation.html",
        {
            "conversation": conversation,
            "messages": messages,
            "streaming": streaming,
            "conversations": selectors.conversation_list(user=request.user, limit=50),
            "ws_path": f"/ws/conversations/{conversation.public_id}/",
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
