"""Single sign-on through GitHub (django-allauth's GitHub provider, plain OAuth 2, not OpenID
Connect) against a real HTTP server that plays GitHub Enterprise (tests/github_provider.py):
the redirect flow with Django's test client, and the same rules as for OpenID Connect: the
first account is the superuser, suspensions, linking and the domain allow-list only by an
address GitHub says is verified, no "connect", the secret kept out of logs."""

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

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts.models import SignupRecord, Suspension
from chatsite import oidc
from chatsite.middleware import POLICY
from tests.conftest import make_user
from tests.github_provider import CLIENT_ID, CLIENT_SECRET, GitHub

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/accounts/github/login/"
CALLBACK = "/accounts/github/login/callback/"
User = get_user_model()


@pytest.fixture(scope="module")
def github_server() -> Iterator[GitHub]:
    with GitHub() as running:
        yield running


@pytest.fixture
def github(github_server: GitHub, settings: Any) -> GitHub:
    """The site configured for this GitHub, as its environment would configure it."""
    configure(settings, github_server.env())
    return github_server


def configure(settings: Any, env: dict[str, str]) -> None:
    settings.CHATSITE_OIDC_PROVIDERS = oidc.providers_from_env(env, debug=True)
    settings.CHATSITE_OAUTH_PROVIDERS = oidc.oauth_providers_from_env(env, debug=True)
    settings.SOCIALACCOUNT_PROVIDERS = oidc.socialaccount_providers(
        settings.CHATSITE_OIDC_PROVIDERS, settings.CHATSITE_OAUTH_PROVIDERS
    )
    settings.CHATSITE_SSO_EMAIL_DOMAINS = oidc.email_domains_from_env(env)


def github_sign_in(client: Client, github: GitHub, login: str, **user: Any) -> Any:
    """Press "Sign in with GitHub", authorise at GitHub as `login`, come back: the site's
    answer to GitHub's redirect."""
    github.set_user(login, **user)
    started = client.post(LOGIN, {"next": "/"})
    assert started.status_code == 302, started.content.decode()[:500]
    back = urllib.parse.urlsplit(github.authorize(started["Location"], login))
    assert back.path == CALLBACK
    return client.get(f"{back.path}?{back.query}")


def signed_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).get_username() if user_id else None


# --- the flow ---------------------------------------------------------------------------


def test_the_sign_in_page_offers_github_as_a_csrf_protected_post(github: GitHub) -> None:
    page = Client().get("/accounts/login/")
    body = page.content.decode()
    assert "Sign in with GitHub" in body
    form = body.split(f'<form method="post" action="{LOGIN}">')[1].split("</form>")[0]
    assert "csrfmiddlewaretoken" in form
    assert 'name="password"' in body  # local sign-in is still there
    assert CLIENT_SECRET not in body
    # The page's policy lets the button's form go on to GitHub's authorisation page.
    assert page["Content-Security-Policy"] == POLICY.replace(
        "form-action 'self'", f"form-action 'self' {github.url}"
    )
    assert Client(enforce_csrf_checks=True).post(LOGIN).status_code == 403
    assert "Location" not in Client().get(LOGIN)  # a GET asks for the POST


