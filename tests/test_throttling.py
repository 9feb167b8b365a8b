"""Failed sign-ins are limited per account and per client address (site and admin alike,
django-axes), sign-ups per address per hour; each refusal is the styled page saying when
to try again, with status 429."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import AsyncClient, Client

from accounts.models import SignupRecord
from accounts.throttling import client_address
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-password"
ACCOUNT_LOCKED = "Too many failed sign-ins for this account."
ADDRESS_LOCKED = "Too many failed sign-ins from your network address."


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    # Hundreds of sign-ins: PBKDF2's cost is not what these tests measure.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _sign_in(
    username: str, password: str, *, address: str = "203.0.113.7", path: str = "/accounts/login/"
) -> tuple[Client, Any]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(path, {"username": username, "password": password})
    return client, response


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _time_passes(minutes: float) -> None:
    """Axes counts from the time it stored with each failure: move those back."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=minutes))


def test_fifty_wrong_passwords_lock_the_account_and_then_the_right_one_is_refused() -> None:
    make_user("boss")
    make_user("alice", PASSWORD)
    for attempt in range(1, 51):
        _, response = _sign_in("alice", f"guess-{attempt}")
        body = response.content.decode()
        if attempt < 5:
            assert response.status_code == 200
            assert ACCOUNT_LOCKED not in body
        else:
            assert response.status_code == 429, attempt
            assert f"{ACCOUNT_LOCKED} Try again in 15 minutes." in body
    client, response = _sign_in("alice", PASSWORD)
    assert response.status_code == 429
    assert ACCOUNT_LOCKED in response.content.decode()
    assert not _signed_in(client)
    # Failures while locked did not count: the lock still ends 15 minutes after the fifth.
    assert sum(AccessAttempt.objects.values_list("failures_since_start", flat=True)) == 5


def test_the_right_password_works_again_after_the_cool_off() -> None:
    make_user("boss")
    make_user("alice", PASSWORD)
    for attempt in range(5):
        _sign_in("alice", f"guess-{attempt}")
    _time_passes(14)
    _, response = _sign_in("alice", PASSWORD)
    assert response.status_code == 429
    assert "Try again in 1 minute." in response.content.decode()
    _time_passes(1)
    client, response = _sign_in("alice", PASSWORD)
    assert response.status_code == 302
    assert _signed_in(client)


def test_the_account_is_locked_whatever_address_the_guesses_come_from() -> None:
    make_user("boss")
    make_user("alice", PASSWORD)
    for attempt in range(5):
        _sign_in("alice", "wrong", address=f"198.51.100.{attempt + 1}")
    client, response = _sign_in("alice", PASSWORD, address="192.0.2.99")
    assert response.status_code == 429
    assert ACCOUNT_LOCKED in response.content.decode()
    assert not _signed_in(client)


def test_a_name_with_no_account_is_locked_the_same_way() -> None:
    # Otherwise the refusal would tell which names have accounts.
    make_user("boss")
    for _ in range(5):
        _, response = _sign_in("nobody", "wrong")
    assert response.status_code == 429
    assert ACCOUNT_LOCKED in response.content.decode()


def test_a_successful_sign_in_clears_the_account_failures() -> None:
    make_user("boss")
    make_user("alice", PASSWORD)
    for _ in range(4):
        _sign_in("alice", "wrong")
    assert _sign_in("alice", PASSWORD)[1].status_code == 302
    for _ in range(4):
        _, response = _sign_in("alice", "wrong")
    assert response.status_code == 200  # four new failures: not five


def test_successful_sign_ins_never_count_so_many_users_can_share_an_address() -> None:
    # The streams benchmark signs in 800 users from 127.0.0.1, a NAT many people.
    make_user("boss")
    for index in range(60):
        make_user(f"user{index}", PASSWORD)
    for index in range(60):
        _, response = _sign_in(f"user{index}", PASSWORD)
        assert response.status_code == 302, index
    assert not AccessAttempt.objects.exists()


