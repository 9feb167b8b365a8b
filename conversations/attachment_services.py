"""Writes of attachments: a checked file stored as the user's pending attachment, linked to
the message it is sent with (in that message's transaction), carried over to an edited
version, removed, and forgotten with its rows.

A stored file is deleted once the transaction that deleted the last row naming it
commits (`attachment_file_forget`, connected to every deletion of a row in apps.py, so
that cascades from a conversation, an account or retention take the files along).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from accounts import quotas
from chatsite.errors import ActionRefused
from chatsite.inputs import uuid_from
from chatsite.types import Account

from . import attachment_selectors, attachments
from .attachments import Inspected
from .models import Attachment, Message, attachment_storage

GONE = (
    "An attached file is no longer there (sent already, or removed). Remove its chip and "
    "attach the file again."
)


class AttachmentRefused(ActionRefused):
    """A limit on attachments: the sentence says which."""


def attachment_room_check(*, owner_id: int, name: str, size: int) -> None:
    """Whether the owner may keep one more file of `size` bytes: AttachmentRefused past
    her quotas (the size of one file, the bytes of all her files) or the number of files
    waiting to be sent, with a sentence saying which."""
    limits = quotas.limits_for(user_id=owner_id)
    _file_size_check(name=name, size=size, limit=limits.attachment_file_bytes)
    waiting = settings.CHATSITE_ATTACHMENTS_PER_MESSAGE * 4
    if attachment_selectors.attachment_pending_count(owner_id=owner_id) >= waiting:
        raise AttachmentRefused(
            f"You have {waiting} files waiting to be sent. Send them, or remove some."
        )
    _file_count_check(owner_id=owner_id, adding=1, limit=limits.attachment_files)
    cap = limits.attachment_bytes
    used = attachment_selectors.attachment_bytes_used(owner_id=owner_id)
    if cap and used + size > cap:
        raise AttachmentRefused(
            f"Your files would take {filesizeformat(used + size)}; you may keep "
            f"{filesizeformat(cap)} of attached files. Delete conversations with files you "
            "no longer need, then try again."
        )


def _file_count_check(*, owner_id: int, adding: int, limit: int) -> None:
    """The owner's quota of files kept (0: no limit)."""
    if not limit:
        return
    kept = attachment_selectors.attachment_files_used(owner_id=owner_id)
    if kept + adding > limit:
        raise AttachmentRefused(
            f"You keep {kept} attached file{'s' if kept != 1 else ''}; you may keep {limit}. "
            "Delete conversations with files you no longer need, then try again."
        )


def _owner_lock(*, owner_id: int) -> None:
    """Lock the owner's user row until the transaction ends: on PostgreSQL two uploads
    (or imports) would otherwise both read the bytes used before either adds its file,
    and both pass the quota (SQLite lets one writer in at a time already)."""
    list(get_user_model().objects.select_for_update().filter(pk=owner_id).values_list("pk"))


def _file_size_check(*, name: str, size: int, limit: int) -> None:
    """One file against the owner's quota for a file (0: only the site's ceiling,
    `attachments.file_ceiling`, which the request's size limit enforces before this)."""
    if limit and size > limit:
        raise AttachmentRefused(
            f"{name} is {filesizeformat(size)}; a file may be {filesizeformat(limit)} at most."
        )


def attachment_file_store(*, owner_id: int, data: bytes) -> str:
    """Store a checked file's bytes under a fresh name; the name. No database: for a
    worker thread (a bucket's latency must not hold the database thread)."""
    return attachment_storage().save(f"{owner_id}/{uuid.uuid4().hex}", ContentFile(data))


def attachment_create(
    *, owner: Account, name: str, inspected: Inspected, stored: str
) -> Attachment:
    """The owner's pending attachment for a checked file (`attachments.inspect`) already
    stored as `stored`. The room is checked again (another upload may have taken it
    meanwhile); refused or failed, the stored file is deleted: nothing is kept."""
    try:
        with transaction.atomic():
            _owner_lock(owner_id=owner.pk)
            attachment_room_check(owner_id=owner.pk, name=name, size=len(inspected.data))
            return Attachment.objects.create(
                owner=owner,
                name=name,
                kind=inspected.kind,
                content_type=inspected.content_type,
                size=len(inspected.data),
                file=stored,
                text=inspected.text,
                pages=inspected.pages,
                width=inspected.width,
                height=inspected.height,
            )
    except BaseException:
        attachment_storage().delete(stored)
        raise


def attachment_remove(*, owner: Account, public_id: Any) -> bool:
    """Remove a pending attachment (its chip's remove button); False when there is none of hers."""
    row = attachment_selectors.attachment_get_pending(user=owner, public_id=public_id)
    if row is None:
        return False
    row.delete()
    return True


