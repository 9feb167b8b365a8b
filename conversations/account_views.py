"""Sign-up, and the page a refused sign-in gets (login and logout are Django's own views)."""

from __future__ import annotations

from typing import Any

from axes.helpers import get_client_username
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model, login
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.forms import LoginForm
from accounts.throttling import client_address

from . import services


class SignupForm(UserCreationForm):
    """Validation only: the account itself is created by services.user_create."""

    class Meta:
        model = get_user_model()
        fields = ("username",)


def _refused(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    lockout: account_selectors.Lockout,
) -> HttpResponse:
    """The page again with the notice, 429 and Retry-After."""
    notice = account_selectors.lockout_notice(lockout)
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
        lockout = account_selectors.signup_lockout(address=address)
        if lockout is None and form.is_valid():
            try:
                account_services.signup_record(address=address)
            except account_services.SignupLimitReached as refused:
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
    lockouts = account_selectors.signin_lockouts(
        username=username, address=getattr(request, "axes_ip_address", None)
    )
    if lockouts:
        lockout = max(lockouts, key=lambda lockout: lockout.until)
    else:  # the limits were changed meanwhile: nothing left to wait for
        lockout = account_selectors.Lockout(scope="signin", until=timezone.now())
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
    return _refused(request, "registration/login.html", context, lockout)
