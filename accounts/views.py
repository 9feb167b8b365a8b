"""The account's pages: sign-up, the page a refused sign-in gets (sign-in and sign-out are
Django's own views), and the settings page with what it holds: defaults for new
conversations, this month's usage, the access log, taking data away and bringing it in,
deleting the account. Views orchestrate: conversations' data through its selectors and
services, answers through its streaming surface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO, Any

from asgiref.sync import sync_to_async
from axes.helpers import get_client_username
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chatsite.throttle import throttled
from chatsite.types import Account, account_of
from conversations import (
    attachment_selectors,
    catalog,
    share_selectors,
    share_services,
    upstream,
    usage_selectors,
)
from conversations import selectors as conversation_selectors
from conversations import services as conversation_services
from conversations.models import ImportJob
from conversations.portability import exports, parsing, reading, writing
from conversations.streaming import broadcast
from moderation import selectors as moderation_selectors

from . import quotas, selectors, services, sso
from .forms import LoginForm
from .throttling import client_address

SETTINGS_PAGE = "accounts/settings.html"
# Checking a refused file costs about a second of a worker thread per 15 MB.
IMPORTS_PER_SECOND, IMPORTS_BURST = 0.1, 3


class SignupForm(UserCreationForm):
    """Validation only: the account itself is created by services.user_create."""

    class Meta:
        model = get_user_model()
        fields = ("username",)

    def validate_password_for_user(self, user: Any, **kwargs: Any) -> None:
        # Django puts "This password is too common" under the confirmation; a person
        # looks for it under the password they chose. A mismatch stays on the confirmation.
        # (django-stubs do not know this method of Django's SetPasswordMixin yet.)
        super().validate_password_for_user(user, password_field_name="password1")  # type: ignore[misc]


def _refused(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    lockout: selectors.Lockout,
) -> HttpResponse:
    """The page again with the notice, 429 and Retry-After."""
    notice = selectors.lockout_notice(lockout)
    response = render(request, template, {**context, "limit_notice": notice}, status=429)
    response["Retry-After"] = str(lockout.seconds_left())
    add_never_cache_headers(response)
    return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.CHATSITE_SIGNUP_ENABLED:
        raise Http404("Sign-up is closed on this site.")
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        address = client_address(request)
        # Said before the form is checked: nothing the visitor could fix would help.
        lockout = selectors.signup_lockout(address=address)
        if lockout is None and form.is_valid():
            try:
                services.signup_record(address=address)
            except services.SignupLimitReached as refused:
                lockout = refused.lockout  # another process took the last place
            else:
                user = services.user_create(
                    username=form.cleaned_data["username"],
                    password=form.cleaned_data["password1"],
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")  # type: ignore[arg-type]
                return redirect("home")
        if lockout is not None:
            blank = SignupForm(initial={"username": request.POST.get("username", "")})
            return _refused(request, "registration/signup.html", {"form": blank}, lockout)
    return render(request, "registration/signup.html", {"form": form})


_password_signin = auth_views.LoginView.as_view(authentication_form=LoginForm)


@require_http_methods(["GET", "POST"])
def signin(request: HttpRequest) -> HttpResponseBase:
    """Django's sign-in view with the site's form; with CHATSITE_LOCAL_SIGNIN_ENABLED off the
    page offers the identity providers only and a posted password is refused unread."""
    if request.method == "POST" and not settings.CHATSITE_LOCAL_SIGNIN_ENABLED:
        context = {
            "next": _next_url(request),
            "refused_notice": "Passwords are not accepted here: sign in with your "
            "organisation's account.",
        }
        return sso.allow_provider_forms(
            render(request, "registration/login.html", context, status=403)
        )
    return sso.allow_provider_forms(_password_signin(request))


@require_http_methods(["GET", "POST"])
def admin_signin(request: HttpRequest) -> HttpResponse:
    """The admin's sign-in: its own password form, or, with local sign-in off, the site's
    sign-in page (single sign-on), coming back to the admin."""
    if settings.CHATSITE_LOCAL_SIGNIN_ENABLED:
        return admin.site.login(request)
    url = reverse("login") + "?" + urlencode({"next": _next_url(request) or reverse("admin:index")})
    return HttpResponseRedirect(url)


def _next_url(request: HttpRequest) -> str:
    url = request.POST.get("next") or request.GET.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if safe else ""


def signin_refused(
    request: Any, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the sign-in page (the site's, or the admin's for an admin
    sign-in) saying which limit was reached and when to try again, status 429.

    Both arguments are ignored: axes' async middleware passes the credentials in the place
    of the response. What is needed is on the request (axes sets it) or in the POST.
    """
    username = get_client_username(request, getattr(request, "axes_credentials", None))
    lockouts = selectors.signin_lockouts(
        username=username, address=getattr(request, "axes_ip_address", None)
    )
    if lockouts:
        lockout = max(lockouts, key=lambda lockout: lockout.until)
    else:  # the limits were changed meanwhile: nothing left to wait for
        lockout = selectors.Lockout(scope="signin", until=timezone.now())
    initial = {"username": username or ""}
    if request.path.startswith(reverse("admin:index")):
        request.current_app = admin.site.name
        context = {
            **admin.site.each_context(request),
            "title": _("Log in"),
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
            "form": AdminAuthenticationForm(request, initial=initial),
            "next": _next_url(request) or reverse("admin:index"),
        }
        return _refused(request, "registration/admin_login_refused.html", context, lockout)
    context = {"form": LoginForm(request, initial=initial), "next": _next_url(request)}
    return sso.allow_provider_forms(_refused(request, "registration/login.html", context, lockout))