def test_failures_from_one_address_across_many_names_lock_the_address() -> None:
    make_user("boss")
    make_user("alice", PASSWORD)
    for attempt in range(1, 21):  # 20 names, 1 guess each: no account reaches its limit
        _, response = _sign_in(f"victim{attempt}", "wrong")
    assert response.status_code == 429
    assert f"{ADDRESS_LOCKED} Try again in 15 minutes." in response.content.decode()
    # Everyone at that address waits, even with the right password ...
    client, response = _sign_in("alice", PASSWORD)
    assert response.status_code == 429
    assert ADDRESS_LOCKED in response.content.decode()
    assert not _signed_in(client)
    # ... and no one elsewhere does.
    client, response = _sign_in("alice", PASSWORD, address="198.51.100.1")
    assert response.status_code == 302
    assert _signed_in(client)


def test_signing_in_to_ones_own_account_does_not_clear_the_address_failures() -> None:
    make_user("boss")
    make_user("mallory", PASSWORD)
    for attempt in range(19):
        _sign_in(f"victim{attempt}", "wrong")
    assert _sign_in("mallory", PASSWORD)[1].status_code == 302
    _, response = _sign_in("victim-last", "wrong")
    assert response.status_code == 429
    assert ADDRESS_LOCKED in response.content.decode()


