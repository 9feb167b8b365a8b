"""Reads of messages and their versions: the path of versions a reader sees, one message
with its place among its siblings (`MessageView`, what templates and frames render), where
switching a version leads, and what the model is sent for an answer.

These take a conversation or message the caller already holds through an owner-scoped
read (selectors.conversation_get, or a turn the owner started), so "whose is this?" is
still answered in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.db.models import Exists, OuterRef

from chatsite.inputs import pk_from

from . import attachment_selectors
from .models import AnswerFeedback, Attachment, Conversation, Message

_UNREAD: Any = object()  # "not given" where None is a meaningful value


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


def message_history_for_upstream(
    *, answer_id: int, answer: Message | None = None
) -> list[dict[str, Any]]:
    """What the model is sent for an answer: the conversation's system prompt, then the
    path of versions that leads to the answer (never other versions), empty turns left out.
    A user message with files is sent with them (attachment_selectors.with_files).
    `answer`: the answer with its conversation, when the caller has just written both.
    """
    if answer is None or answer.pk != answer_id:
        answer = Message.objects.select_related("conversation").get(pk=answer_id)
    rows = list(
        Message.objects.filter(conversation_id=answer.conversation_id)
        .annotate(files=Exists(Attachment.objects.filter(message_id=OuterRef("pk"))))
        .order_by("id")
        .values_list("id", "parent_id", "role", "content", "hidden", "files")
    )
    by_id = {
        pk: (parent_id, role, content, hidden) for pk, parent_id, role, content, hidden, _ in rows
    }
    with_files = {row[0] for row in rows if row[5]}
    path: list[int] = []
    node = answer.parent_id
    while node is not None:
        path.append(node)
        node = by_id[node][0]
    path.reverse()
    contents: dict[int, Any] = {pk: by_id[pk][2] for pk in path}
    if with_files.intersection(path):  # most conversations have none: no second query
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


def message_all(*, conversation: Conversation) -> list[Message]:
    """Every message of the conversation, all versions, parents before children."""
    return list(conversation.messages.order_by("id"))