# --- the settings page ----------------------------------------------------------------------


async def _model_choices(request: HttpRequest) -> list[str]:
    return await catalog.model_choices(config=upstream.configured(server=_server(request)))


def _server(request: HttpRequest) -> tuple[str, int] | None:
    scope = getattr(request, "scope", None)
    server = scope.get("server") if scope else None
    if server and len(server) == 2 and server[1] is not None:
        return (str(server[0]), int(server[1]))
    return None


@require_http_methods(["GET", "POST"])
@login_required
async def user_settings(request: HttpRequest) -> HttpResponse:
    """Defaults for new conversations, this month's usage, the files kept against their
    quota, taking data away, the account."""
    user = account_of(await request.auser())
    choices = await _model_choices(request)
    return await sync_to_async(_settings_page)(
        request, user, choices, save=request.method == "POST"
    )


def _settings_page(
    request: HttpRequest,
    user: Account,
    choices: list[str],
    *,
    save: bool = False,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    context: dict[str, Any] = {"model_choices": choices, **extra}
    if save:
        try:
            conversation_services.user_settings_update(
                user=user,
                choices=choices,
                default_model=request.POST.get("default_model", ""),
                default_system_prompt=request.POST.get("default_system_prompt", ""),
            )
            context["saved"] = True
        except ValidationError as exc:
            context["settings_error"] = " ".join(exc.messages)
            status = 422
    context["preferences"] = conversation_selectors.user_settings_for(user=user)
    context["usage"] = usage_selectors.usage_this_month(user=user)
    limits = quotas.limits_for(user_id=user.pk)
    context["files_used"] = attachment_selectors.attachment_bytes_used(owner_id=user.pk)
    context["files_quota"] = limits.attachment_bytes
    context["file_quota"] = limits.attachment_file_bytes
    context["files_count"] = attachment_selectors.attachment_files_used(owner_id=user.pk)
    context["files_count_quota"] = limits.attachment_files
    job = (
        context["import_job"]
        if "import_job" in context
        else conversation_selectors.import_job_recent(user=user)
    )
    context.update(_import_context(job=job))
    context.update(_shares_context(user))
    context["accesses"] = (
        moderation_selectors.access_log_for_owner(user=user)
        if settings.CHATSITE_SHOW_ACCESS_LOG_TO_USERS
        else None
    )
    return render(request, SETTINGS_PAGE, context, status=status)


# --- taking data away, bringing it in ----------------------------------------------------


@require_GET
@login_required
async def export_all(request: HttpRequest) -> StreamingHttpResponse:
    """Every conversation of the user, JSON and Markdown, as one zip."""
    return export_zip_response(account_of(await request.auser()))


def export_zip_response(user: Account) -> StreamingHttpResponse:
    """The zip of all of a user's conversations, as a streaming download (the settings
    page's export, and the admin's export of one user's data). Streamed: the server holds
    a batch of conversations at a time, never the archive."""

    async def stream() -> AsyncIterator[bytes]:
        ids = await sync_to_async(conversation_selectors.conversation_ids)(user=user)
        archive = exports.ZipStream()
        for batch in exports.batches(ids):
            chunk = await sync_to_async(exports.zip_add_batch)(
                user=user, ids=batch, archive=archive
            )
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
    user = account_of(await request.auser())
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
        return await sync_to_async(_settings_page)(
            request, user, choices, status=400, import_error=str(exc)
        )

    def write() -> HttpResponse:
        try:
            job = writing.import_job_create(owner=user, totals=totals, name=name)
        except reading.ImportRefused as exc:
            copy.close()
            return _settings_page(request, user, choices, status=409, import_error=str(exc))
        if writing.import_in_background(totals=totals):
            writing.import_job_launch(job=job, upload=copy)  # closes the copy when done
            return _settings_page(request, user, choices, status=202, import_job=job)
        try:
            job = writing.import_job_run(job=job, upload=copy)
        finally:
            copy.close()
        status = 200 if job.status == ImportJob.Status.COMPLETE else 500
        return _settings_page(request, user, choices, status=status, import_job=job)

    return await sync_to_async(write)()


@require_GET
@login_required
def conversation_import_status(request: HttpRequest, public_id: str) -> HttpResponse:
    """An import's progress, polled by the settings page while it is written, then its
    result (the same fragment the page renders)."""
    job = conversation_selectors.import_job_get(user=request.user, public_id=public_id)
    if job is None:
        raise Http404("No such import.")
    return render(request, f"{SETTINGS_PAGE}#import_status", _import_context(job=job))


def _import_context(*, job: ImportJob | None) -> dict[str, Any]:
    if job is None:
        return {"import_job": None}
    shown = (
        conversation_selectors.import_job_conversations(job=job)
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


# --- share links -----------------------------------------------------------------------------


@require_POST
@login_required
@throttled("edit", rate=5.0, burst=20)
def share_revoke(request: HttpRequest, share_id: int) -> HttpResponse:
    """The owner revokes one of their share links: its address is a 404 from now on."""
    share = share_selectors.share_get_for_owner(user=request.user, share_id=share_id)
    if share is None:
        raise Http404("No such share link.")
    share_services.share_revoke(share=share)
    if not getattr(request, "htmx", False):
        return HttpResponseRedirect(reverse("user_settings") + "#shares-heading", status=303)
    context = {**_shares_context(request.user), "revoked_title": share.display_title}
    return render(request, f"{SETTINGS_PAGE}#shares", context)


@require_POST
@login_required
@throttled("edit", rate=5.0, burst=20)
def share_revoke_all(request: HttpRequest) -> HttpResponse:
    """The owner revokes every one of their share links at once."""
    revoked = share_services.share_revoke_all(owner=account_of(request.user))
    if not getattr(request, "htmx", False):
        return HttpResponseRedirect(reverse("user_settings") + "#shares-heading", status=303)
    context = {**_shares_context(request.user), "revoked_count": revoked}
    return render(request, f"{SETTINGS_PAGE}#shares", context)


def _shares_context(user: Any) -> dict[str, Any]:
    shares = share_selectors.share_list_for_owner(user=user)
    total = share_selectors.share_count_for_owner(user=user)
    return {"shares": shares, "shares_total": total, "shares_unlisted": total - len(shares)}


# --- the account itself ------------------------------------------------------------------


@require_POST
@login_required
async def account_delete(request: HttpRequest) -> HttpResponse:
    """Delete the account and all its data, after the password (or, with no password, the
    username) is confirmed."""
    user = account_of(await request.auser())
    try:
        await sync_to_async(services.user_deletion_confirm)(
            user=user,
            password=request.POST.get("password"),
            username=request.POST.get("confirm_username"),
        )
    except ValidationError as exc:
        choices = await _model_choices(request)
        return await sync_to_async(_settings_page)(
            request, user, choices, status=400, delete_error=" ".join(exc.messages)
        )
    # Its answers' partials no longer matter, but their upstream calls must end.
    assert user.pk is not None  # signed in: login_required
    await broadcast.user_answers_stop(user_id=user.pk)
    await sync_to_async(services.user_delete)(user=user)
    await sync_to_async(logout)(request)
    return HttpResponseRedirect(reverse("login"))