def attachment_ids_clean(ids: Any) -> list[Any]:
    """The ids a send carries (a form's one or several values, or a frame's list)."""
    if ids in (None, ""):
        return []
    values = ids if isinstance(ids, list) else [ids]
    if len(values) > settings.CHATSITE_ATTACHMENTS_PER_MESSAGE:
        limit = settings.CHATSITE_ATTACHMENTS_PER_MESSAGE
        raise AttachmentRefused(f"A message may carry {limit} files at most.")
    cleaned = []
    for value in values:
        uid = uuid_from(value)
        if uid is None:
            raise ValidationError(GONE)
        if uid not in cleaned:
            cleaned.append(uid)
    return cleaned


def attachments_link(*, message: Message, ids: Any, model: str) -> list[Attachment]:
    """Give the sender's pending attachments to her new message. Run inside the message's
    transaction: a refusal (not hers, sent already, an image for a model that cannot read
    images) undoes the message too, and nothing goes upstream."""
    uids = attachment_ids_clean(ids)
    if not uids:
        return []
    owner_id = message.conversation.owner_id
    rows = list(
        Attachment.objects.filter(owner_id=owner_id, public_id__in=uids, message__isnull=True)
    )
    if len(rows) != len(uids):
        raise ValidationError(GONE)
    if any(r.kind == Attachment.Kind.IMAGE for r in rows) and not attachments.vision_accepts(model):
        raise AttachmentRefused(attachments.vision_refusal(model))
    # Still pending in the same statement: of two sends racing with one file, one wins.
    linked = Attachment.objects.filter(pk__in=[r.pk for r in rows], message__isnull=True).update(
        message=message
    )
    if linked != len(rows):
        raise ValidationError(GONE)
    return rows


def attachments_carry(*, source_id: int, message: Message) -> None:
    """An edited message keeps the files of the version it replaces (rows of its own,
    naming the same stored files)."""
    for row in Attachment.objects.filter(message_id=source_id).order_by("id"):
        row.pk = None
        row.id = None
        row._state.adding = True
        row.public_id = Attachment._meta.get_field("public_id").get_default()
        row.message = message
        row.save()


def attachments_pending_purge(*, hours: int | None = None) -> int:
    """Delete attachments uploaded more than `hours` ago and never sent."""
    hours = settings.CHATSITE_ATTACHMENT_PENDING_HOURS if hours is None else hours
    cutoff = timezone.now() - timedelta(hours=hours)
    stale = Attachment.objects.filter(message__isnull=True, created_at__lt=cutoff)
    count, _ = stale.delete()
    return count


def attachments_pending_delete(*, owner_id: int) -> int:
    """Delete all of a user's files waiting to be sent (their data is being deleted)."""
    count, _ = Attachment.objects.filter(owner_id=owner_id, message__isnull=True).delete()
    return count


def attachment_file_forget(*, name: str) -> None:
    """Once the deleting transaction commits, delete the stored file, unless another row
    (a carried-over copy) still names it."""

    def forget() -> None:
        if name and not Attachment.objects.filter(file=name).exists():
            attachment_storage().delete(name)

    transaction.on_commit(forget)


@contextmanager
def files_kept_if_committed() -> Iterator[list[str]]:
    """Names of files stored inside a transaction: deleted again when it does not commit
    (a row that never was names none of them)."""
    stored: list[str] = []
    try:
        yield stored
    except BaseException:
        for name in stored:
            attachment_storage().delete(name)
        raise


def attachments_import(
    *, owner_id: int, files: list[tuple[int, str, Inspected]], stored: list[str]
) -> None:
    """An import's files (checked while the file was read) given to their new messages,
    under the owner's quotas (one file's bytes, all her files' bytes); each stored name
    added to `stored`."""
    if not files:
        return
    _owner_lock(owner_id=owner_id)
    limits = quotas.limits_for(user_id=owner_id)
    for _, name, inspected in files:
        _file_size_check(name=name, size=len(inspected.data), limit=limits.attachment_file_bytes)
    _file_count_check(owner_id=owner_id, adding=len(files), limit=limits.attachment_files)
    cap = limits.attachment_bytes
    used = attachment_selectors.attachment_bytes_used(owner_id=owner_id)
    adding = sum(len(inspected.data) for _, _, inspected in files)
    if cap and used + adding > cap:
        raise AttachmentRefused(
            f"The files attached in this import would take {filesizeformat(used + adding)}; "
            f"you may keep {filesizeformat(cap)} of attached files."
        )
    for message_id, name, inspected in files:
        row = Attachment(
            owner_id=owner_id,
            message_id=message_id,
            name=name,
            kind=inspected.kind,
            content_type=inspected.content_type,
            size=len(inspected.data),
            text=inspected.text,
            width=inspected.width,
            height=inspected.height,
        )
        row.file.save("import", ContentFile(inspected.data), save=False)
        stored.append(row.file.name)
        row.save()
