from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import SignupRecord, Suspension

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
