"""Every read of conversations and messages, scoped to the owner.

Views and the websocket consumer both go through these functions, so that "whose is
this?" is answered in exactly one place. A selector given another user's id returns
None (the caller turns that into a 404 or a refused socket), never the object.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Length
from django.utils import timezone

from accounts.models import UsageEvent
from chatsite.inputs import aware_from, pk_from
from chatsite.types import Account, Visitor, visitor_id

from . import attachment_selectors, search
from .models import AnswerFeedback, Attachment, Conversation, ImportJob, Message, UserSettings

_UNREAD: Any = object()  # "not given" where None is a meaningful value


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


@dataclass(frozen=True)
class Versions:
    """A message's place among its versions (its siblings, oldest first), for "< 2/3 >"."""

    ids: tuple[int, ...]
    number: int  # 1-based

    @classmethod
    def of(cls, message_id: int, ids: Sequence[int]) -> Versions:
        ids = tuple(ids) if message_id in ids else (message_id,)
        return cls(ids=ids, number=ids.index(message_id) + 1)

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def previous(self) -> int | None:
        return self.ids[self.number - 2] if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.ids[self.number] if self.number < len(self.ids) else None


@dataclass(frozen=True)
class MessageView:
    """What a template shows of a message: the row, its versions and, for an answer still
    being written, how its text is cut (finished blocks, the growing one) as the frames
    that follow expect it. One rendering serves the page, an htmx swap and a frame."""

    message: Message
    versions: Versions
    split: tuple[str, str] | None = None
    feedback: AnswerFeedback | None = None  # the owner's verdict on an answer
    # The growing block's HTML as a running generation shows it (safe: rendering.py's).
    tail_html: str | None = None
    # A finished answer's text as HTML, when its generation has it rendered already.
    body_html: str | None = None
    attachments: tuple[Attachment, ...] = ()  # a user message's files, shown as chips

    def with_message(self, message: Message) -> MessageView:
        """The same place among versions for a newer state of the row (versions cannot
        change while an answer streams)."""
        return replace(self, message=message, split=None, tail_html=None, body_html=None)


def message_list(*, conversation: Conversation) -> list[MessageView]:
    """The messages of the path of versions the reader sees, oldest first."""
    rows = list(conversation.messages.order_by("id").values_list("id", "parent_id"))
    ids = _path_ids(rows, leaf_id=_leaf_id(conversation))
    siblings: dict[int | None, list[int]] = {}
    for pk, parent_id in rows:
        siblings.setdefault(parent_id, []).append(pk)
    parent_of = dict(rows)
    by_id = conversation.messages.in_bulk(ids)
    verdicts = {f.message_id: f for f in AnswerFeedback.objects.filter(message_id__in=ids)}
    files = attachment_selectors.attachments_by_message(message_ids=ids)
    return [
        MessageView(
            by_id[pk],
            Versions.of(pk, siblings[parent_of[pk]]),
            feedback=verdicts.get(pk),
            attachments=tuple(files.get(pk, ())),
        )
        for pk in ids
    ]


def message_view(*, message: Message) -> MessageView:
    """One message with its versions (for rendering it alone, e.g. in a frame)."""
    versions = list(
        Message.objects.filter(conversation_id=message.conversation_id, parent_id=message.parent_id)
        .order_by("id")
        .values_list("id", flat=True)
    )
    feedback = AnswerFeedback.objects.filter(message_id=message.pk).first()
    return MessageView(
        message,
        Versions.of(message.pk, versions),
        feedback=feedback,
        attachments=attachment_selectors.message_attachments(message=message),
    )


def _path_ids(rows: Sequence[tuple[int, int | None]], *, leaf_id: int | None) -> list[int]:
    """Ids from the first message to the leaf, then on through the newest children (a
    leaf that has since been answered, or none remembered: the newest message's path)."""
    if not rows:
        return []
    parent_of = dict(rows)
    newest_child: dict[int | None, int] = {}
    for pk, parent_id in rows:  # rows are in id order: the last one seen is the newest
        newest_child[parent_id] = pk
    node: int | None = leaf_id if leaf_id in parent_of else rows[-1][0]
    path: list[int] = []
    while node is not None:
        path.append(node)
        node = parent_of[node]
    path.reverse()
    tail = path[-1]
    while tail in newest_child:
        tail = newest_child[tail]
        path.append(tail)
    return path


