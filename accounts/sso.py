"""Single sign-on through django-allauth's OpenID Connect provider and its GitHub provider
(plain OAuth 2), held to the site's rules.

allauth runs the redirect flow (state, PKCE, the ID token's signature, issuer and audience;
for GitHub the code's exchange and the API's /user and /user/emails); these adapters decide
who may come in, at the points allauth offers, for every provider alike:

- SocialAccountAdapter.pre_social_login, once the provider vouched for someone: the e-mail
  domain allow-list (a verified address required), and linking. A provider's identity is
  linked to an existing account with the same address only when the provider says the
  address is verified; an unverified one that matches an account is refused (no account,
  no link), so nobody takes over an account by typing its address at some provider.
- SocialAccountAdapter.save_user: a new account, through accounts.services (the sign-up
  limit per address, and the first account of the site becomes its superuser).
- AccountAdapter.pre_login, before any sign-in through allauth: suspensions, exactly as the
  site's sign-in form checks them.

Every refusal is a page of the site's own (base.html, under its CSP) and changes nothing.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.github.provider import GitHubProvider as _GitHubProvider
from allauth.socialaccount.providers.github.views import GitHubOAuth2Adapter
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect import views as openid_connect_views
from django.conf import settings
from django.contrib.auth import login as django_login
from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods

from chatsite.middleware import policy_with_form_action

from . import selectors, services
from .throttling import client_address

_Response = TypeVar("_Response", bound=HttpResponseBase)
REFUSED_PAGE = "registration/sso_refused.html"
# Sessions from single sign-on are the same sessions as a password's: the same backend
# loads their user on every request and websocket.
SESSION_BACKEND = "django.contrib.auth.backends.ModelBackend"


def allow_provider_forms(response: _Response) -> _Response:
    """A page with "Sign in with …" forms: their navigation may go on to the providers (an
    OpenID Connect issuer's origin; an OAuth provider's, where its authorisation page is)."""
    urls = [provider.issuer for provider in settings.CHATSITE_OIDC_PROVIDERS]
    urls += [provider.url for provider in settings.CHATSITE_OAUTH_PROVIDERS]
    origins = sorted({"{0.scheme}://{0.netloc}".format(urlsplit(url)) for url in urls})
    if origins:
        response["Content-Security-Policy"] = policy_with_form_action(*origins)
    return response


def _start(request: HttpRequest, start: Any, *args: Any) -> HttpResponseBase:
    process = request.POST.get("process") or request.GET.get("process") or "login"
    if process != "login":
        # allauth's "connect" would link a provider's identity to whoever is signed in,
        # outside the rules below: the site signs people in, it does not link on request.
        return refusal(
            request,
            heading="Single sign-on did not start",
            notice="Only signing in is offered here. Nothing was changed.",
            status=400,
        )
    return allow_provider_forms(start(request, *args))


@require_http_methods(["GET", "POST"])
def provider_login(request: HttpRequest, provider_id: str) -> HttpResponseBase:
    """allauth's start of a sign-in (a POST from the sign-in page; a GET gets its page
    asking for that POST), under a policy that lets the form go on to the provider."""
    return _start(request, openid_connect_views.login, provider_id)


class GitHubOAuth2AdapterAtRequest(GitHubOAuth2Adapter):
    """allauth's GitHub adapter, its URLs from GITHUB_URL when used. (allauth's own reads
    the setting once, when its module is imported; the same URLs otherwise: the
    authorisation at <url>/login/oauth/, the API at api.github.com or <url>/api/v3.)"""

    @property
    def web_url(self) -> str:
        url = settings.SOCIALACCOUNT_PROVIDERS["github"].get("GITHUB_URL", "https://github.com")
        return str(url).rstrip("/")

    @property
    def api_url(self) -> str:
        if self.web_url == "https://github.com":
            return "https://api.github.com"
        return f"{self.web_url}/api/v3"

    @property
    def access_token_url(self) -> str:
        return f"{self.web_url}/login/oauth/access_token"

    @property
    def authorize_url(self) -> str:
        return f"{self.web_url}/login/oauth/authorize"

    @property
    def profile_url(self) -> str:
        return f"{self.api_url}/user"

    @property
    def emails_url(self) -> str:
        return f"{self.api_url}/user/emails"


class GitHubProvider(_GitHubProvider):
    """allauth's GitHub provider (SOCIALACCOUNT_PROVIDERS["github"]["provider_class"]),
    with the adapter above and the button's label as its name."""

    oauth2_adapter_class = GitHubOAuth2AdapterAtRequest

    def __init__(self, request: HttpRequest, app: Any = None) -> None:
        super().__init__(request, app=app)
        if app is not None and app.name:
            self.name = app.name


