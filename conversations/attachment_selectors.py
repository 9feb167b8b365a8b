"""Every read of attachments, scoped to the owner (or to messages the caller has already
scoped): the one place that answers "whose file is this?"."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from chatsite.inputs import uuid_from as as_uuid
from chatsite.types import Visitor, visitor_id

from . import attachments
from .attachments import Part
from .models import Attachment, Message, attachment_storage


def _owned(user: Visitor) -> QuerySet[Attachment]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Attachment.objects.none()
    # An import still being written stays hidden, like its conversation.
    return Attachment.objects.filter(owner_id=visitor_id(user)).exclude(
        message__conversation__importing=True
    )


def attachment_get(*, user: Visitor, public_id: object) -> Attachment | None:
    """The user's attachment with this id (pending or sent), or None: not hers, or none."""
    uid = as_uuid(public_id)
    return None if uid is None else _owned(user).filter(public_id=uid).first()


def attachment_of_message(*, message: Message, public_id: object) -> Attachment | None:
    """A file of a message the caller may already see (staff, under a grant)."""
    uid = as_uuid(public_id)
    return None if uid is None else message.attachments.filter(public_id=uid).first()


def attachment_get_pending(*, user: Visitor, public_id: object) -> Attachment | None:
    uid = as_uuid(public_id)
    if uid is None:
        return None
    return _owned(user).filter(public_id=uid, message__isnull=True).first()


def attachments_pending(*, user: Visitor) -> list[Attachment]:
    """The user's files uploaded and not yet sent: a page shows them in its composer, so a
    reload loses none of them."""
    return list(_owned(user).filter(message__isnull=True).defer("text").order_by("id"))


def attachment_bytes_used(*, owner_id: int) -> int:
    """Bytes of the files the user keeps (a file an edit carried over counts once)."""
    rows = Attachment.objects.filter(owner_id=owner_id).values_list("file", "size").distinct()
    return sum(size for _name, size in rows)


def attachment_files_used(*, owner_id: int) -> int:
    """How many files the user keeps (a file an edit carried over counts once)."""
    return Attachment.objects.filter(owner_id=owner_id).values("file").distinct().count()


def attachment_pending_count(*, owner_id: int) -> int:
    return Attachment.objects.filter(owner_id=owner_id, message__isnull=True).count()


def attachments_by_message(*, message_ids: Iterable[int]) -> dict[int, list[Attachment]]:
    """The chips of messages the caller has scoped already (a conversation's path)."""
    found: dict[int, list[Attachment]] = {}
    rows = Attachment.objects.filter(message_id__in=list(message_ids)).defer("text")
    for row in rows.order_by("id"):
        assert row.message_id is not None  # filtered on it
        found.setdefault(row.message_id, []).append(row)
    return found


def with_files(*, contents: dict[int, str], model: str) -> dict[int, Any]:
    """The content the model is sent for those of these messages (the caller's, with
    their text) that carry files: each file's text fenced before the words, images as
    `image_url` parts when `model` reads images (naming the stored file: `images_inline`
    reads them, outside the database thread)."""
    vision = attachments.vision_accepts(model)
    rows = list(
        Attachment.objects.filter(message_id__in=list(contents)).order_by("message_id", "id")
    )
    # Every image sent is base64 in every request: only the most recent ones go.
    images = [row.pk for row in rows if row.kind == attachments.IMAGE]
    keep = int(settings.CHATSITE_ATTACHMENT_IMAGES_PER_REQUEST)
    older = set(images[: max(0, len(images) - keep)])
    parts: dict[int, list[Part]] = {}
    for row in rows:
        assert row.message_id is not None
        parts.setdefault(row.message_id, []).append(
            Part(
                kind=row.kind,
                name=row.name,
                text=row.text,
                stored=row.file.name,
                older=row.pk in older,
            )
        )
    return {
        pk: attachments.upstream_content(text=contents[pk], parts=found, vision=vision)
        for pk, found in parts.items()
    }


def message_attachments(*, message: Message) -> tuple[Attachment, ...]:
    """A user message's chips."""
    if message.role != Message.Role.USER:
        return ()
    # With their text: a new message's files are screened with it (streaming/moderating).
    return tuple(Attachment.objects.filter(message_id=message.pk).order_by("id"))


def attachments_have_image(*, message_ids: Iterable[int]) -> bool:
    return Attachment.objects.filter(
        message_id__in=list(message_ids), kind=attachments.IMAGE
    ).exists()


def attachments_for_export(*, message_ids: list[int]) -> dict[int, list[tuple[Attachment, bytes]]]:
    """Messages' files for an export (messages the caller has scoped): an image with its
    bytes (read from storage), text and PDFs with their text."""
    found: dict[int, list[tuple[Attachment, bytes]]] = {}
    for row in Attachment.objects.filter(message_id__in=message_ids).order_by("id"):
        assert row.message_id is not None
        data = b""
        if row.kind == Attachment.Kind.IMAGE:
            with row.file.open("rb") as handle:
                data = handle.read()
        found.setdefault(row.message_id, []).append((row, data))
    return found


def images_inline(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history with each stored image read and put in its part as a `data:` URL.
    Blocking storage reads (a disk, a bucket): run in a worker thread, never in the
    database thread or on the event loop."""
    storage = attachment_storage()
    for message in history:
        content = message["content"]
        if not isinstance(content, list):
            continue
        for part in content:
            url = part.get("image_url", {}).get("url", "")
            if url.startswith(attachments.STORED):
                with storage.open(url.removeprefix(attachments.STORED), "rb") as handle:
                    part["image_url"]["url"] = attachments.image_url(handle.read())
    return history


def history_has_stored_images(history: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(m["content"], list)
        and any(
            p.get("image_url", {}).get("url", "").startswith(attachments.STORED)
            for p in m["content"]
        )
        for m in history
    )
