"""Reads of share links: the owner's list, one of the owner's, and the one public read.

`share_get_public` is the only read that needs no signed-in user: everything that stops a
link from serving (revoked, taken down, its owner suspended or deactivated) is decided
there, in one query, and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.models import Suspension
from chatsite.inputs import pk_from
from chatsite.types import Visitor, visitor_id

from .message_selectors import message_list
from .models import Conversation, Message, SharedMessage, ShareLink

# What secrets.token_urlsafe makes; anything else is not a token of ours (a 404 without
# a query, which reveals nothing: the lookup of a well-formed token is one indexed row).
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class PublicShare:
    """What the shared page shows: the link and its messages, in order."""

    share: ShareLink
    messages: list[SharedMessage]
    owner_name: str  # "" unless the owner chose to show it
    # The conversation's title, unless one of its messages is hidden by moderation: a
    # title is written from the first messages, so it may repeat what was hidden.
    title: str


def _owner_suspended() -> Exists:
    now = timezone.now()
    return Exists(
        Suspension.objects.filter(
            user_id=OuterRef("conversation__owner_id"), lifted_at=None
        ).filter(Q(until=None) | Q(until__gt=now))
    )


def share_get_public(*, token: Any) -> PublicShare | None:
    """The share with this token as anyone may read it, or None: no such token, revoked,
    taken down by a moderator, or its owner suspended (until lifted) or deactivated."""
    if not isinstance(token, str) or not _TOKEN.match(token):
        return None
    share = (
        ShareLink.objects.filter(
            token=token,
            revoked_at=None,
            taken_down_at=None,
            conversation__owner__is_active=True,
            conversation__importing=False,
        )
        .exclude(_owner_suspended())
        .select_related("conversation__owner")
        .first()
    )
    if share is None:
        return None
    messages = share_messages(share=share)
    return PublicShare(
        share=share,
        messages=messages,
        owner_name=share.conversation.owner.get_username() if share.show_owner_name else "",
        title=(
            "Shared conversation"
            if any(message.hidden for message in messages)
            else share.display_title
        ),
    )


def share_messages(*, share: ShareLink) -> list[SharedMessage]:
    """The share's messages in order, each with its files' names (`attachments`); one
    hidden by moderation since it was shared is hidden here too (its text and its files'
    names are left out)."""
    rows = list(
        share.messages.select_related("source").prefetch_related("attachments").order_by("position")
    )
    for row in rows:
        if row.source is not None and row.source.hidden:
            row.hidden = True
        if row.hidden:
            row.content = ""
    return rows


def _owned(user: Visitor) -> QuerySet[ShareLink]:
    if not getattr(user, "is_authenticated", False):
        return ShareLink.objects.none()
    return ShareLink.objects.filter(
        conversation__owner_id=visitor_id(user), conversation__importing=False
    )


SHARES_LISTED = 200  # on the settings page; "Revoke all" reaches the rest


def share_list_for_owner(*, user: Visitor, limit: int | None = None) -> list[ShareLink]:
    """The user's share links that still exist for them, newest first: serving ones and
    those a moderator took down (marked so); revoked ones are gone from the list."""
    listed = _owned(user).filter(revoked_at=None).order_by("-created_at", "-id")
    return list(listed[: limit or SHARES_LISTED])


def share_count_for_owner(*, user: Visitor) -> int:
    """How many of the user's links are not revoked (the list may show fewer)."""
    return _owned(user).filter(revoked_at=None).count()


def share_get_for_owner(*, user: Visitor, share_id: Any) -> ShareLink | None:
    """The user's share link with this id, or None (not theirs, or no such)."""
    pk = pk_from(share_id)
    if pk is None:
        return None
    return _owned(user).filter(pk=pk).first()


def shares_created_since(*, user: Visitor, since: datetime) -> list[datetime]:
    """When the user made each share link since a moment (revoked ones too), oldest first:
    for the hourly limit."""
    return list(
        ShareLink.objects.filter(conversation__owner_id=visitor_id(user), created_at__gte=since)
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )


def share_path(*, conversation: Conversation, up_to: int | None) -> list[Message] | None:
    """The messages a new share of the conversation holds: the path of versions the owner
    sees, whole, or from the first message to the message `up_to` (the versions that lead
    to it). None when `up_to` is not a message of this conversation."""
    if up_to is None:
        return [item.message for item in message_list(conversation=conversation)]
    parent_of = dict(conversation.messages.values_list("id", "parent_id"))
    if up_to not in parent_of:
        return None
    ids: list[int] = []
    node: int | None = up_to
    while node is not None:
        ids.append(node)
        node = parent_of[node]
    ids.reverse()
    by_id = conversation.messages.in_bulk(ids)
    return [by_id[pk] for pk in ids]
