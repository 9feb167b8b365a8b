"""Single sign-on through a real OpenID Connect provider (tests/oidc_provider.py): the
redirect flow driven with Django's test client on the site's side and HTTP on the
provider's, and the site's rules held on it: the first account is the superuser, sign-up
limits, suspensions, local sign-in off, the e-mail domain allow-list, linking by a verified
address only, and nothing of allauth's own account pages."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts.models import SignupRecord, Suspension
from chatsite import oidc
from chatsite.logging import RedactSecretsFilter
from chatsite.middleware import POLICY
from tests.conftest import make_user
from tests.oidc_provider import CLIENT_SECRET, OidcProvider

pytestmark = [
    pytest.mark.django_db,
    # authlib, inside the provider, warns about its own deprecated parts.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/accounts/oidc/corp/login/"
User = get_user_model()


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider() as running:
        yield running


@pytest.fixture
def sso(provider: OidcProvider, settings: Any) -> OidcProvider:
    """The site configured for the provider, as its environment would configure it."""
    configure(settings, provider.env())
    return provider


def configure(settings: Any, env: dict[str, str]) -> None:
    settings.CHATSITE_OIDC_PROVIDERS = oidc.providers_from_env(env, debug=True)
    settings.SOCIALACCOUNT_PROVIDERS = oidc.socialaccount_providers(
        settings.CHATSITE_OIDC_PROVIDERS
    )
    settings.CHATSITE_SSO_EMAIL_DOMAINS = oidc.email_domains_from_env(env)


def sso_sign_in(client: Client, provider: OidcProvider, sub: str, **claims: Any) -> Any:
    """Press "Sign in with …", sign in at the provider as `sub`, come back: the site's
    answer to the provider's redirect."""
    provider.set_user(sub, **claims)
    started = client.post(LOGIN, {"next": "/"})
    assert started.status_code == 302, started.content.decode()[:500]
    back = provider.authorize(started["Location"], sub)
    parts = urllib.parse.urlsplit(back)
    assert parts.path == "/accounts/oidc/corp/login/callback/"
    return client.get(f"{parts.path}?{parts.query}")


def signed_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).get_username() if user_id else None


# --- the flow ---------------------------------------------------------------------------


def test_the_sign_in_page_offers_each_provider_as_a_csrf_protected_post(sso: OidcProvider) -> None:
    body = Client().get("/accounts/login/").content.decode()
    assert "Sign in with Example SSO" in body
    assert f'<form method="post" action="{LOGIN}">' in body
    form = body.split(f'action="{LOGIN}"')[1].split("</form>")[0]
    assert "csrfmiddlewaretoken" in form
    assert 'name="password"' in body  # the password form is still there
    assert CLIENT_SECRET not in body
    # A sign-in is never started by a GET (a link or an image elsewhere), nor by a POST
    # without the page's CSRF token.
    assert "oauth2/authorize" not in Client().get(LOGIN).get("Location", "")
    assert Client(enforce_csrf_checks=True).post(LOGIN).status_code == 403


def test_the_redirect_carries_state_and_pkce_and_never_the_secret(sso: OidcProvider) -> None:
    started = Client().post(LOGIN)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(started["Location"]).query)
    assert started["Location"].startswith(sso.issuer + "/oauth2/authorize?")
    assert query["state"][0]
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"][0]
    assert query["redirect_uri"] == ["http://testserver/accounts/oidc/corp/login/callback/"]
    assert CLIENT_SECRET not in started["Location"]


def test_a_forged_callback_without_the_sessions_state_signs_nobody_in(sso: OidcProvider) -> None:
    client = Client()
    sso.set_user("mallory", email="mallory@example.com", email_verified=True)
    started = Client().post(LOGIN)  # another browser's sign-in
    back = urllib.parse.urlsplit(sso.authorize(started["Location"], "mallory"))
    response = client.get(f"{back.path}?{back.query}")
    assert response.status_code == 401
    assert signed_in_as(client) is None
    assert not User.objects.exists()
    body = response.content.decode()
    assert "Sign-in failed" in body
    assert 'rel="stylesheet"' in body