def message_path_end(*, conversation: Conversation, leaf_id: Any = _UNREAD) -> int | None:
    """The id of the last message the reader sees (what a new message follows).
    `leaf_id`: the conversation's remembered leaf, when the caller has just read it."""
    rows = list(conversation.messages.order_by("id").values_list("id", "parent_id"))
    ids = _path_ids(rows, leaf_id=_leaf_id(conversation) if leaf_id is _UNREAD else leaf_id)
    return ids[-1] if ids else None


def _leaf_id(conversation: Conversation) -> int | None:
    # From the database, not the object: another tab may have switched versions since
    # this object (a socket's, say) was loaded.
    return Conversation.objects.filter(pk=conversation.pk).values_list("leaf_id", flat=True).first()


def message_version_leaf(*, conversation: Conversation, message_id: Any) -> int | None:
    """Where switching to this version leads: the newest message under it (its own last
    state), or None when the id is not a message of this conversation."""
    target = pk_from(message_id)
    if target is None:
        return None
    rows = list(conversation.messages.order_by("id").values_list("id", "parent_id"))
    parent_of = dict(rows)
    if target not in parent_of:
        return None
    below = {target}
    newest = target
    for pk, parent_id in rows:  # a child always has a larger id than its parent
        if parent_id in below:
            below.add(pk)
            newest = pk
    return newest


def message_get_streaming(*, conversation: Conversation) -> Message | None:
    return conversation.messages.filter(status=Message.Status.STREAMING).first()


def message_get(*, conversation: Conversation, message_id: Any) -> Message | None:
    pk = pk_from(message_id)
    if pk is None:
        return None
    return conversation.messages.filter(pk=pk).first()


def message_history_for_upstream(*, answer_id: int) -> list[dict[str, Any]]:
    """What the model is sent for an answer: the conversation's system prompt, then the
    path of versions that leads to the answer (never other versions), empty turns left out.
    A user message with files is sent with them (attachment_selectors.with_files).
    """
    answer = Message.objects.select_related("conversation").get(pk=answer_id)
    rows = list(
        Message.objects.filter(conversation_id=answer.conversation_id)
        .order_by("id")
        .values_list("id", "parent_id", "role", "content", "hidden")
    )
    by_id = {
        pk: (parent_id, role, content, hidden) for pk, parent_id, role, content, hidden in rows
    }
    path: list[int] = []
    node = answer.parent_id
    while node is not None:
        path.append(node)
        node = by_id[node][0]
    path.reverse()
    contents: dict[int, Any] = {pk: by_id[pk][2] for pk in path}
    contents.update(
        attachment_selectors.with_files(
            contents=contents, model=answer.model or answer.conversation.model
        )
    )
    chain = [
        {"role": by_id[pk][1], "content": contents[pk]}
        for pk in path
        if contents[pk] and not by_id[pk][3]  # hidden by moderation: never sent again
    ]
    prompt = answer.conversation.system_prompt.strip()
    return ([{"role": "system", "content": prompt}] if prompt else []) + chain


def user_settings_for(*, user: Account) -> UserSettings:
    """The user's preferences (defaults, unsaved, for a user who never set any)."""
    found = UserSettings.objects.filter(user=user).first()
    return found if found is not None else UserSettings(user=user)


def usage_for_conversation(*, conversation: Conversation) -> dict[str, int]:
    """Tokens of every answer of the conversation, all versions (all were paid for)."""
    totals = conversation.messages.filter(role=Message.Role.ASSISTANT).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    return {"prompt": totals["prompt"] or 0, "completion": totals["completion"] or 0}


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


def message_all(*, conversation: Conversation) -> list[Message]:
    """Every message of the conversation, all versions, parents before children."""
    return list(conversation.messages.order_by("id"))


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


def answers_streaming_count() -> int:
    """Answers being written right now, site-wide (the operator's overview)."""
    return Message.objects.filter(status=Message.Status.STREAMING).count()


def conversations_with_text_staff_wide(*, words: list[str], limit: int) -> list[Conversation]:
    """The one read not scoped to an owner: staff searching message text in admin (each
    conversation it reveals is recorded in the access log, with the reason given)."""
    ids = search.conversation_ids_staff_wide(words=words, limit=limit)
    found = Conversation.objects.select_related("owner").in_bulk(ids)
    return [found[i] for i in ids if i in found]


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
