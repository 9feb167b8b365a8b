"""Reads of usage: tokens of a conversation's answers, a user's answers and tokens this
month (reported or estimated), what a user has asked for lately (answers being written,
requests in the last minute), and the operator's site-wide counts (answers streaming now,
verdicts per model)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import Length
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import UsageEvent
from chatsite.types import Visitor, visitor_id

from .models import AnswerFeedback, Conversation, Message


def usage_for_conversation(*, conversation: Conversation) -> dict[str, int]:
    """Tokens of every answer of the conversation, all versions (all were paid for)."""
    totals = conversation.messages.filter(role=Message.Role.ASSISTANT).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    return {"prompt": totals["prompt"] or 0, "completion": totals["completion"] or 0}


@dataclass(frozen=True)
class AnswerLoad:
    """What a user has asked of the upstream lately, as the limits on answers count it."""

    streaming: int  # the user's answers being written now, in any conversation
    # When the user's `nth` newest request for an answer within the window was made;
    # None when there were fewer (or no window was asked for).
    nth_recent_at: datetime | None


_STREAMING = (
    "SELECT COUNT(*) FROM conversations_message m"
    " INNER JOIN conversations_conversation c ON c.id = m.conversation_id"
    " WHERE c.owner_id = %s AND m.status = %s"
)
_NTH_RECENT = (
    "SELECT u.at FROM accounts_usageevent u"
    " WHERE u.user_id = %s AND u.kind = %s AND u.at >= %s"
    " ORDER BY u.at DESC LIMIT 1 OFFSET %s"
)


def user_answer_load(*, user_id: int, seconds: float, nth: int) -> AnswerLoad:
    """The user's answers being written, and their `nth` newest request of the last
    `seconds`, in one query. It runs before every answer, while the reader waits for
    the first token: Django took longer to build the two querysets this replaces than
    the database took to run them (0.6 ms each, against 0.08 ms for the query itself)."""
    if nth <= 0:
        sql = f"SELECT ({_STREAMING}), NULL"
        params: list[Any] = [user_id, Message.Status.STREAMING]
    else:
        since = connection.ops.adapt_datetimefield_value(
            timezone.now() - timedelta(seconds=seconds)
        )
        sql = f"SELECT ({_STREAMING}), ({_NTH_RECENT})"
        params = [user_id, Message.Status.STREAMING]
        params += [user_id, UsageEvent.Kind.MESSAGE, since, nth - 1]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        streaming, at = cursor.fetchone()
    return AnswerLoad(streaming=streaming, nth_recent_at=_aware(at))


def _aware(value: datetime | str | None) -> datetime | None:
    # PostgreSQL returns an aware datetime; SQLite the text Django stored, in UTC.
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"not a stored datetime: {value!r}")
        value = parsed
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


# Tokens the upstream did not report are estimated at this many characters a token, as
# the usage ledger estimates them (accounts.quotas.estimate_tokens).
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class UsageRow:
    """One model's answers this month and their tokens. A count holding an estimate is
    flagged (the page marks it "≈"); None: nothing reported it and nothing can estimate it."""

    model: str
    answers: int
    prompt: int | None
    completion: int | None
    prompt_estimated: bool = False
    completion_estimated: bool = False


def usage_this_month(*, user: Visitor) -> list[UsageRow]:
    """The user's answers and tokens since the first of this month (the site's time zone),
    per model, in two grouped queries. What the upstream reported is summed as it is; what
    it did not report (llama.cpp never does in a stream) is estimated, never counted as 0:
    the answers' text at about four characters a token, and their prompts as what the
    usage ledger estimated for prompt and answer together (it keeps no split) less that."""
    owner_id = visitor_id(user)
    if owner_id is None:
        return []
    start = timezone.localtime().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    unreported = Q(completion_tokens=None)  # the upstream reports all of its usage or none
    rows = (
        Message.objects.filter(
            conversation__owner_id=owner_id,
            conversation__importing=False,
            role=Message.Role.ASSISTANT,
            created_at__gte=start,
        )
        .values("model")
        .annotate(
            answers=Count("id"),
            unreported=Count("id", filter=unreported),
            unreported_chars=Sum(Length("content"), filter=unreported),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
        )
        .order_by("model")
    )
    ledger = dict(
        UsageEvent.objects.filter(
            user_id=owner_id,
            kind=UsageEvent.Kind.TOKENS,
            estimated=True,
            at__gte=start,
        )
        .values("model")
        .annotate(tokens=Sum("tokens"))
        .values_list("model", "tokens")
    )
    return [_usage_row(row, ledger.get(row["model"])) for row in rows]


def _usage_row(row: dict[str, Any], ledger_estimate: int | None) -> UsageRow:
    model = row["model"] or "(unknown)"
    if not row["unreported"]:
        return UsageRow(model, row["answers"], row["prompt"] or 0, row["completion"] or 0)
    texts = -(-(row["unreported_chars"] or 0) // CHARS_PER_TOKEN)  # rounded up
    completion = (row["completion"] or 0) + texts
    if ledger_estimate is not None:
        prompt: int | None = (row["prompt"] or 0) + max(ledger_estimate - texts, 0)
    else:
        # Answers the ledger never counted (imported ones): their prompts are unknown.
        prompt = row["prompt"]
    return UsageRow(
        model,
        row["answers"],
        prompt,
        completion,
        prompt_estimated=prompt is not None,
        completion_estimated=True,
    )


def answers_streaming_count() -> int:
    """Answers being written right now, site-wide (the operator's overview)."""
    return Message.objects.filter(status=Message.Status.STREAMING).count()


def feedback_per_model(*, since: datetime) -> list[dict[str, Any]]:
    """Helpful and not helpful verdicts per model since a moment (the operator's
    overview), most rated first."""
    rows = (
        AnswerFeedback.objects.filter(created_at__gte=since)
        .values("message__model")
        .annotate(
            up=Count("id", filter=Q(value=AnswerFeedback.Value.UP)),
            down=Count("id", filter=Q(value=AnswerFeedback.Value.DOWN)),
        )
        .order_by("-up", "message__model")
    )
    rated = [
        {"model": row["message__model"] or "(unknown)", "up": row["up"], "down": row["down"]}
        for row in rows
    ]
    return sorted(rated, key=lambda row: -(row["up"] + row["down"]))