def test_the_first_sso_account_becomes_the_superuser_and_the_second_does_not(
    sso: OidcProvider,
) -> None:
    first = Client()
    response = sso_sign_in(
        first, sso, "ada", email="ada@example.com", email_verified=True, preferred_username="ada"
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert signed_in_as(first) == "ada"
    ada = User.objects.get(username="ada")
    assert ada.is_superuser
    assert ada.is_staff
    assert not ada.has_usable_password()
    assert ada.email == "ada@example.com"
    assert first.get("/admin/").status_code == 200  # the admin works for the superuser

    second = Client()
    sso_sign_in(second, sso, "bob-sub", email="bob@example.com", email_verified=True)
    bob = User.objects.get(email="bob@example.com")
    assert bob.username == "bob"  # from the address: no preferred_username given
    assert not bob.is_superuser
    assert not bob.is_staff
    assert signed_in_as(second) == "bob"
    assert SocialAccount.objects.filter(provider="corp").count() == 2
    # Each new account counted against the address, like a local sign-up.
    assert SignupRecord.objects.filter(address="127.0.0.1").count() == 2


def test_signing_in_again_is_the_same_account(sso: OidcProvider) -> None:
    sso_sign_in(Client(), sso, "ada", email="ada@example.com", email_verified=True)
    again = Client()
    sso_sign_in(again, sso, "ada", email="ada@example.com", email_verified=True)
    assert User.objects.count() == 1
    assert signed_in_as(again) == "ada"


def test_a_taken_username_gets_a_number(sso: OidcProvider) -> None:
    make_user("ada")
    sso_sign_in(Client(), sso, "ada-sub", preferred_username="ada")
    assert User.objects.filter(username="ada2").exists()


def test_sso_sign_ups_count_against_the_sign_up_limit(sso: OidcProvider, settings: Any) -> None:
    settings.CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR = 1
    sso_sign_in(Client(), sso, "one", email="one@example.com", email_verified=True)
    client = Client()
    response = sso_sign_in(client, sso, "two", email="two@example.com", email_verified=True)
    assert response.status_code == 429
    assert response["Retry-After"]
    assert "Too many new accounts" in response.content.decode()
    assert list(User.objects.values_list("email", flat=True)) == ["one@example.com"]
    assert signed_in_as(client) is None


# --- suspension -------------------------------------------------------------------------


def test_a_suspended_sso_user_is_refused_like_a_local_one(sso: OidcProvider) -> None:
    sso_sign_in(Client(), sso, "boss", email="boss@example.com", email_verified=True)
    sso_sign_in(Client(), sso, "troll", email="troll@example.com", email_verified=True)
    troll = User.objects.get(username="troll")
    Suspension.objects.create(
        user=troll, until=timezone.now() + timedelta(days=2), reason="Spamming."
    )
    client = Client()
    response = sso_sign_in(client, sso, "troll", email="troll@example.com", email_verified=True)
    assert response.status_code == 403
    body = response.content.decode()
    assert "Account suspended" in body
    assert "Spamming." in body
    assert signed_in_as(client) is None
    assert client.get("/").status_code == 302  # to the sign-in page: not signed in


# --- linking to an existing account -----------------------------------------------------


def test_a_verified_address_signs_in_to_the_account_that_has_it(sso: OidcProvider) -> None:
    make_user("boss")
    local = make_user("grace")
    local.email = "Grace@Example.com"
    local.save()
    client = Client()
    sso_sign_in(client, sso, "grace-sub", email="grace@example.com", email_verified=True)
    assert signed_in_as(client) == "grace"
    assert User.objects.count() == 2
    assert SocialAccount.objects.get(uid="grace-sub").user_id == local.pk
    assert local.__class__.objects.get(pk=local.pk).check_password("a-long-enough-password")


def test_an_unverified_address_never_takes_over_the_account_that_has_it(
    sso: OidcProvider,
) -> None:
    make_user("boss")
    local = make_user("grace")
    local.email = "grace@example.com"
    local.save()
    client = Client()
    response = sso_sign_in(client, sso, "impostor", email="grace@example.com")
    assert response.status_code == 409
    assert "did not say that this address is verified" in response.content.decode()
    assert signed_in_as(client) is None
    assert User.objects.count() == 2
    assert not SocialAccount.objects.exists()
    # The same with the claim false rather than missing.
    response = sso_sign_in(
        Client(), sso, "impostor", email="grace@example.com", email_verified=False
    )
    assert response.status_code == 409
    assert not SocialAccount.objects.exists()


@pytest.mark.parametrize("barred_by", ["suspension", "deactivation"])
def test_an_account_that_may_not_sign_in_is_not_linked(sso: OidcProvider, barred_by: str) -> None:
    make_user("boss")
    local = make_user("grace")
    local.email = "grace@example.com"
    if barred_by == "suspension":
        Suspension.objects.create(user=local, until=None, reason="Cooling off.")
    else:
        local.is_active = False
    local.save()
    response = sso_sign_in(
        Client(), sso, "grace-sub", email="grace@example.com", email_verified=True
    )
    assert response.status_code == 403
    assert not SocialAccount.objects.exists()


def test_an_unverified_address_is_never_kept_so_it_cannot_catch_its_owners_sign_in(
    sso: OidcProvider,
) -> None:
    make_user("boss")
    mallory = Client()
    sso_sign_in(mallory, sso, "mallory-sub", email="victim@example.com", email_verified=False)
    assert signed_in_as(mallory) == "victim"
    assert User.objects.get(username="victim").email == ""  # unverified: not kept
    # The address's owner, verified by the provider, gets an account of their own.
    victim = Client()
    sso_sign_in(victim, sso, "victim-sub", email="victim@example.com", email_verified=True)
    assert signed_in_as(victim) == "victim2"
    assert SocialAccount.objects.get(uid="victim-sub").user.username == "victim2"
    assert SocialAccount.objects.get(uid="mallory-sub").user.username == "victim"


def test_once_every_account_is_deleted_the_next_sso_account_is_not_a_superuser(
    sso: OidcProvider,
) -> None:
    sso_sign_in(Client(), sso, "boss-sub", email="boss@example.com", email_verified=True)
    assert User.objects.get(username="boss").is_superuser
    User.objects.all().delete()
    stranger = Client()
    sso_sign_in(stranger, sso, "x-sub", email="x@example.com", email_verified=True)
    assert signed_in_as(stranger) == "x"
    x = User.objects.get(username="x")
    assert not x.is_superuser
    assert not x.is_staff
    assert stranger.get("/admin/").status_code == 302  # to the sign-in page


# --- local sign-in off ------------------------------------------------------------------


@pytest.fixture
def sso_only(sso: OidcProvider, settings: Any) -> OidcProvider:
    settings.CHATSITE_LOCAL_SIGNIN_ENABLED = False
    settings.CHATSITE_SIGNUP_ENABLED = False
    return sso


def test_with_local_sign_in_off_only_the_provider_signs_in(sso_only: OidcProvider) -> None:
    make_user("boss")
    make_user("carol")
    page = Client().get("/accounts/login/")
    body = page.content.decode()
    assert "Sign in with Example SSO" in body
    assert 'name="password"' not in body
    assert 'action="/accounts/login/"' not in body
    assert "Create one" not in body
    # A password posted anyway is refused unread, the right one too.
    client = Client()
    refused = client.post(
        "/accounts/login/", {"username": "carol", "password": "a-long-enough-password"}
    )
    assert refused.status_code == 403
    assert "Passwords are not accepted here" in refused.content.decode()
    assert signed_in_as(client) is None
    # The admin's password form is not offered either: its sign-in is the site's.
    admin = client.post(
        "/admin/login/?next=/admin/", {"username": "boss", "password": "a-long-enough-password"}
    )
    assert admin.status_code == 302
    assert admin["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    assert signed_in_as(client) is None
    assert Client().get("/accounts/signup/").status_code == 404
    # Single sign-on still works.
    sso_sign_in(client, sso_only, "dora", email="dora@example.com", email_verified=True)
    assert signed_in_as(client) == "dora"


def test_local_sign_in_off_without_a_provider_refuses_to_start() -> None:
    result = _start({"CHATSITE_LOCAL_SIGNIN_ENABLED": "0"})
    assert result.returncode != 0
    assert "CHATSITE_LOCAL_SIGNIN_ENABLED=0 needs CHATSITE_OIDC_PROVIDERS" in result.stderr


# --- the e-mail domain allow-list -------------------------------------------------------


def test_the_domain_allow_list_refuses_other_domains_and_creates_nothing(
    sso: OidcProvider, settings: Any
) -> None:
    settings.CHATSITE_SSO_EMAIL_DOMAINS = ["example.com"]
    client = Client()
    response = sso_sign_in(client, sso, "eve", email="eve@elsewhere.org", email_verified=True)
    assert response.status_code == 403
    body = response.content.decode()
    assert "This address cannot sign in here" in body
    assert "example.com" in body
    assert "No account was created" in body
    assert 'rel="stylesheet"' in body
    assert signed_in_as(client) is None
    assert not User.objects.exists()
    assert not SocialAccount.objects.exists()
    assert not SignupRecord.objects.exists()


def test_the_domain_allow_list_needs_the_address_verified(sso: OidcProvider, settings: Any) -> None:
    settings.CHATSITE_SSO_EMAIL_DOMAINS = ["example.com"]
    response = sso_sign_in(Client(), sso, "vic", email="vic@example.com")
    assert response.status_code == 403
    assert "did not say that yours is verified" in response.content.decode()
    assert not User.objects.exists()
    response = sso_sign_in(Client(), sso, "nomail")  # no address at all
    assert response.status_code == 403
    assert not User.objects.exists()
    client = Client()
    sso_sign_in(client, sso, "vic", email="Vic@Example.COM", email_verified=True)
    assert (signed_in_as(client) or "").lower() == "vic"


# --- no provider configured -------------------------------------------------------------

ALLAUTH_LOCAL_PAGES = [
    # allauth's own account views, were allauth.urls mounted: none of them is.
    "/accounts/password/reset/",
    "/accounts/password/change/",
    "/accounts/password/set/",
    "/accounts/email/",
    "/accounts/reauthenticate/",
    "/accounts/login/code/",
    "/accounts/confirm-email/",
    "/accounts/inactive/",
    "/accounts/3rdparty/",
    "/accounts/3rdparty/signup/",
    "/accounts/social/signup/",
]


def test_without_a_provider_the_site_is_as_before(client: Client) -> None:
    body = client.get("/accounts/login/").content.decode()
    assert "Sign in with" not in body
    assert "auth-or" not in body
    assert 'name="password"' in body
    for path in ALLAUTH_LOCAL_PAGES:
        assert client.get(path).status_code == 404, path
        assert client.post(path).status_code == 404, path
    # The provider's views answer nothing for a provider that is not configured.
    assert client.post(LOGIN).status_code == 404
    assert client.get("/accounts/oidc/corp/login/callback/?code=x&state=y").status_code == 404
    # The site's own sign-in and sign-up are what they were (axes counts a failure).
    make_user("boss")
    refused = client.post("/accounts/login/", {"username": "boss", "password": "wrong"})
    assert refused.status_code == 200
    assert "correct username and password" in refused.content.decode()
    signed = client.post(
        "/accounts/login/", {"username": "boss", "password": "a-long-enough-password"}
    )
    assert signed.status_code == 302
    assert signed_in_as(client) == "boss"


def test_axes_still_limits_the_sign_in_form_with_a_provider_configured(
    sso: OidcProvider, settings: Any
) -> None:
    settings.CHATSITE_LOGIN_FAILURES_PER_ACCOUNT = 2
    make_user("boss")
    client = Client()
    for _ in range(2):
        client.post("/accounts/login/", {"username": "boss", "password": "wrong"})
    locked = client.post(
        "/accounts/login/", {"username": "boss", "password": "a-long-enough-password"}
    )
    assert locked.status_code == 429
    assert "Sign in with Example SSO" in locked.content.decode()  # the same page, buttons too
    assert signed_in_as(client) is None


# --- the configuration --------------------------------------------------------------------


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATSITE_OIDC")}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHATSITE_OIDC_PROVIDERS": "Corp"}, "'Corp' is not a provider id"),
        ({"CHATSITE_OIDC_PROVIDERS": "corp"}, "CHATSITE_OIDC_CORP_ISSUER must be set"),
        (
            {
                "CHATSITE_OIDC_PROVIDERS": "corp",
                "CHATSITE_OIDC_CORP_ISSUER": "sso.example.com",
                "CHATSITE_OIDC_CORP_CLIENT_ID": "x",
                "CHATSITE_OIDC_CORP_SECRET": "y",
            },
            "CHATSITE_OIDC_CORP_ISSUER must be the provider's https:// URL",
        ),
        ({"CHATSITE_SSO_EMAIL_DOMAINS": "example.com,not a domain"}, "is not a domain"),
    ],
)
def test_a_malformed_configuration_stops_the_site_with_a_clear_message(
    env: dict[str, str], message: str
) -> None:
    result = _start(env)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_plain_http_issuer_is_refused_in_production() -> None:
    env = {
        "CHATSITE_OIDC_PROVIDERS": "corp",
        "CHATSITE_OIDC_CORP_ISSUER": "http://sso.example.com",
        "CHATSITE_OIDC_CORP_CLIENT_ID": "x",
        "CHATSITE_OIDC_CORP_SECRET": "y",
    }
    with pytest.raises(Exception, match="must be https:// when DJANGO_DEBUG is off"):
        oidc.providers_from_env(env, debug=False)
    assert oidc.providers_from_env(env, debug=True)[0].issuer == "http://sso.example.com"


