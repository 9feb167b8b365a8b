"""Writes of share links: making one (a snapshot), revoking it, a moderator's take-down.

A share copies the text of the messages it holds when it is made (SharedMessage rows), so
nothing done to the conversation afterwards (a new message, an edit, a regenerated or
continued answer) changes what the link shows; sharing again makes a new link. Of the
files attached to a message only the name, kind and size are copied (SharedAttachment
rows): the files themselves are never shared.
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from chatsite.errors import ActionRefused
from chatsite.inputs import pk_from
from chatsite.types import Account

from . import attachment_selectors, share_selectors
from .models import Conversation, Message, SharedAttachment, SharedMessage, ShareLink

SHARE_WINDOW = timedelta(hours=1)
TAKE_DOWN_REASON_CHARS = 1000


def share_create(
    *,
    owner: Account,
    conversation: Conversation,
    up_to: Any = None,
    show_owner_name: bool = False,
) -> ShareLink:
    """A new link to a copy of the conversation's path as the owner sees it: whole, or up
    to the message `up_to` (an answer's "share up to here"). Refused past the hourly
    limit (ActionRefused), and for an unknown message or an answer still being written
    (ValidationError); nothing is written then."""
    if conversation.owner_id != owner.pk:
        raise ValidationError("That conversation does not exist.")  # never another's
    _check_limit(owner)
    message_id: int | None = None
    if up_to not in (None, ""):
        message_id = pk_from(up_to)
        if message_id is None:
            raise ValidationError("That answer does not exist.")
    path = share_selectors.share_path(conversation=conversation, up_to=message_id)
    if path is None:
        raise ValidationError("That answer does not exist.")
    if not path:
        raise ValidationError("There is nothing to share yet: send a message first.")
    if any(message.status == Message.Status.STREAMING for message in path):
        raise ValidationError("An answer is still being written: share it when it has finished.")
    files = attachment_selectors.attachments_by_message(
        message_ids=[message.pk for message in path if not message.hidden]
    )
    with transaction.atomic():
        share = ShareLink.objects.create(
            # 192 random bits: unguessable, and never derived from the conversation's id.
            token=secrets.token_urlsafe(24),
            conversation=conversation,
            title=conversation.title[:200],
            show_owner_name=bool(show_owner_name),
        )
        copies = SharedMessage.objects.bulk_create(
            [
                SharedMessage(
                    share=share,
                    source=message,
                    position=position,
                    role=message.role,
                    # Text hidden by moderation is never copied out.
                    content="" if message.hidden else message.content,
                    model=message.model,
                    status=message.status,
                    finish_reason=message.finish_reason,
                    hidden=message.hidden,
                    created_at=message.created_at,
                )
                for position, message in enumerate(path)
            ]
        )
        # bulk_create gave each copy its id (SQLite and PostgreSQL return them).
        SharedAttachment.objects.bulk_create(
            [
                SharedAttachment(
                    shared_message=copy,
                    position=position,
                    name=row.name,
                    kind=row.kind,
                    size=row.size,
                )
                for message, copy in zip(path, copies, strict=True)
                for position, row in enumerate(files.get(message.pk, []))
            ]
        )
    return share


def _check_limit(owner: Account) -> None:
    limit = settings.CHATSITE_SHARES_PER_HOUR
    if limit <= 0:
        return
    now = timezone.now()
    made = share_selectors.shares_created_since(user=owner, since=now - SHARE_WINDOW)
    if len(made) >= limit:
        # Free again when the oldest link that counts leaves the hour.
        wait = (made[len(made) - limit] + SHARE_WINDOW - now).total_seconds()
        minutes = max(1, math.ceil(wait / 60))
        raise ActionRefused(
            f"You have made {limit} share links in the last hour. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
            retry_after=max(wait, 1.0),
        )


def share_revoke(*, share: ShareLink) -> bool:
    """The owner ends a link for good: its address is a 404 from now on. False when it
    was revoked already."""
    now = timezone.now()
    done = ShareLink.objects.filter(pk=share.pk, revoked_at=None).update(revoked_at=now)
    if done:
        share.revoked_at = now
    return bool(done)


def share_revoke_all(*, owner: Account) -> int:
    """The owner ends every link of theirs at once (those past the settings page's list
    too). How many were revoked."""
    return ShareLink.objects.filter(conversation__owner_id=owner.pk, revoked_at=None).update(
        revoked_at=timezone.now()
    )


def share_take_down(*, share: ShareLink, moderator: Account, reason: Any) -> bool:
    """A moderator stops a link from serving, saying why (kept on the link, with who and
    when). Final: its owner sees it marked as taken down and cannot serve it again. False
    when it was taken down already."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("Write why this share is taken down.")
    now = timezone.now()
    fields = {
        "taken_down_at": now,
        "taken_down_by": moderator,
        "taken_down_reason": reason.strip()[:TAKE_DOWN_REASON_CHARS],
    }
    done = ShareLink.objects.filter(pk=share.pk, taken_down_at=None).update(**fields)
    if done:
        for name, value in fields.items():
            setattr(share, name, value)
    return bool(done)