def _oauth_configured(provider_id: str) -> None:
    if not any(p.id == provider_id for p in settings.CHATSITE_OAUTH_PROVIDERS):
        raise Http404("No such identity provider.")


_github_login = OAuth2LoginView.adapter_view(GitHubOAuth2AdapterAtRequest)
_github_callback = OAuth2CallbackView.adapter_view(GitHubOAuth2AdapterAtRequest)


@require_http_methods(["GET", "POST"])
def github_login(request: HttpRequest) -> HttpResponseBase:
    """The start of a sign-in through GitHub, as provider_login for OpenID Connect."""
    _oauth_configured("github")
    return _start(request, _github_login)


@require_GET
def github_callback(request: HttpRequest) -> HttpResponseBase:
    """Where GitHub sends the browser back: allauth's callback, when GitHub is configured."""
    _oauth_configured("github")
    return _github_callback(request)


def refusal(request: HttpRequest, *, heading: str, notice: str, status: int) -> HttpResponse:
    response = render(request, REFUSED_PAGE, {"heading": heading, "notice": notice}, status=status)
    add_never_cache_headers(response)
    return response


def _refuse(request: HttpRequest, *, heading: str, notice: str, status: int = 403) -> None:
    raise ImmediateHttpResponse(refusal(request, heading=heading, notice=notice, status=status))


def provider_email(sociallogin: SocialLogin) -> tuple[str, bool]:
    """The address the provider gave and whether it said the address is verified (the
    `email_verified` claim; some providers send it as the string "true")."""
    for address in sociallogin.email_addresses:
        if address.email:
            return address.email.strip(), address_verified(address)
    return "", False


def address_verified(address: Any) -> bool:
    return address.verified is True or str(address.verified).lower() == "true"


def provider_claims(sociallogin: SocialLogin) -> dict[str, Any]:
    """What the provider said about the person: its userinfo, else the ID token's claims."""
    data = sociallogin.account.extra_data or {}
    claims = data.get("userinfo") or data.get("id_token") or data
    return claims if isinstance(claims, dict) else {}


