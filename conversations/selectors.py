"""Reads of conversations, scoped to the owner: one conversation, the sidebar's pages,
search, the user's settings, what an export reads and an import shows.

Views and the websocket consumer both go through these functions, so that "whose is
this?" is answered in exactly one place. A selector given another user's id returns
None (the caller turns that into a 404 or a refused socket), never the object. A
conversation's messages are read in message_selectors, usage in usage_selectors.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from chatsite.inputs import aware_from, pk_from
from chatsite.types import Account, Visitor, visitor_id

from . import search
from .models import Conversation, ImportJob, Message, UserSettings


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _conversations(*, user: Visitor, archived: bool) -> QuerySet[Conversation]:
    if not getattr(user, "is_authenticated", False):
        return Conversation.objects.none()
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    return (
        # importing: an import not yet complete shows nothing of itself.
        Conversation.objects.filter(owner_id=visitor_id(user), archived=archived, importing=False)
        .annotate(is_live=Exists(streaming))
        .order_by("-pinned", "-updated_at", "-id")
    )


def conversation_list(
    *, user: Visitor, limit: int = 100, archived: bool = False
) -> QuerySet[Conversation]:
    """The user's conversations: pinned first, then by last activity; archived apart."""
    return _conversations(user=user, archived=archived)[:limit]


SIDEBAR_PAGE = 30


def conversation_page(
    *, user: Visitor, after: str = "", size: int = SIDEBAR_PAGE, archived: bool = False
) -> tuple[list[Conversation], str]:
    """One page of the user's conversations in list order, and the cursor of the next page
    ("" when there is none). Keyset paging: a conversation moving up meanwhile is neither
    skipped nor shown twice further down."""
    rows = _conversations(user=user, archived=archived)
    if after:
        pinned_s, stamp, pk_s = [*after.split("|"), "", "", ""][:3]
        pinned, moment, pk = pinned_s == "1", aware_from(stamp), pk_from(pk_s)
        if moment is None or pk is None:
            return [], ""  # not a cursor this site made
        rows = rows.filter(
            Q(pinned__lt=pinned)
            | Q(pinned=pinned, updated_at__lt=moment)
            | Q(pinned=pinned, updated_at=moment, id__lt=pk)
        )
    page = list(rows[: size + 1])
    if len(page) <= size:
        return page, ""
    last = page[size - 1]
    cursor = f"{int(last.pinned)}|{last.updated_at.isoformat()}|{last.pk}"
    return page[:size], cursor


SEARCH_RESULTS = 20


def conversation_search(*, user: Visitor, query: str, limit: int = SEARCH_RESULTS) -> list[Any]:
    """The user's conversations matching every word of the query (prefixes too), best
    first, each with an escaped snippet whose matching words are marked."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    words = search.query_words(query)
    found = search.hits(owner_id=user.pk, words=words, limit=limit)
    rows = Conversation.objects.filter(owner_id=visitor_id(user), importing=False).in_bulk(
        [h.conversation_id for h in found]
    )
    texts = {
        pk: (content, role)
        for pk, content, role in Message.objects.filter(
            conversation__owner_id=visitor_id(user),
            hidden=False,  # text hidden by moderation is not shown, not even in a snippet
            pk__in=[h.message_id for h in found if h.message_id],
        ).values_list("pk", "content", "role")
    }
    results = []
    for hit in found:
        conversation = rows.get(hit.conversation_id)
        if conversation is None:  # deleted meanwhile
            continue
        if hit.message_id is None:
            text, role = conversation.display_title, ""
        elif hit.message_id in texts:
            text, role = texts[hit.message_id]
        else:
            continue
        results.append(
            search.Result(
                public_id=str(conversation.public_id),
                title=conversation.display_title,
                message_id=hit.message_id,
                # An answer is markdown, read as plain text; a user's text is shown as typed.
                snippet=search.snippet_html(text, words, markdown=role == Message.Role.ASSISTANT),
                archived=conversation.archived,
                updated_at=conversation.updated_at,
            )
        )
    return results


def conversation_get(*, user: Visitor, public_id: Any) -> Conversation | None:
    """The user's conversation with this public id, or None (not theirs, or no such)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    uid = _as_uuid(public_id)
    if uid is None:
        return None
    return Conversation.objects.filter(
        owner_id=visitor_id(user), public_id=uid, importing=False
    ).first()


def user_settings_for(*, user: Account) -> UserSettings:
    """The user's preferences (defaults, unsaved, for a user who never set any)."""
    found = UserSettings.objects.filter(user=user).first()
    return found if found is not None else UserSettings(user=user)


def conversation_ids(*, user: Visitor) -> list[int]:
    """All of the user's conversations (archived too), oldest first: for an export."""
    if not getattr(user, "is_authenticated", False):
        return []
    return list(
        Conversation.objects.filter(owner_id=visitor_id(user), importing=False)
        .order_by("id")
        .values_list("id", flat=True)
    )


def conversation_batch(
    *, user: Visitor, ids: list[int]
) -> list[tuple[Conversation, list[Message]]]:
    """These conversations of the user's with all their messages (an export's slice)."""
    rows = list(
        Conversation.objects.filter(
            owner_id=visitor_id(user), importing=False, pk__in=ids
        ).order_by("id")
    )
    messages: dict[int, list[Message]] = {c.pk: [] for c in rows}
    for message in Message.objects.filter(conversation__in=rows).order_by("id"):
        messages[message.conversation_id].append(message)
    return [(c, messages[c.pk]) for c in rows]


IMPORT_SHOWN_FOR = 600  # seconds a finished import's result stays on the settings page


def import_job_get(*, user: Visitor, public_id: Any) -> ImportJob | None:
    """The user's import with this public id, or None."""
    uid = _as_uuid(public_id)
    if not getattr(user, "is_authenticated", False) or uid is None:
        return None
    return ImportJob.objects.filter(owner_id=visitor_id(user), public_id=uid).first()


def import_job_recent(*, user: Visitor) -> ImportJob | None:
    """The user's import to show on the settings page: one being written, or one that
    finished in the last few minutes."""
    if not getattr(user, "is_authenticated", False):
        return None
    since = timezone.now() - timedelta(seconds=IMPORT_SHOWN_FOR)
    return (
        ImportJob.objects.filter(owner_id=visitor_id(user))
        .filter(Q(status=ImportJob.Status.RUNNING) | Q(finished_at__gte=since))
        .first()
    )


def import_job_conversations(*, job: ImportJob, limit: int = 20) -> list[Conversation]:
    """The first conversations a completed import brought in (none while it runs)."""
    return list(
        Conversation.objects.filter(
            owner_id=job.owner_id, import_job=job, importing=False
        ).order_by("id")[:limit]
    )


def conversations_with_text_staff_wide(*, words: list[str], limit: int) -> list[Conversation]:
    """The one read not scoped to an owner: staff searching message text in admin (each
    conversation it reveals is recorded in the access log, with the reason given)."""
    ids = search.conversation_ids_staff_wide(words=words, limit=limit)
    found = Conversation.objects.select_related("owner").in_bulk(ids)
    return [found[i] for i in ids if i in found]
