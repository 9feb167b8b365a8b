"""Pages. Views orchestrate: reads through selectors, writes through services and turns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import quotas
from chatsite.throttle import throttled
from moderation import selectors as moderation_selectors
from moderation import services as moderation_services

from . import catalog, selectors, services, upstream
from .fragments import PAGE
from .models import Conversation, ImportJob
from .portability import exports, parsing, reading, writing
from .streaming import broadcast, turns

# Cheap actions, per user and process (chatsite/throttle.py): generous for a person, a
# wall for a loop. Reports fill the moderators' queue, so fewer of those.
EDITS_PER_SECOND, EDITS_BURST = 5.0, 20
SEARCHES_PER_SECOND, SEARCHES_BURST = 5.0, 20
REPORTS_PER_SECOND, REPORTS_BURST = 0.1, 5
# Checking a refused file costs about a second of a worker thread per 15 MB.
IMPORTS_PER_SECOND, IMPORTS_BURST = 0.1, 3


@require_GET
@login_required
async def home(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    choices = await _model_choices(request)
    return await sync_to_async(_home_page)(
        request, user, choices, archived=request.GET.get("archived") == "1"
    )


def _home_page(
    request: HttpRequest,
    user: Any,
    choices: list[str],
    *,
    archived: bool = False,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    preferences = selectors.user_settings_for(user=user)
    context = {
        "conversations": selectors.conversation_list(user=user, archived=archived),
        "archived": archived,
        "model_choices": choices,
        "selected_model": extra.pop("selected_model", "") or preferences.default_model,
        **extra,
    }
    return render(request, "conversations/home.html", context, status=status)


@require_GET
@login_required
async def conversation_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    user = await request.auser()
    choices = await _model_choices(request)
    return await sync_to_async(_conversation_page)(request, user, public_id, choices)


def _conversation_page(
    request: HttpRequest,
    user: Any,
    public_id: str,
    choices: list[str],
    *,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    conversation = selectors.conversation_get(user=user, public_id=public_id)
    if conversation is None:
        raise Http404("No such conversation.")
    messages = selectors.message_list(conversation=conversation)
    streaming = any(m.is_streaming for m in messages)
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
            "model_choices": _with_current(choices, conversation.model),
            "usage": selectors.usage_for_conversation(conversation=conversation),
            "quota_text": _quota_text(user),
            "ws_path": f"/ws/conversations/{conversation.public_id}/"
            + (f"?seen={messages[-1].pk}-{messages[-1].status}" if messages else ""),
            **extra,
        },
        status=status,
    )


def _from_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


async def _whole_page(
    request: HttpRequest, conversation: Conversation, *, status: int = 200, **extra: Any
) -> HttpResponse:
    """A form that was submitted without htmx (no script yet, or a swap not yet
    processed): the result as a whole page, so nothing typed is lost."""
    if status == 200:
        # 303: the reload that follows is a GET, not the form again.
        url = reverse("conversation_detail", args=[conversation.public_id])
        return HttpResponseRedirect(url, status=303)
    user = await request.auser()
    choices = await _model_choices(request)
    return await sync_to_async(_conversation_page)(
        request, user, str(conversation.public_id), choices, status=status, **extra
    )


def _quota_text(user: Any) -> str:
    allowance = quotas.allowance(user_id=user.pk)
    return allowance.text if allowance is not None and allowance.low else ""


async def _model_choices(request: HttpRequest) -> list[str]:
    config = upstream.configured(server=_server_address(request))
    return await catalog.model_choices(config=config)


def _with_current(choices: list[str], current: str) -> list[str]:
    # A model no longer offered still shows as the conversation's current one.
    return choices if current in choices or not current else [current, *choices]


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
    choices = await _model_choices(request)
    preferences = await sync_to_async(selectors.user_settings_for)(user=user)
    model = request.POST.get("model") or preferences.default_model
    conversation = await sync_to_async(services.conversation_create)(
        owner=user,
        # A model that is not (or no longer) offered falls back to the site's default.
        model=model if model in choices else choices[0],
        system_prompt=preferences.default_system_prompt,
    )
    if text.strip():
        server = _server_address(request)
        try:
            await turns.turn_send(conversation=conversation, text=text, server=server)
        except (services.RateLimited, services.ConversationBusy) as exc:
            # Nothing was saved for the message: leave no empty conversation behind either.
            await conversation.adelete()
            return await _home_with_error(request, user, text, exc.user_message, 429)
    return HttpResponseRedirect(reverse("conversation_detail", args=[conversation.public_id]))


async def _home_with_error(
    request: HttpRequest, user: object, text: str, error: str, status: int
) -> HttpResponse:
    choices = await _model_choices(request)
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
@throttled("edit", rate=EDITS_PER_SECOND, burst=EDITS_BURST)
async def conversation_rename(request: HttpRequest, public_id: str) -> HttpResponse:
    conversation = await _owned(request, public_id)
    title = request.POST.get("title", "")
    try:
        await sync_to_async(services.conversation_rename)(conversation=conversation, title=title)
    except ValidationError as exc:
        error = {"rename_error": " ".join(exc.messages), "rename_value": title[:300]}
        if not _from_htmx(request):
            return await _whole_page(request, conversation, status=422, **error)
        # 422: htmx swaps it in (see responseHandling in base.html) so the error shows.
        return await _title_area(request, conversation, status=422, **error)
    await broadcast.conversation_announce_title(conversation=conversation)
    if not _from_htmx(request):
        return await _whole_page(request, conversation)
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
async def conversation_delete(request: HttpRequest, public_id: str) -> HttpResponse:
    conversation = await _owned(request, public_id)
    await broadcast.conversation_remove(conversation=conversation)
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
@throttled("search", rate=SEARCHES_PER_SECOND, burst=SEARCHES_BURST)
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


@require_POST
@login_required
@throttled("edit", rate=EDITS_PER_SECOND, burst=EDITS_BURST)
async def conversation_configure(request: HttpRequest, public_id: str) -> HttpResponse:
    """The model for the next answers, and the conversation's instructions."""
    conversation = await _owned(request, public_id)
    choices = await _model_choices(request)
    context: dict[str, Any] = {"conversation": conversation}
    status = 200
    try:
        await sync_to_async(services.conversation_configure)(
            conversation=conversation,
            choices=choices,
            model=request.POST.get("model"),
            system_prompt=request.POST.get("system_prompt"),
        )
        context["configure_saved"] = True
    except ValidationError as exc:
        context["configure_error"] = " ".join(exc.messages)
        status = 422
    if not _from_htmx(request):
        error = {"configure_error": context["configure_error"]} if status == 422 else {}
        return await _whole_page(request, conversation, status=status, **error)
    context["model_choices"] = _with_current(choices, conversation.model)
    context["usage"] = await sync_to_async(selectors.usage_for_conversation)(
        conversation=conversation
    )
    html = await sync_to_async(render_to_string)(f"{PAGE}#configure", context, request=request)
    return HttpResponse(html, status=status)


