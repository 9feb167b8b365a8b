from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any, Literal

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from .models import SignupRecord, Suspension, UsageEvent

SIGNUP_WINDOW = timedelta(hours=1)


def suspension_current(*, user_id: Any) -> Suspension | None:
    """The suspension in force for this user now, if any (it lifts itself when it ends)."""
    if user_id is None:
        return None
    now = timezone.now()
    return (
        Suspension.objects.filter(user_id=user_id, lifted_at=None)
        .filter(Q(until=None) | Q(until__gt=now))
        .order_by("-created_at")
        .first()
    )


def suspension_notice(suspension: Suspension) -> str:
    end = (
        f"until {timezone.localtime(suspension.until):%Y-%m-%d %H:%M}"
        if suspension.until
        else "until further notice"
    )
    return f"This account is suspended {end}. Reason: {suspension.reason}"


@dataclass(frozen=True)
class Lockout:
    """Sign-ins for an account or from an address, or sign-ups from an address, are
    refused until `until`."""

    scope: Literal["account", "address", "signin", "signup"]
    until: datetime

    def seconds_left(self, now: datetime | None = None) -> int:
        left = (self.until - (now or timezone.now())).total_seconds()
        return max(1, math.ceil(left))


def signin_lockouts(
    *, username: str | None, address: str | None, now: datetime | None = None
) -> list[Lockout]:
    """The limits on failed sign-ins that this account or this address has reached.

    Axes keeps one row per account, address and user agent, with its failures and the time
    of the last one; a row stops counting a cool-off after that. So a limit holds until
    enough of the newest rows to reach it have aged out.
    """
    now = now or timezone.now()
    cool_off = get_cool_off()
    per_account = settings.CHATSITE_LOGIN_FAILURES_PER_ACCOUNT
    per_address = settings.CHATSITE_LOGIN_FAILURES_PER_ADDRESS
    checks: list[tuple[Literal["account", "address"], Q, int]] = []
    if username is not None:
        checks.append(("account", Q(username=username), per_account))
    if address is not None:
        checks.append(("address", Q(ip_address=address), per_address))
    lockouts = []
    for scope, match, limit in checks:
        if limit <= 0:
            continue
        rows = (
            AccessAttempt.objects.filter(match, attempt_time__gte=now - cool_off)
            .order_by("-attempt_time")
            .values_list("attempt_time", "failures_since_start")[:limit]
        )
        failures = 0
        for at, count in rows:
            failures += count
            if failures >= limit:
                lockouts.append(Lockout(scope=scope, until=at + cool_off))
                break
    return lockouts


def signup_lockout(*, address: str | None, now: datetime | None = None) -> Lockout | None:
    """Refused while CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR accounts were created from this
    address in the last hour: until the oldest of those is an hour old."""
    limit = settings.CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR
    if limit <= 0 or address is None:
        return None
    now = now or timezone.now()
    recent = list(
        SignupRecord.objects.filter(address=address, at__gt=now - SIGNUP_WINDOW)
        .order_by("-at")
        .values_list("at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return None
    return Lockout(scope="signup", until=recent[-1] + SIGNUP_WINDOW)


_LOCKOUT_REASONS = {
    "account": "Too many failed sign-ins for this account.",
    "address": "Too many failed sign-ins from your network address.",
    "signin": "Too many failed sign-ins.",
    "signup": "Too many accounts were created from your network address.",
}


def lockout_notice(lockout: Lockout, *, now: datetime | None = None) -> str:
    minutes = math.ceil(lockout.seconds_left(now) / 60)
    return (
        f"{_LOCKOUT_REASONS[lockout.scope]} "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )


def user_session_is_live(*, user_id: Any, session_key: str | None) -> bool:
    """Is this socket's sign-in still valid: session not ended, user active, password same?"""
    if user_id is None or not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if str(data.get(SESSION_KEY)) != str(user_id):
        return False  # signed out (the session is gone) or someone else's
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or suspension_current(user_id=user_id) is not None:
        return False
    return constant_time_compare(str(data.get(HASH_SESSION_KEY, "")), user.get_session_auth_hash())


@dataclass(frozen=True)
class UsageOverview:
    """What was spent since a moment, site-wide (the operator's overview)."""

    messages_per_day: list[dict[str, Any]]  # {"day": date, "value": requests for answers}
    tokens_per_day: list[dict[str, Any]]  # {"day": date, "value": tokens}
    per_model: list[dict[str, Any]]  # {"model", "tokens", "answers"}, most tokens first
    top_users: list[dict[str, Any]]  # {"user__username", "tokens"}, the ten biggest


def usage_overview(*, since: datetime) -> UsageOverview:
    """From the usage ledger: four grouped queries, whatever the number of rows."""
    events = UsageEvent.objects.filter(at__gte=since)
    tokens = events.filter(kind=UsageEvent.Kind.TOKENS)
    return UsageOverview(
        messages_per_day=list(
            events.filter(kind=UsageEvent.Kind.MESSAGE)
            .annotate(day=TruncDate("at"))
            .values("day")
            .annotate(value=Count("id"))
        ),
        tokens_per_day=list(
            tokens.annotate(day=TruncDate("at")).values("day").annotate(value=Sum("tokens"))
        ),
        per_model=list(
            tokens.values("model")
            .annotate(tokens=Sum("tokens"), answers=Count("id"))
            .order_by("-tokens")
        ),
        top_users=list(
            tokens.values("user__username").annotate(tokens=Sum("tokens")).order_by("-tokens")[:10]
        ),
    )


# --- single sign-on ------------------------------------------------------------------------


def users_with_email(*, email: str) -> list[Any]:
    """The accounts whose address is this one (any case): candidates for linking a
    provider's sign-in to an existing account."""
    if not email:
        return []
    return list(get_user_model().objects.filter(email__iexact=email).order_by("pk")[:2])


def username_free(*, wanted: str) -> str:
    """`wanted` if no account has it, else `wanted2`, `wanted3`, … (within the field's
    150 characters)."""
    User = get_user_model()
    base = wanted[:140] or "user"
    taken = set(User.objects.filter(username__istartswith=base).values_list("username", flat=True))
    taken = {name.lower() for name in taken}
    if base.lower() not in taken:
        return base
    number = 2
    while f"{base}{number}".lower() in taken:
        number += 1
    return f"{base}{number}"
