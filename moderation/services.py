"""Moderation writes: flags from screening and reports, and moderators' actions."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from chatsite.inputs import pk_from
from chatsite.types import Account
from conversations.models import Conversation, Message

from .models import AccessLog, Flag
from .screening import Verdict

REPORT_CATEGORIES = [
    ("harassment", "Harassment or hate"),
    ("sexual", "Sexual content"),
    ("violence", "Violence"),
    ("self-harm", "Self-harm"),
    ("illicit", "Illegal activity"),
    ("misinformation", "Wrong or misleading"),
    ("other", "Something else"),
]
REPORT_COMMENT_CHARS = 2000


def flag_from_verdict(*, message: Message, verdict: Verdict) -> list[Flag]:
    """One flag per finding of a screening verdict, on this message."""
    conversation = message.conversation
    return Flag.objects.bulk_create(
        [
            Flag(
                conversation=conversation,
                message=message,
                subject_id=conversation.owner_id,
                source=finding.source,
                category=finding.category,
                action=verdict.action or "flag",
                scores=finding.scores,
                excerpt=finding.excerpt,
            )
            for finding in verdict.findings
        ]
    )


def message_hide(*, message_id: int, reason: str) -> int:
    """Hide a message's text from its owner (kept for moderators, never sent upstream)."""
    return Message.objects.filter(pk=message_id).update(hidden=True, hidden_reason=reason[:200])


def flag_report(
    *, reporter: Account, conversation: Conversation, message_id: Any, category: Any, comment: Any
) -> Flag:
    """A user's report of an answer (or the whole conversation, without a message)."""
    categories = dict(REPORT_CATEGORIES)
    if category not in categories:
        raise ValidationError("Choose what is wrong from the list.")
    if not isinstance(comment, str):
        comment = ""
    if len(comment) > REPORT_COMMENT_CHARS:
        raise ValidationError(f"A comment can be at most {REPORT_COMMENT_CHARS} characters long.")
    message = None
    if message_id not in (None, ""):
        pk = pk_from(message_id)
        message = conversation.messages.filter(pk=pk).first() if pk is not None else None
        if message is None:
            raise ValidationError("That message does not exist.")
    return Flag.objects.create(
        conversation=conversation,
        message=message,
        subject_id=conversation.owner_id,
        reporter=reporter,
        source=Flag.Source.REPORT,
        category=category,
        comment=comment.strip(),
        excerpt=(message.content[:500] if message else conversation.title),
    )


def flag_resolve(*, flags: list[Flag], moderator: Account, status: str, note: str = "") -> int:
    """Close flags: dismissed, or their message hidden (or unhidden: back to dismissed)."""
    now = timezone.now()
    with transaction.atomic():
        if status == Flag.Status.HIDDEN:
            for flag in flags:
                if flag.message_id:
                    message_hide(message_id=flag.message_id, reason="Hidden by a moderator.")
        ids = [f.pk for f in flags]
        return Flag.objects.filter(pk__in=ids).update(
            status=status, resolved_by=moderator, resolved_at=now, resolution_note=note
        )


def flag_unhide(*, flags: list[Flag], moderator: Account, note: str = "") -> int:
    now = timezone.now()
    with transaction.atomic():
        message_ids = [f.message_id for f in flags if f.message_id]
        Message.objects.filter(pk__in=message_ids).update(hidden=False, hidden_reason="")
        return Flag.objects.filter(pk__in=[f.pk for f in flags]).update(
            status=Flag.Status.DISMISSED,
            resolved_by=moderator,
            resolved_at=now,
            resolution_note=note,
        )


ACCESS_REASON_CHARS = 1000


def access_record(
    *,
    staff: Account,
    conversation: Conversation | None,
    reason: Any,
    path: str,
    owner: Account | None = None,
) -> AccessLog:
    """Record a look by staff at a user's conversation, or (without one) at all of an
    owner's data, before anything is shown."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("Write why you need to read this conversation.")
    return AccessLog.objects.create(
        staff=staff,
        staff_username=staff.get_username(),
        owner_id=conversation.owner_id if conversation is not None else _pk(owner),
        conversation=conversation,
        conversation_title=(
            conversation.title[:200] if conversation is not None else "(all conversations)"
        ),
        reason=reason.strip()[:ACCESS_REASON_CHARS],
        path=path[:500],
    )


def access_record_chunk_log(*, staff: Account, message: Message, path: str) -> AccessLog:
    """A superuser is shown an answer's raw upstream body (the chunk log), under the
    reason already given for its conversation."""
    conversation = message.conversation
    return AccessLog.objects.create(
        staff=staff,
        staff_username=staff.get_username(),
        owner_id=conversation.owner_id,
        conversation=conversation,
        conversation_title=conversation.title[:200],
        reason=f"Chunk log of message #{message.pk} shown (under the reason last given "
        "for this conversation)",
        path=path[:500],
    )


def access_record_attachment(
    *, staff: Account, message: Message, name: str, path: str
) -> AccessLog:
    """Staff open a file attached to a user's message, under the reason already given
    for its conversation."""
    conversation = message.conversation
    return AccessLog.objects.create(
        staff=staff,
        staff_username=staff.get_username(),
        owner_id=conversation.owner_id,
        conversation=conversation,
        conversation_title=conversation.title[:200],
        reason=f"Attached file {name[:200]} of message #{message.pk} opened (under the reason "
        "last given for this conversation)",
        path=path[:500],
    )


def access_record_text_search(
    *, staff: Account, conversations: list[Conversation], words: str, reason: Any, path: str
) -> list[AccessLog]:
    """A staff-wide search of message text reveals whose conversations hold the words:
    one entry per conversation it reveals, before the results are shown."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("Write why you need to search users' messages.")
    reason = f'Text search "{words[:200]}": {reason.strip()}'[:ACCESS_REASON_CHARS]
    return AccessLog.objects.bulk_create(
        [
            AccessLog(
                staff=staff,
                staff_username=staff.get_username(),
                owner_id=conversation.owner_id,
                conversation=conversation,
                conversation_title=conversation.title[:200],
                reason=reason,
                path=path[:500],
            )
            for conversation in conversations
        ]
    )


def _pk(owner: Account | None) -> int:
    if owner is None:
        raise ValueError("an access without a conversation names the owner")
    return owner.pk
