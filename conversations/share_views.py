"""Share links: the owner makes one from a conversation (the share dialog), and anyone with
the link reads the shared page, signed in or not. Reads through share_selectors, writes
through share_services; revoking is on the settings page (accounts.views)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST, require_safe

from chatsite.errors import ActionRefused
from chatsite.throttle import throttled
from chatsite.types import account_of

from . import selectors, share_selectors, share_services

# Per process, on top of the hourly limit counted in the database (share_services).
SHARES_PER_SECOND, SHARES_BURST = 0.5, 10
NOT_INDEXED = "noindex, nofollow"


@require_POST
@login_required
@throttled("share", rate=SHARES_PER_SECOND, burst=SHARES_BURST)
def share_create(request: HttpRequest, public_id: str) -> HttpResponse:
    """The share dialog's Create: a new link, shown with its Copy button (or why not)."""
    user = account_of(request.user)
    conversation = selectors.conversation_get(user=user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    up_to = request.POST.get("up_to", "")
    context: dict[str, Any] = {"up_to": up_to}
    status = 200
    try:
        share = share_services.share_create(
            owner=user,
            conversation=conversation,
            up_to=up_to,
            show_owner_name=request.POST.get("show_owner_name") in ("1", "on"),
        )
    except ValidationError as exc:
        context["share_error"], status = " ".join(exc.messages), 422
    except ActionRefused as exc:
        # 422: htmx swaps it in (base.html's responseHandling), so the reason shows.
        context["share_error"], status = exc.user_message, 422
    else:
        context["share"] = share
        context["share_url"] = request.build_absolute_uri(
            reverse("shared_conversation", args=[share.token])
        )
    return render(request, "conversations/share.html#share_result", context, status=status)


@require_safe
def shared_conversation(request: HttpRequest, token: str) -> HttpResponse:
    """The shared page: the copy as it was shared, for anyone with the link; the site's
    404 when it is revoked, taken down, its owner suspended, or no such link."""
    found = share_selectors.share_get_public(token=token)
    if found is None:
        raise Http404("No such shared conversation.")
    response = render(
        request,
        "conversations/shared.html",
        {
            "share": found.share,
            "messages": found.messages,
            "owner_name": found.owner_name,
            "title": found.title,
        },
    )
    response["X-Robots-Tag"] = NOT_INDEXED
    # The token is the address: never sent on to the sites its links lead to.
    response["Referrer-Policy"] = "no-referrer"
    # Revoking must take effect at once: no copy kept by a browser or a proxy.
    add_never_cache_headers(response)
    return response
