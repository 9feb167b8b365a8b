"""Per-user quotas: what is allowed (user, groups, defaults) and what is left."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from .models import Quota, UsageEvent

log = logging.getLogger(__name__)

LIMITS = (
    "messages_per_day",
    "tokens_per_day",
    "tokens_per_month",
    "concurrent_answers",
    "attachment_bytes",
    "attachment_file_bytes",
    "attachment_files",
)


@dataclass(frozen=True)
class Limits:
    messages_per_day: int
    tokens_per_day: int
    tokens_per_month: int
    concurrent_answers: int
    attachment_bytes: int  # all the attached files a user keeps
    attachment_file_bytes: int  # one attached file
    attachment_files: int  # how many attached files a user keeps


def _defaults() -> dict[str, int]:
    return {
        "messages_per_day": settings.CHATSITE_QUOTA_MESSAGES_PER_DAY,
        "tokens_per_day": settings.CHATSITE_QUOTA_TOKENS_PER_DAY,
        "tokens_per_month": settings.CHATSITE_QUOTA_TOKENS_PER_MONTH,
        "concurrent_answers": settings.CHATSITE_MAX_CONCURRENT_ANSWERS,
        "attachment_bytes": settings.CHATSITE_ATTACHMENT_USER_BYTES,
        "attachment_file_bytes": settings.CHATSITE_ATTACHMENT_MAX_BYTES,
        "attachment_files": settings.CHATSITE_ATTACHMENT_USER_FILES,
    }


def limits_for(*, user_id: int) -> Limits:
    """The user's own quota wins; else the most generous of their groups'; else defaults."""
    values = _defaults()
    # One query for both (it runs before every answer): the user's own row and her groups'.
    rows = list(Quota.objects.filter(Q(user_id=user_id) | Q(group__user__id=user_id)).distinct())
    groups = [q for q in rows if q.group_id is not None]
    for name in LIMITS:
        set_by_groups = [getattr(q, name) for q in groups if getattr(q, name) is not None]
        if set_by_groups:
            values[name] = 0 if 0 in set_by_groups else max(set_by_groups)
    own = next((q for q in rows if q.user_id == user_id), None)
    if own is not None:
        for name in LIMITS:
            if getattr(own, name) is not None:
                values[name] = getattr(own, name)
    return Limits(**values)


def _day_start(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(now: datetime) -> datetime:
    return _day_start(now).replace(day=1)


def _next_month(start: datetime) -> datetime:
    return (start + timedelta(days=32)).replace(day=1)


def _spent(user_id: int, kind: str, since: datetime) -> int:
    rows = UsageEvent.objects.filter(user_id=user_id, kind=kind, at__gte=since)
    if kind == UsageEvent.Kind.MESSAGE:
        return rows.count()
    return rows.aggregate(total=Sum("tokens"))["total"] or 0


@dataclass(frozen=True)
class Refusal:
    message: str
    retry_after: float


@dataclass(frozen=True)
class Allowance:
    """What is left; `low` says whether the composer should mention it."""

    text: str
    low: bool


def _when(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}"


def check(*, user_id: int, limits: Limits | None = None) -> Refusal | None:
    """None when the user may start an answer now, else which limit and when it resets.
    `limits`: the user's, when the caller has read them already."""
    limits = limits or limits_for(user_id=user_id)
    now = timezone.now()
    day, month = _day_start(now), _month_start(now)
    tomorrow, next_month = day + timedelta(days=1), _next_month(month)
    checks = [
        (limits.messages_per_day, UsageEvent.Kind.MESSAGE, day, tomorrow, "messages today"),
        (limits.tokens_per_day, UsageEvent.Kind.TOKENS, day, tomorrow, "tokens today"),
        (limits.tokens_per_month, UsageEvent.Kind.TOKENS, month, next_month, "tokens this month"),
    ]
    for limit, kind, since, reset, what in checks:
        if limit and _spent(user_id, kind, since) >= limit:
            return Refusal(
                f"You have used your {limit:,} {what}. It resets at {_when(reset)}.",
                retry_after=max(1.0, math.ceil((reset - now).total_seconds())),
            )
    return None


def allowance(*, user_id: int) -> Allowance | None:
    """The tightest remaining allowance, or None when nothing is limited."""
    limits = limits_for(user_id=user_id)
    now = timezone.now()
    options = []
    if limits.messages_per_day:
        left = limits.messages_per_day - _spent(user_id, UsageEvent.Kind.MESSAGE, _day_start(now))
        noun = "message" if left == 1 else "messages"
        options.append((left / limits.messages_per_day, f"{max(left, 0):,} {noun} left today"))
    if limits.tokens_per_day:
        left = limits.tokens_per_day - _spent(user_id, UsageEvent.Kind.TOKENS, _day_start(now))
        options.append((left / limits.tokens_per_day, f"{max(left, 0):,} tokens left today"))
    if limits.tokens_per_month:
        left = limits.tokens_per_month - _spent(user_id, UsageEvent.Kind.TOKENS, _month_start(now))
        options.append((left / limits.tokens_per_month, f"{max(left, 0):,} tokens left this month"))
    if not options:
        return None
    share, text = min(options)
    return Allowance(text=text, low=share <= settings.CHATSITE_QUOTA_WARN_BELOW)


def record_message(*, user_id: int) -> None:
    """One request for an answer: a message, an edit, a regenerate or a continue."""
    UsageEvent.objects.create(user_id=user_id, kind=UsageEvent.Kind.MESSAGE)


def record_tokens(*, user_id: int, model: str, tokens: int, estimated: bool) -> None:
    if tokens <= 0:
        return
    try:
        with transaction.atomic():  # the foreign key is checked at commit
            UsageEvent.objects.create(
                user_id=user_id,
                kind=UsageEvent.Kind.TOKENS,
                model=model[:200],
                tokens=tokens,
                estimated=estimated,
            )
    except IntegrityError:
        # The account was deleted while its last answer was being finished: there is no
        # one left to count against (and the answer's ending must not fail for it).
        log.info("tokens not counted: user %s no longer exists", user_id)


def record_answer(*, user_id: int, model: str, reported: int | None, characters: int) -> None:
    """An answer's tokens: what the upstream reported, or an estimate from the length of
    the text (prompt and answer), marked as such, when it reported none."""
    if reported is not None:
        record_tokens(user_id=user_id, model=model, tokens=reported, estimated=False)
    else:
        record_tokens(
            user_id=user_id, model=model, tokens=estimate_tokens(characters), estimated=True
        )


def estimate_tokens(characters: int) -> int:
    """About four characters a token: enough to count against a quota, marked as a guess."""
    return math.ceil(characters / 4)