def test_the_admin_sign_in_is_limited_and_says_so_on_the_admin_page() -> None:
    make_user("boss", PASSWORD)  # the first account: a superuser
    for _ in range(50):
        _, response = _sign_in("boss", "wrong", path="/admin/login/")
    assert response.status_code == 429
    client, response = _sign_in("boss", PASSWORD, path="/admin/login/?next=/admin/")
    body = response.content.decode()
    assert response.status_code == 429
    assert not _signed_in(client)
    assert f'<p class="errornote" role="alert">{ACCOUNT_LOCKED} Try again in 15 minutes.' in body
    assert 'id="login-form"' in body  # the admin's own page and form, not a bare message
    assert 'action="/admin/login/?next=/admin/"' in body
    _time_passes(15)
    client, response = _sign_in("boss", PASSWORD, path="/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_lock_earned_on_the_site_holds_on_the_admin_too() -> None:
    make_user("boss", PASSWORD)
    for _ in range(5):
        _sign_in("boss", "wrong")
    _, response = _sign_in("boss", PASSWORD, path="/admin/login/")
    assert response.status_code == 429
    assert ACCOUNT_LOCKED in response.content.decode()


def test_the_lockout_is_the_sites_styled_sign_in_page_with_the_time() -> None:
    make_user("boss")
    for _ in range(5):
        _sign_in("alice", "wrong")
    _time_passes(1)
    _, response = _sign_in("alice", PASSWORD)
    body = response.content.decode()
    assert response.status_code == 429
    notice = f"{ACCOUNT_LOCKED} Try again in 14 minutes."
    assert f'<p role="alert" class="feedback error">{notice}</p>' in body
    assert '<main class="auth">' in body
    assert "chatsite/chat.css" in body
    assert 'value="alice"' in body  # the form, ready for later
    assert 13 * 60 < int(response["Retry-After"]) <= 14 * 60
    assert "no-store" in response["Cache-Control"]
    assert "Content-Security-Policy" in response


@pytest.mark.django_db(transaction=True)
async def test_the_lockout_page_also_comes_through_the_async_middleware_chain() -> None:
    # daphne runs the middleware asynchronously, where axes hands its lockout callable
    # different arguments.
    from asgiref.sync import sync_to_async

    await sync_to_async(make_user)("boss")
    client = AsyncClient(REMOTE_ADDR="203.0.113.7")
    for _ in range(5):
        response = await client.post("/accounts/login/", {"username": "al", "password": "x"})
    assert response.status_code == 429
    assert f"{ACCOUNT_LOCKED} Try again in 15 minutes." in response.content.decode()


def test_a_suspended_account_still_hears_its_reason_only_after_the_right_password() -> None:
    from accounts.models import Suspension

    make_user("boss")
    troll = make_user("troll", PASSWORD)
    Suspension.objects.create(user=troll, reason="Rude to moderators.")
    _, wrong = _sign_in("troll", "wrong")
    assert "Rude to moderators." not in wrong.content.decode()
    _, right = _sign_in("troll", PASSWORD)
    assert "Rude to moderators." in right.content.decode()


def test_force_login_is_untouched_by_the_limits() -> None:
    make_user("boss")
    alice = make_user("alice", PASSWORD)
    for _ in range(5):
        _sign_in("alice", "wrong", address="127.0.0.1")
    client = Client()
    client.force_login(alice)  # tests sign in this way: no password, so nothing to refuse
    assert client.get("/").status_code == 200


def test_limits_can_be_set_and_turned_off(settings: Any) -> None:
    settings.CHATSITE_LOGIN_FAILURES_PER_ACCOUNT = 2
    settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS = 0
    make_user("boss")
    _sign_in("alice", "wrong")
    assert _sign_in("alice", "wrong")[1].status_code == 429
    for attempt in range(30):  # no limit per address
        _, response = _sign_in(f"name{attempt}", "wrong")
    assert response.status_code == 200


# --- sign-ups ------------------------------------------------------------------------------


def _sign_up(username: str, *, address: str = "203.0.113.7") -> Any:
    password = "correct-horse-battery"
    return Client(REMOTE_ADDR=address).post(
        "/accounts/signup/",
        {"username": username, "password1": password, "password2": password},
    )


def test_sign_ups_from_one_address_stop_at_the_hourly_limit_and_nothing_is_created() -> None:
    User = get_user_model()
    for attempt in range(10):
        assert _sign_up(f"bot{attempt}").status_code == 302
    assert User.objects.get(username="bot0").is_superuser  # the first account's rule holds
    for attempt in range(10, 30):
        response = _sign_up(f"bot{attempt}")
        body = response.content.decode()
        assert response.status_code == 429
        assert (
            "Too many accounts were created from your network address. "
            "Try again in 60 minutes." in body
        )
        assert '<main class="auth">' in body
        assert 3540 < int(response["Retry-After"]) <= 3600
    assert User.objects.count() == 10
    assert SignupRecord.objects.count() == 10
    assert _sign_up("elsewhere", address="198.51.100.1").status_code == 302


def test_sign_ups_open_again_once_the_oldest_is_an_hour_old(settings: Any) -> None:
    settings.CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR = 2
    assert _sign_up("first").status_code == 302
    assert _sign_up("second").status_code == 302
    oldest = SignupRecord.objects.order_by("at")[0]
    SignupRecord.objects.filter(pk=oldest.pk).update(at=F("at") - timedelta(minutes=50))
    response = _sign_up("third")
    assert response.status_code == 429
    assert "Try again in 10 minutes." in response.content.decode()
    SignupRecord.objects.update(at=F("at") - timedelta(minutes=10))
    assert _sign_up("third").status_code == 302
    # An address is kept no longer than it counts: the hour-old record is gone.
    assert sorted(SignupRecord.objects.values_list("pk", flat=True)) == [
        oldest.pk + 1,
        oldest.pk + 2,
    ]


def test_an_invalid_sign_up_does_not_count(settings: Any) -> None:
    settings.CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR = 1
    response = Client(REMOTE_ADDR="203.0.113.7").post(
        "/accounts/signup/", {"username": "x", "password1": "a", "password2": "b"}
    )
    assert response.status_code == 200
    assert not SignupRecord.objects.exists()
    assert _sign_up("real").status_code == 302


def test_the_sign_up_limit_can_be_turned_off(settings: Any) -> None:
    settings.CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR = 0
    for attempt in range(12):
        assert _sign_up(f"user{attempt}").status_code == 302
    assert not SignupRecord.objects.exists()


# --- the client address --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote_addr", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),  # one /64: one subscriber
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("", None),
        ("not-an-address", None),
    ],
)
def test_the_client_address_is_remote_addr_with_ipv6_counted_per_64(
    remote_addr: str, expected: str | None
) -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/", REMOTE_ADDR=remote_addr)
    assert client_address(request) == expected


def test_a_forwarded_for_header_alone_is_not_trusted() -> None:
    from django.test import RequestFactory

    request = RequestFactory().get(
        "/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.9"
    )
    assert client_address(request) == "203.0.113.7"