def test_several_providers_each_get_a_button(provider: OidcProvider, settings: Any) -> None:
    env = {**provider.env("corp", "Corp"), **provider.env("partner", "Partner")}
    env["CHATSITE_OIDC_PROVIDERS"] = "corp, partner"
    configure(settings, env)
    body = Client().get("/accounts/login/").content.decode()
    assert "Sign in with Corp" in body
    assert "Sign in with Partner" in body
    started = Client().post("/accounts/oidc/partner/login/")
    assert started["Location"].startswith(provider.issuer)


def test_the_secret_is_never_logged(sso: OidcProvider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sso_sign_in(Client(), sso, "ada", email="ada@example.com", email_verified=True)
    assert User.objects.filter(username="ada").exists()
    assert CLIENT_SECRET not in caplog.text
    assert CLIENT_SECRET not in repr(oidc.providers_from_env(sso.env(), debug=True))


def test_an_sso_account_deletes_itself_by_typing_its_username(sso: OidcProvider) -> None:
    make_user("boss")
    client = Client()
    sso_sign_in(client, sso, "ada", email="ada@example.com", email_verified=True)
    page = client.get("/settings/").content.decode()
    assert 'name="confirm_username"' in page
    assert 'name="password"' not in page
    wrong = client.post("/settings/delete-account/", {"confirm_username": "someone"})
    assert wrong.status_code == 400
    assert "Nothing was deleted" in wrong.content.decode()
    assert User.objects.filter(username="ada").exists()
    right = client.post("/settings/delete-account/", {"confirm_username": "ada"})
    assert right.status_code == 302
    assert not User.objects.filter(username="ada").exists()
    assert not SocialAccount.objects.exists()


def test_allauths_connect_process_is_refused(sso: OidcProvider) -> None:
    """A signed-in user cannot have a provider's identity linked to their account by asking
    allauth to "connect" it: only signing in is offered."""
    make_user("boss")
    carol = make_user("carol")
    client = Client()
    client.force_login(carol)
    for started in (
        client.post(LOGIN, {"process": "connect"}),
        client.post(f"{LOGIN}?process=connect"),
        client.post(LOGIN, {"process": "redirect"}),
    ):
        assert started.status_code == 400
        assert "Only signing in is offered here" in started.content.decode()
    assert not SocialAccount.objects.exists()


def test_a_traceback_that_quotes_the_secret_has_it_redacted(sso: OidcProvider) -> None:
    try:
        raise RuntimeError(f"token endpoint said no to {CLIENT_SECRET}")
    except RuntimeError:
        record = logging.LogRecord(
            "allauth", logging.ERROR, __file__, 1, "token request failed", (), sys.exc_info()
        )
    RedactSecretsFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "token endpoint said no to [redacted]" in formatted
    assert CLIENT_SECRET not in formatted


def test_a_log_line_that_quotes_the_secret_has_it_redacted(sso: OidcProvider) -> None:
    record = logging.LogRecord(
        "allauth", logging.ERROR, __file__, 1, "token request failed: %s", (CLIENT_SECRET,), None
    )
    RedactSecretsFilter().filter(record)
    assert CLIENT_SECRET not in record.getMessage()
    assert "[redacted]" in record.getMessage()


def test_denying_at_the_provider_is_a_page_of_the_sites_own(sso: OidcProvider) -> None:
    client = Client()
    started = client.post(LOGIN)
    # The provider's "Deny" (this one sends no state back: allauth cannot tie the answer
    # to the sign-in, so it is a failure rather than a cancellation).
    denied = httpx.post(started["Location"], data={"action": "deny"})
    back = urllib.parse.urlsplit(denied.headers["location"])
    failed = client.get(f"{back.path}?{back.query}")
    assert failed.status_code == 401
    assert "Sign-in failed" in failed.content.decode()
    # A provider that sends the state back with access_denied: the cancelled page.
    started = client.post(LOGIN)
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(started["Location"]).query)["state"][0]
    response = client.get(
        "/accounts/oidc/corp/login/callback/",
        {"error": "access_denied", "state": state},
        follow=True,
    )
    body = response.content.decode()
    assert response.redirect_chain[-1][0] == "/accounts/sso/cancelled/"
    assert "Sign-in cancelled" in body
    assert 'rel="stylesheet"' in body
    assert "<style" not in body
    assert signed_in_as(client) is None


def test_a_get_to_the_providers_login_asks_for_a_post_on_a_page_of_the_sites_own(
    sso: OidcProvider,
) -> None:
    response = Client().get(LOGIN)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Sign in with Example SSO" in body
    assert 'method="post"' in body
    assert "csrfmiddlewaretoken" in body
    assert "<style" not in body
    assert "<script>" not in body
    assert f"form-action 'self' {sso.issuer}" in response["Content-Security-Policy"]
    # The sign-in page's policy lets its buttons' forms go on to the provider, and no further.
    policy = Client().get("/accounts/login/")["Content-Security-Policy"]
    assert policy == POLICY.replace("form-action 'self'", f"form-action 'self' {sso.issuer}")