@require_http_methods(["GET", "POST"])
@login_required
async def user_settings(request: HttpRequest) -> HttpResponse:
    """Defaults for new conversations, this month's usage, taking data away, the account."""
    user = await request.auser()
    choices = await _model_choices(request)
    return await sync_to_async(_user_settings_page)(
        request, user, choices, save=request.method == "POST"
    )


def _user_settings_page(
    request: HttpRequest,
    user: Any,
    choices: list[str],
    *,
    save: bool = False,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    context: dict[str, Any] = {"model_choices": choices, **extra}
    if save:
        try:
            services.user_settings_update(
                user=user,
                choices=choices,
                default_model=request.POST.get("default_model", ""),
                default_system_prompt=request.POST.get("default_system_prompt", ""),
            )
            context["saved"] = True
        except ValidationError as exc:
            context["settings_error"] = " ".join(exc.messages)
            status = 422
    context["preferences"] = selectors.user_settings_for(user=user)
    context["usage"] = selectors.usage_this_month(user=user)
    if "import_job" in context:
        context.update(_import_context(job=context["import_job"]))
    else:
        context.update(_import_context(job=selectors.import_job_recent(user=user)))
    context["accesses"] = (
        moderation_selectors.access_log_for_owner(user=user)
        if settings.CHATSITE_SHOW_ACCESS_LOG_TO_USERS
        else None
    )
    return render(request, "conversations/settings.html", context, status=status)


@require_GET
@login_required
def conversation_export(request: HttpRequest, public_id: str, kind: str) -> HttpResponse:
    """One conversation as a download: JSON (every version) or Markdown (what is shown)."""
    conversation = selectors.conversation_get(user=request.user, public_id=public_id)
    if conversation is None or kind not in ("json", "md"):
        raise Http404("No such conversation.")
    stem = exports.file_stem(conversation)
    if kind == "json":
        document = exports.conversation_document(
            conversation, selectors.message_all(conversation=conversation)
        )
        response = HttpResponse(
            exports.to_json([document]), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{stem}.json"'
        return response
    path = selectors.message_list(conversation=conversation)
    total = len(selectors.message_all(conversation=conversation))
    response = HttpResponse(
        exports.to_markdown(conversation, path, total),
        content_type="text/markdown; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{stem}.md"'
    return response


@require_GET
@login_required
async def export_all(request: HttpRequest) -> StreamingHttpResponse:
    """Every conversation of the user, JSON and Markdown, as one zip. Streamed: the
    server holds a batch of conversations at a time, never the archive."""
    user = await request.auser()
    return export_zip_response(user)


EXPORT_BATCH = 20  # conversations read per query while the zip streams


def export_zip_response(user: Any) -> StreamingHttpResponse:
    """The zip of all of a user's conversations, as a streaming download (the settings
    page's export, and the admin's export of one user's data)."""

    def build(batch: list[int], archive: exports.ZipStream) -> bytes:
        out = b""
        for conversation, messages in selectors.conversation_batch(user=user, ids=batch):
            stem = "conversations/" + exports.file_stem(conversation)
            document = exports.conversation_document(conversation, messages)
            out += archive.add(f"{stem}.json", exports.to_json([document]))
            path = selectors.message_list(conversation=conversation)
            markdown = exports.to_markdown(conversation, path, len(messages))
            out += archive.add(f"{stem}.md", markdown.encode())
        return out

    async def stream() -> AsyncIterator[bytes]:
        ids = await sync_to_async(selectors.conversation_ids)(user=user)
        archive = exports.ZipStream()
        for start in range(0, len(ids), EXPORT_BATCH):
            chunk = await sync_to_async(build)(ids[start : start + EXPORT_BATCH], archive)
            if chunk:
                yield chunk
        yield archive.close()

    response = StreamingHttpResponse(stream(), content_type="application/zip")
    stamp = timezone.now().strftime("%Y-%m-%d")
    name = f"chatsite-{user.get_username()}-{stamp}.zip"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_POST
@login_required
@throttled("import", rate=IMPORTS_PER_SECOND, burst=IMPORTS_BURST)
async def conversation_import(request: HttpRequest) -> HttpResponse:
    """A chatsite export (JSON or zip) or ChatGPT's conversations.json. The whole file is
    checked first: a refusal says why (400) and nothing is written. Then it is written in
    short transactions, hidden until complete: a small file before the page answers, a
    large one after, while the page shows its progress (202)."""
    user = await request.auser()
    choices = await _model_choices(request)

    def check() -> tuple[IO[bytes], parsing.ImportTotals, str]:
        upload = request.FILES.get("file")
        if upload is None:
            raise reading.ImportRefused("Choose a file to import.")
        copy = parsing.upload_copy(upload)
        try:
            return copy, parsing.import_check(copy), upload.name or ""
        except BaseException:
            copy.close()
            raise

    try:
        # CPU-bound and no database: a worker thread, off the event loop and off the
        # thread that every request's database work shares.
        copy, totals, name = await sync_to_async(check, thread_sensitive=False)()
    except reading.ImportRefused as exc:
        return await sync_to_async(_user_settings_page)(
            request, user, choices, status=400, import_error=str(exc)
        )

    def write() -> HttpResponse:
        try:
            job = writing.import_job_create(owner=user, totals=totals, name=name)
        except reading.ImportRefused as exc:
            copy.close()
            return _user_settings_page(request, user, choices, status=409, import_error=str(exc))
        if writing.import_in_background(totals=totals):
            writing.import_job_launch(job=job, upload=copy)  # closes the copy when done
            return _user_settings_page(request, user, choices, status=202, import_job=job)
        try:
            job = writing.import_job_run(job=job, upload=copy)
        finally:
            copy.close()
        status = 200 if job.status == ImportJob.Status.COMPLETE else 500
        return _user_settings_page(request, user, choices, status=status, import_job=job)

    return await sync_to_async(write)()


@require_GET
@login_required
def conversation_import_status(request: HttpRequest, public_id: str) -> HttpResponse:
    """An import's progress, polled by the settings page while it is written, then its
    result (the same fragment the page renders)."""
    job = selectors.import_job_get(user=request.user, public_id=public_id)
    if job is None:
        raise Http404("No such import.")
    return render(request, "conversations/settings.html#import_status", _import_context(job=job))


def _import_context(*, job: ImportJob | None) -> dict[str, Any]:
    if job is None:
        return {"import_job": None}
    shown = (
        selectors.import_job_conversations(job=job)
        if job.status == ImportJob.Status.COMPLETE
        else []
    )
    return {
        "import_job": job,
        "import_conversations": shown,
        "import_more": max(job.conversations_done - len(shown), 0),
        # Its process died: the next import, or the nightly purge, deletes what it wrote.
        "import_stalled": job.stalled,
    }


@require_POST
@login_required
async def account_delete(request: HttpRequest) -> HttpResponse:
    """Delete the account and all its data, after the password is confirmed."""
    user = await request.auser()
    try:
        await sync_to_async(services.user_password_confirm)(
            user=user, password=request.POST.get("password")
        )
    except ValidationError as exc:
        choices = await _model_choices(request)
        return await sync_to_async(_user_settings_page)(
            request, user, choices, status=400, delete_error=" ".join(exc.messages)
        )
    # Its answers' partials no longer matter, but their upstream calls must end.
    assert user.pk is not None  # signed in: login_required
    await broadcast.user_answers_stop(user_id=user.pk)
    await sync_to_async(services.user_delete)(user=user)
    await sync_to_async(logout)(request)
    return HttpResponseRedirect(reverse("login"))


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
            reporter=request.user,
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