def test_the_redirect_goes_to_githubs_authorize_with_state_pkce_and_the_email_scope(
    github: GitHub,
) -> None:
    started = Client().post(LOGIN)
    assert started["Location"].startswith(github.url + "/login/oauth/authorize?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(started["Location"]).query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["state"][0]
    assert query["code_challenge_method"] == ["S256"]
    assert "user:email" in query["scope"][0].split()
    assert query["redirect_uri"] == [f"http://testserver{CALLBACK}"]
    assert CLIENT_SECRET not in started["Location"]


def test_the_first_github_account_becomes_the_superuser_and_the_second_does_not(
    github: GitHub,
) -> None:
    first = Client()
    response = github_sign_in(
        first,
        github,
        "ada",
        id=101,
        name="Ada Lovelace",
        emails=[("ada@example.com", True, True)],
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert signed_in_as(first) == "ada"
    ada = User.objects.get(username="ada")
    assert ada.is_superuser
    assert ada.is_staff
    assert not ada.has_usable_password()
    assert ada.email == "ada@example.com"
    assert first.get("/admin/").status_code == 200
    # The code went back to GitHub's token endpoint with the secret, then the API was asked.
    paths = [path.partition("?")[0] for _method, path, _body in github.requests[-3:]]
    assert paths == ["/login/oauth/access_token", "/api/v3/user", "/api/v3/user/emails"]

    second = Client()
    github_sign_in(second, github, "bob", id=102, emails=[("bob@example.com", True, True)])
    bob = User.objects.get(username="bob")
    assert not bob.is_superuser
    assert not bob.is_staff
    assert signed_in_as(second) == "bob"
    assert set(SocialAccount.objects.values_list("provider", "uid")) == {
        ("github", "101"),
        ("github", "102"),
    }
    assert SignupRecord.objects.filter(address="127.0.0.1").count() == 2

    # Again: the same account, found by GitHub's numeric id (the login may change).
    again = Client()
    github_sign_in(again, github, "ada-renamed", id=101, emails=[("ada@example.com", True, True)])
    assert signed_in_as(again) == "ada"
    assert User.objects.count() == 2


def test_a_forged_callback_without_the_sessions_state_signs_nobody_in(github: GitHub) -> None:
    github.set_user("mallory", id=666, emails=[("mallory@example.com", True, True)])
    started = Client().post(LOGIN)  # another browser's sign-in
    back = urllib.parse.urlsplit(github.authorize(started["Location"], "mallory"))
    client = Client()
    response = client.get(f"{back.path}?{back.query}")
    assert response.status_code == 401
    assert "Sign-in failed" in response.content.decode()
    assert signed_in_as(client) is None
    assert not User.objects.exists()


def test_a_code_github_does_not_accept_signs_nobody_in(github: GitHub) -> None:
    github.set_user("ada", id=101, emails=[("ada@example.com", True, True)])
    client = Client()
    started = client.post(LOGIN)
    back = urllib.parse.urlsplit(github.authorize(started["Location"], "ada"))
    query = dict(urllib.parse.parse_qsl(back.query))
    # Another code than GitHub gave (GitHub answers {"error": "bad_verification_code"}).
    response = client.get(back.path, {"code": "not-the-code", "state": query["state"]})
    assert response.status_code == 401
    assert "Sign-in failed" in response.content.decode()
    assert CLIENT_SECRET not in response.content.decode()
    assert signed_in_as(client) is None
    assert not User.objects.exists()
    assert not SocialAccount.objects.exists()


def test_cancelling_at_github_is_a_page_of_the_sites_own(github: GitHub) -> None:
    github.set_user("ada", id=101)
    client = Client()
    started = client.post(LOGIN)
    back = urllib.parse.urlsplit(github.authorize(started["Location"], "ada", action="deny"))
    response = client.get(f"{back.path}?{back.query}", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/sso/cancelled/"
    assert "Sign-in cancelled" in response.content.decode()
    assert signed_in_as(client) is None
    assert not User.objects.exists()


def test_sign_ups_through_github_count_against_the_sign_up_limit(
    github: GitHub, settings: Any
) -> None:
    settings.CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR = 1
    github_sign_in(Client(), github, "one", id=1, emails=[("one@example.com", True, True)])
    client = Client()
    response = github_sign_in(client, github, "two", id=2, emails=[("two@example.com", True, True)])
    assert response.status_code == 429
    assert "Too many new accounts" in response.content.decode()
    assert list(User.objects.values_list("username", flat=True)) == ["one"]
    assert signed_in_as(client) is None


# --- suspension -------------------------------------------------------------------------


def test_a_suspended_github_user_is_refused_like_a_local_one(github: GitHub) -> None:
    make_user("boss")
    github_sign_in(Client(), github, "troll", id=7, emails=[("troll@example.com", True, True)])
    troll = User.objects.get(username="troll")
    Suspension.objects.create(
        user=troll, until=timezone.now() + timedelta(days=2), reason="Spamming."
    )
    client = Client()
    response = github_sign_in(
        client, github, "troll", id=7, emails=[("troll@example.com", True, True)]
    )
    assert response.status_code == 403
    body = response.content.decode()
    assert "Account suspended" in body
    assert "Spamming." in body
    assert signed_in_as(client) is None


# --- linking and the domain allow-list: GitHub's word on each address -------------------


def _grace() -> Any:
    make_user("boss")
    grace = make_user("grace")
    grace.email = "grace@example.com"
    grace.save()
    return grace


def test_a_verified_primary_address_signs_in_to_the_account_that_has_it(github: GitHub) -> None:
    grace = _grace()
    client = Client()
    github_sign_in(
        client,
        github,
        "ghopper",
        id=55,
        emails=[("grace@example.com", True, True), ("g@elsewhere.org", False, True)],
    )
    assert signed_in_as(client) == "grace"
    assert SocialAccount.objects.get(provider="github").user_id == grace.pk
    assert User.objects.count() == 2


def test_an_unverified_address_never_takes_over_the_account_that_has_it(github: GitHub) -> None:
    _grace()
    client = Client()
    response = github_sign_in(
        client, github, "impostor", id=66, emails=[("grace@example.com", True, False)]
    )
    assert response.status_code == 409
    assert "did not say that this address is verified" in response.content.decode()
    assert signed_in_as(client) is None
    assert not SocialAccount.objects.exists()
    # The public address on a profile is anyone's to type: it is never taken as verified.
    response = github_sign_in(Client(), github, "impostor", id=66, email="grace@example.com")
    assert response.status_code == 409
    assert not SocialAccount.objects.exists()
    assert User.objects.count() == 2


def test_a_suspended_account_is_not_linked_either(github: GitHub) -> None:
    grace = _grace()
    Suspension.objects.create(user=grace, until=None, reason="Cooling off.")
    response = github_sign_in(
        Client(), github, "ghopper", id=55, emails=[("grace@example.com", True, True)]
    )
    assert response.status_code == 403
    assert not SocialAccount.objects.exists()


def test_the_domain_allow_list_takes_only_a_verified_address_there(
    github: GitHub, settings: Any
) -> None:
    settings.CHATSITE_SSO_EMAIL_DOMAINS = ["example.com"]
    refused = github_sign_in(
        Client(), github, "eve", id=5, emails=[("eve@elsewhere.org", True, True)]
    )
    assert refused.status_code == 403
    assert "This address cannot sign in here" in refused.content.decode()
    unverified = github_sign_in(
        Client(), github, "vic", id=6, emails=[("vic@example.com", True, False)]
    )
    assert unverified.status_code == 403
    assert "did not say that yours is verified" in unverified.content.decode()
    public_only = github_sign_in(Client(), github, "pat", id=8, email="pat@example.com")
    assert public_only.status_code == 403
    assert not User.objects.exists()
    assert not SocialAccount.objects.exists()
    assert not SignupRecord.objects.exists()

    client = Client()
    github_sign_in(client, github, "vic", id=6, emails=[("vic@example.com", True, True)])
    assert signed_in_as(client) == "vic"


# --- what is and is not offered ---------------------------------------------------------


def test_allauths_connect_process_is_refused(github: GitHub) -> None:
    make_user("boss")
    client = Client()
    client.force_login(make_user("carol"))
    for started in (
        client.post(LOGIN, {"process": "connect"}),
        client.post(f"{LOGIN}?process=connect"),
    ):
        assert started.status_code == 400
        assert "Only signing in is offered here" in started.content.decode()
    assert not SocialAccount.objects.exists()


def test_without_github_configured_its_addresses_are_404(client: Client) -> None:
    assert "Sign in with GitHub" not in client.get("/accounts/login/").content.decode()
    assert client.post(LOGIN).status_code == 404
    assert client.get(f"{CALLBACK}?code=x&state=y").status_code == 404
    for path in ("/accounts/github/login/token/", "/accounts/3rdparty/", "/accounts/email/"):
        assert client.get(path).status_code == 404, path


def test_local_sign_in_off_with_only_github_signs_in_through_github(
    github: GitHub, settings: Any
) -> None:
    settings.CHATSITE_LOCAL_SIGNIN_ENABLED = False
    settings.CHATSITE_SIGNUP_ENABLED = False
    body = Client().get("/accounts/login/").content.decode()
    assert "Sign in with GitHub" in body
    assert 'name="password"' not in body
    client = Client()
    github_sign_in(client, github, "dora", id=9, emails=[("dora@example.com", True, True)])
    assert signed_in_as(client) == "dora"


def test_the_secret_is_never_logged(github: GitHub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    github_sign_in(Client(), github, "ada", id=101, emails=[("ada@example.com", True, True)])
    assert User.objects.filter(username="ada").exists()
    assert CLIENT_SECRET not in caplog.text
    assert CLIENT_SECRET not in repr(oidc.oauth_providers_from_env(github.env(), debug=True))
    # It went to GitHub's token endpoint, and only there.
    carried = [path for _method, path, body in github.requests if CLIENT_SECRET in path + body]
    assert carried
    assert set(carried) == {"/login/oauth/access_token"}


def test_a_log_line_that_quotes_the_secret_has_it_redacted(github: GitHub) -> None:
    from chatsite.logging import RedactSecretsFilter

    record = logging.LogRecord(
        "allauth", logging.ERROR, __file__, 1, "token request failed: %s", (CLIENT_SECRET,), None
    )
    RedactSecretsFilter().filter(record)
    assert CLIENT_SECRET not in record.getMessage()
    assert "[redacted]" in record.getMessage()


# --- the configuration ------------------------------------------------------------------


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("CHATSITE_OIDC", "CHATSITE_OAUTH"))
    }
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
        ({"CHATSITE_OAUTH_PROVIDERS": "bitbucket"}, "'bitbucket' is not an OAuth provider"),
        ({"CHATSITE_OAUTH_PROVIDERS": "github"}, "CHATSITE_OAUTH_GITHUB_CLIENT_ID must be set"),
        (
            {
                "CHATSITE_OAUTH_PROVIDERS": "github",
                "CHATSITE_OAUTH_GITHUB_CLIENT_ID": "x",
                "CHATSITE_OAUTH_GITHUB_SECRET": "y",
                "CHATSITE_OAUTH_GITHUB_URL": "github.example.com",
            },
            "CHATSITE_OAUTH_GITHUB_URL must be the provider's https:// URL",
        ),
        (
            {
                "CHATSITE_OIDC_PROVIDERS": "github",
                "CHATSITE_OIDC_GITHUB_ISSUER": "https://sso.example.com",
                "CHATSITE_OIDC_GITHUB_CLIENT_ID": "x",
                "CHATSITE_OIDC_GITHUB_SECRET": "y",
            },
            "'github' is the id of an OAuth provider",
        ),
    ],
)
def test_a_malformed_configuration_stops_the_site_with_a_clear_message(
    env: dict[str, str], message: str
) -> None:
    result = _start(env)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_plain_http_enterprise_url_is_refused_in_production() -> None:
    env = {
        "CHATSITE_OAUTH_PROVIDERS": "github",
        "CHATSITE_OAUTH_GITHUB_CLIENT_ID": "x",
        "CHATSITE_OAUTH_GITHUB_SECRET": "y",
        "CHATSITE_OAUTH_GITHUB_URL": "http://github.example.com",
    }
    with pytest.raises(Exception, match="must be https:// when DJANGO_DEBUG is off"):
        oidc.oauth_providers_from_env(env, debug=False)
    del env["CHATSITE_OAUTH_GITHUB_URL"]
    (provider,) = oidc.oauth_providers_from_env(env, debug=False)
    assert (provider.url, provider.name) == ("https://github.com", "GitHub")


def test_github_beside_an_openid_connect_provider_gets_its_own_button_and_origin(
    github: GitHub, settings: Any
) -> None:
    env = {
        **github.env(name="Example GitHub"),
        "CHATSITE_OIDC_PROVIDERS": "corp",
        "CHATSITE_OIDC_CORP_ISSUER": "https://sso.example.com/realms/staff",
        "CHATSITE_OIDC_CORP_CLIENT_ID": "x",
        "CHATSITE_OIDC_CORP_SECRET": "a-secret-of-some-length",
        "CHATSITE_OIDC_CORP_NAME": "Corp",
    }
    configure(settings, env)
    page = Client().get("/accounts/login/")
    body = page.content.decode()
    assert "Sign in with Corp" in body
    assert "Sign in with Example GitHub" in body
    assert page["Content-Security-Policy"] == POLICY.replace(
        "form-action 'self'", f"form-action 'self' {github.url} https://sso.example.com"
    )
    # A GET to the start asks for the POST on a page of the site's own, under that label.
    confirm = Client().get(LOGIN).content.decode()
    assert "Sign in with Example GitHub" in confirm
