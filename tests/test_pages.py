"""The screens around the chat: usage on the settings page (estimates, never a false 0),
sign-up's errors where a person looks for them, the site's own 404 and 500 pages under the
Content-Security-Policy in debug and in production, and the favicon once collected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import AsyncClient, Client, override_settings

from accounts import quotas
from chatsite.middleware import POLICY
from conversations import services, turn_services, usage_selectors
from conversations.models import Conversation
from conversations.usage_selectors import UsageRow
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-password"


def _answer(owner: Any, model: str, text: str, **usage: Any) -> Conversation:
    """One turn whose answer has `text`; usage only if given (as the upstream reported it)."""
    conversation = services.conversation_create(owner=owner, model=model)
    turn = turn_services.turn_start(conversation=conversation, text="q", generation_channel="c")
    services.message_finalize(message_id=turn.answer.pk, content=text, status="complete", **usage)
    return conversation


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- usage on the settings page -----------------------------------------------------------


def test_usage_the_upstream_did_not_report_is_an_estimate_never_a_zero(
    django_assert_num_queries: Any,
) -> None:
    alice = make_user("alice")
    _answer(alice, "gpt", "Reported.", prompt_tokens=11, completion_tokens=7, total_tokens=18)
    # llama.cpp reports nothing: the ledger estimated prompt and answer together (600
    # characters: 150 tokens), the answer's own 400 characters are 100 of them.
    _answer(alice, "llama", "x" * 400)
    quotas.record_answer(user_id=alice.pk, model="llama", reported=None, characters=600)
    with django_assert_num_queries(2):  # grouped: the same for any number of answers
        rows = {row.model: row for row in usage_selectors.usage_this_month(user=alice)}
    assert rows["gpt"] == UsageRow("gpt", 1, 11, 7)
    assert rows["llama"] == UsageRow(
        "llama", 1, 50, 100, prompt_estimated=True, completion_estimated=True
    )
    page = _signed_in(alice).get("/settings/").content.decode()
    approx = '<abbr title="estimated">≈</abbr>'
    assert (
        f'<tr data-model="llama"><td>llama</td><td>1</td><td>{approx} 50</td>'
        f"<td>{approx} 100</td></tr>"
    ) in page
    assert '<tr data-model="gpt"><td>gpt</td><td>1</td><td>11</td><td>7</td></tr>' in page
    assert "<td>0</td>" not in page  # nothing unknown reads as zero


def test_a_model_with_some_answers_reported_sums_them_with_the_estimate_and_says_so() -> None:
    alice = make_user("alice")
    _answer(
        alice, "mixed", "Reported.", prompt_tokens=1000, completion_tokens=2000, total_tokens=3000
    )
    _answer(alice, "mixed", "y" * 40)
    quotas.record_answer(user_id=alice.pk, model="mixed", reported=None, characters=240)
    [row] = usage_selectors.usage_this_month(user=alice)
    assert row == UsageRow(
        "mixed", 2, 1000 + 50, 2000 + 10, prompt_estimated=True, completion_estimated=True
    )
    page = _signed_in(alice).get("/settings/").content.decode()
    assert '<abbr title="estimated">≈</abbr> 1,050' in page  # grouped digits
    assert '<abbr title="estimated">≈</abbr> 2,010' in page


def test_a_prompt_nothing_counted_is_shown_as_not_reported_rather_than_zero() -> None:
    alice = make_user("alice")
    _answer(alice, "imported", "z" * 8)  # an imported answer: no usage, no ledger entry
    [row] = usage_selectors.usage_this_month(user=alice)
    assert (row.prompt, row.completion, row.completion_estimated) == (None, 2, True)
    page = _signed_in(alice).get("/settings/").content.decode()
    assert '<td><span title="not reported">—</span></td>' in page


def test_the_settings_page_marks_account_deletion_as_dangerous() -> None:
    page = _signed_in(make_user("alice")).get("/settings/").content.decode()
    assert 'class="card danger-zone"' in page
    assert 'class="button button--danger">Delete my account' in page


# --- sign-up and sign-in ------------------------------------------------------------------


def test_a_weak_password_is_said_under_the_password_not_under_its_confirmation() -> None:
    response = Client().post(
        "/accounts/signup/", {"username": "ada", "password1": "password", "password2": "password"}
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert "This password is too common." in form.errors["password1"]
    assert "password2" not in form.errors
    body = response.content.decode()
    errors = re.search(r'<ul class="field-errors" id="id_password1_error">(.*?)</ul>', body, re.S)
    assert errors
    assert "too common" in errors.group(1)
    password = re.search(r'<input type="password" name="password1"[^>]*>', body)
    assert password
    assert 'aria-invalid="true"' in password.group(0)
    assert "id_password1_error" in password.group(0)  # the field points at its error


def test_a_mismatch_is_said_under_the_confirmation() -> None:
    response = Client().post(
        "/accounts/signup/",
        {"username": "ada", "password1": "correct-horse-battery", "password2": "other-horse"},
    )
    form = response.context["form"]
    assert "password1" not in form.errors
    assert form.errors["password2"] == ["The two password fields didn\u2019t match."]


def test_a_failed_sign_in_says_so_in_the_card() -> None:
    make_user("alice")
    body = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})
    html = body.content.decode()
    assert '<div class="auth-card">' in html
    assert re.search(r'<p role="alert" class="feedback error">Please enter a correct', html)


# --- 404 and 500 --------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_a_foreign_conversation_is_the_sites_styled_404_under_the_policy(
    settings: Any, debug: bool
) -> None:
    settings.DEBUG = debug
    theirs = _answer(make_user("bob"), "m", "Bob's answer.")
    response = _signed_in(make_user("alice")).get(f"/conversations/{theirs.public_id}/")
    assert response.status_code == 404
    body = response.content.decode()
    assert '<main class="error-page">' in body
    assert "Page not found" in body
    assert "chatsite/pages.css" in body
    assert "Back to your conversations" in body  # signed in: the way home
    assert "Bob's answer." not in body
    assert "Django" not in body  # not the technical page (its inline CSS is blocked)
    assert response["Content-Security-Policy"] == POLICY


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_an_address_that_matches_nothing_is_the_sites_404(settings: Any, debug: bool) -> None:
    settings.DEBUG = debug
    response = Client().get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert '<main class="error-page">' in body
    assert "URLconf" not in body
    assert 'href="/accounts/login/"' in body  # signed out: the way in


async def test_the_404_page_is_rendered_off_the_event_loop_for_async_views(
    settings: Any,
) -> None:
    settings.DEBUG = True
    client = AsyncClient()
    response = await client.get("/no/such/page/")
    assert response.status_code == 404
    assert '<main class="error-page">' in response.content.decode()


def test_a_missing_slash_is_still_redirected_in_debug(settings: Any) -> None:
    settings.DEBUG = True
    response = _signed_in(make_user("alice")).get("/settings")
    assert response.status_code == 301
    assert response["Location"] == "/settings/"


@override_settings(ROOT_URLCONF="tests.urls_failing", DEBUG=False)
def test_a_failing_view_gets_the_styled_500_page_under_the_strict_policy(caplog: Any) -> None:
    response = Client(raise_request_exception=False).get("/fails/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong" in body
    assert '<main class="error-page">' in body
    assert "chatsite/pages.css" in body
    assert "a view that fails" not in body  # the traceback goes to the log only
    assert response["Content-Security-Policy"] == POLICY
    assert "a view that fails" in caplog.text


@override_settings(ROOT_URLCONF="tests.urls_failing", DEBUG=True)
def test_the_debug_500_is_djangos_traceback_which_alone_may_style_itself_inline() -> None:
    client = Client(raise_request_exception=False)
    response = client.get("/fails/")
    assert response.status_code == 500
    assert "RuntimeError" in response.content.decode()
    policy = response["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy
    assert "frame-ancestors 'none'" in policy  # the rest of the policy holds
    # Every other response keeps the strict policy, in debug too.
    assert client.get("/accounts/login/")["Content-Security-Policy"] == POLICY
    assert client.get("/no/such/page/")["Content-Security-Policy"] == POLICY


# --- the favicon --------------------------------------------------------------------------


def test_the_favicon_is_linked_and_served_once_collected(tmp_path: Path) -> None:
    """As in production: collectstatic with the manifest, then WhiteNoise serves it."""
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=storages, DEBUG=False):
        call_command("collectstatic", interactive=False, verbosity=0)
        client = Client()  # a new handler: WhiteNoise reads what was collected
        for path in ("/accounts/login/", "/no/such/page/"):
            page = client.get(path).content.decode()
            link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
            assert link, path
            href = link.group(1)
            assert re.fullmatch(r"/static/chatsite/favicon\.[0-9a-f]{12}\.svg", href)
            icon = client.get(href)
            assert icon.status_code == 200
            assert icon["Content-Type"] == "image/svg+xml"
            assert b"<svg" in b"".join(icon.streaming_content)  # type: ignore[attr-defined]
            assert "immutable" in icon["Cache-Control"]  # hashed names are cached for good