def email_domain_allowed(*, email: str, verified: bool) -> bool:
    domains = settings.CHATSITE_SSO_EMAIL_DOMAINS
    if not domains:
        return True
    domain = email.rpartition("@")[2].lower()
    return verified and "@" in email and domain in domains


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        if (sociallogin.state or {}).get("process", "login") != "login":
            _refuse(
                request,
                heading="Single sign-on did not complete",
                notice="Only signing in is offered here. Nothing was changed.",
                status=400,
            )
        email, verified = provider_email(sociallogin)
        if not email_domain_allowed(email=email, verified=verified):
            domains = ", ".join(settings.CHATSITE_SSO_EMAIL_DOMAINS)
            _refuse(
                request,
                heading="This address cannot sign in here",
                notice=(
                    f"Single sign-on is open to verified addresses at {domains} only. "
                    "No account was created."
                    if verified or not email
                    else f"Single sign-on is open to verified addresses at {domains} "
                    "only, and the identity provider did not say that yours is verified. "
                    "No account was created."
                ),
            )
        if sociallogin.is_existing:
            return  # this identity is linked already: AccountAdapter.pre_login checks it
        matches = selectors.users_with_email(email=email)
        if not matches:
            return  # a new account: save_user
        if not verified or len(matches) > 1:
            _refuse(
                request,
                heading="An account here already uses this address",
                notice=(
                    "The identity provider did not say that this address is verified, so it "
                    "cannot sign in to the existing account. Sign in with that account's "
                    "password, or ask an administrator. No account was created."
                    if not verified
                    else "More than one account here uses this address: ask an "
                    "administrator. No account was created."
                ),
                status=409,
            )
        user = matches[0]
        if not user.is_active:  # refused before the link is saved, as below
            _refuse(
                request,
                heading="Account inactive",
                notice="This account has been deactivated. Ask an administrator.",
            )
        suspension = selectors.suspension_current(user_id=user.pk)
        if suspension is not None:  # refused before the link is saved: nothing changes
            _refuse(
                request, heading="Account suspended", notice=selectors.suspension_notice(suspension)
            )
        # The provider verified the address and an account here has it: the same person.
        sociallogin.connect(request, user)

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        # CHATSITE_SIGNUP_ENABLED closes the local form; who comes in through a provider is
        # the provider's (and CHATSITE_SSO_EMAIL_DOMAINS') to say.
        return True

    def is_auto_signup_allowed(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return True

    def save_user(
        self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None
    ) -> AbstractBaseUser:
        email, verified = provider_email(sociallogin)
        claims = provider_claims(sociallogin)
        hint = (
            str(claims.get("preferred_username") or "")
            or str(claims.get("login") or "")  # GitHub's username
            or email.partition("@")[0]
            or str(claims.get("name") or "")
            or sociallogin.account.uid
        )

        def link(user: AbstractBaseUser) -> None:
            sociallogin.user = user
            # allauth's save copies the provider's addresses onto the account: only the
            # verified ones (see `email` below).
            sociallogin.email_addresses = [
                address for address in sociallogin.email_addresses if address_verified(address)
            ]
            sociallogin.save(request)

        try:
            return services.user_create_from_sso(
                username_hint=hint,
                # Only an address the provider verified is kept: a stored address is what
                # a later verified sign-in links to, so an unverified one would let
                # someone claim an address that is not theirs and catch its owner's
                # sign-in in their own account.
                email=email if verified else "",
                address=client_address(request),
                link=link,
            )
        except services.SignupLimitReached as refused:
            response = refusal(
                request, heading="Too many new accounts", notice=str(refused), status=429
            )
            response["Retry-After"] = str(refused.lockout.seconds_left())
            raise ImmediateHttpResponse(response) from refused


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False  # allauth's own local sign-up: never (the site has its own)

    def pre_login(self, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> Any:
        suspension = selectors.suspension_current(user_id=user.pk)
        if suspension is not None:
            return refusal(
                request,
                heading="Account suspended",
                notice=selectors.suspension_notice(suspension),
                status=403,
            )
        if not user.is_active:
            return refusal(
                request,
                heading="Account inactive",
                notice="This account has been deactivated. Ask an administrator.",
                status=403,
            )
        return super().pre_login(request, user, **kwargs)

    def login(self, request: HttpRequest, user: AbstractBaseUser) -> None:
        django_login(request, user, backend=SESSION_BACKEND)  # type: ignore[arg-type]

    def add_message(self, *args: Any, **kwargs: Any) -> None:
        pass  # the site shows no flash messages: they would pile up in the session

    def send_notification_mail(self, *args: Any, **kwargs: Any) -> None:
        pass  # the site sends no mail


@require_GET
def signup_unreachable(request: HttpRequest) -> HttpResponse:
    """Where allauth would send a sign-in it could not complete by itself (its own sign-up
    form). The adapters above decide every such case first; this says so if one slips by."""
    return refusal(
        request,
        heading="Single sign-on did not complete",
        notice="The identity provider's answer could not be used here. No account was created.",
        status=400,
    )


@require_GET
def login_cancelled(request: HttpRequest) -> HttpResponse:
    """Where allauth sends someone who turned the provider down (its own view reverses
    allauth's sign-in page, which is not mounted)."""
    return render(request, "socialaccount/login_cancelled.html")


@require_GET
def login_error(request: HttpRequest) -> HttpResponse:
    return render(request, "socialaccount/authentication_error.html", status=401)
