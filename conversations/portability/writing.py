"""Bringing data in, written: a checked file's conversations become rows for their owner.
Services for imports (<entity>_<action>(*, ...)): conversation_import, import_job_*.

A file is checked whole first (parsing.import_check: nothing is written for a file that
fails), then written in short transactions, a few hundred to a thousand rows each, so
that other writers (on SQLite, every other writer of the site) wait a fraction of a
second, not the length of the import. Its conversations stay hidden from their owner
(Conversation.importing; every selector leaves them out) until the last one is written,
then appear together in one statement. A failure deletes what was written; a job whose
process died is found by its stale heartbeat and its rows deleted too.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, connection, connections, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from chatsite.types import Account

from .. import attachment_services
from ..models import Conversation, ImportJob, Message
from ..services import _WritePacer, conversation_delete_batched
from . import parsing, reading

import_log = logging.getLogger("conversations.imports")

IMPORT_STOPPED = "The import stopped before it finished (the server restarted or stalled)."
IMPORT_FAILED = "Something went wrong while writing the import."
IMPORT_BUSY = "Another import of yours is still being written. Wait for it to finish."


class ImportStopped(Exception):
    """The job is no longer running: a sweep took it for abandoned and failed it."""


def import_in_background(*, totals: parsing.ImportTotals) -> bool:
    """Whether an import is large enough to be written after the response (the page then
    polls its progress) rather than before it."""
    rows = totals.conversations + totals.messages
    return rows > settings.CHATSITE_IMPORT_BACKGROUND_ROWS


def conversation_import(*, owner: Account, upload: IO[bytes], name: str = "") -> ImportJob:
    """Import a whole file for its owner, now: checked first (ImportRefused, nothing
    written), then written as import_job_run does. Ids are always new: a file can never
    touch an existing conversation."""
    totals = parsing.import_check(upload)
    job = import_job_create(owner=owner, totals=totals, name=name)
    return import_job_run(job=job, upload=upload)


def import_job_create(*, owner: Account, totals: parsing.ImportTotals, name: str = "") -> ImportJob:
    """A job for a checked file. One import at a time per owner (ImportRefused while
    another runs); what an abandoned import of theirs left is deleted first."""
    import_job_cleanup(owner_id=owner.pk)
    try:
        with transaction.atomic():
            return ImportJob.objects.create(
                owner=owner,
                name=name[:200],
                conversations_total=totals.conversations,
                messages_total=totals.messages,
            )
    except IntegrityError as exc:  # importjob_one_running_per_owner
        raise reading.ImportRefused(IMPORT_BUSY) from exc


def import_job_run(*, job: ImportJob, upload: IO[bytes]) -> ImportJob:
    """Write a checked file's conversations for the job, in short transactions, hidden
    from the owner until all are written. Whatever fails, what was written is deleted and
    the job says why (the traceback goes to the log). Returns the job, complete or failed."""
    try:
        writer = _ImportWriter(job=job)
        for draft in parsing.import_drafts(upload):
            writer.add(draft)
        writer.complete()
    except ImportStopped:
        import_log.warning("Import %s was stopped by a sweep; deleting its rows", job.public_id)
        _import_job_fail(job=job, error=IMPORT_STOPPED)
    except reading.ImportRefused as exc:  # the file changed since it was checked
        import_log.exception("Import %s: a checked file was refused", job.public_id)
        _import_job_fail(job=job, error=str(exc))
    except attachment_services.AttachmentRefused as exc:  # past the owner's file bytes
        _import_job_fail(job=job, error=exc.user_message)
    except Exception:
        # Deliberately broad: a database error or a bug must not leave the owner half an
        # import. The rows go, the job records a sentence, the log the traceback.
        import_log.exception("Import %s failed; deleting what it wrote", job.public_id)
        _import_job_fail(job=job, error=IMPORT_FAILED)
    job.refresh_from_db()
    return job


_IMPORT_THREADS: dict[int, threading.Thread] = {}
_IMPORT_THREADS_LOCK = threading.Lock()


def import_job_launch(*, job: ImportJob, upload: IO[bytes]) -> None:
    """Write the job in a thread of its own, after the response (the page polls its
    progress). The thread closes the upload and its own database connections when done;
    if the process dies meanwhile, the job's heartbeat goes stale and a sweep cleans up."""

    def run() -> None:
        try:
            import_job_run(job=job, upload=upload)
        except Exception:  # even the clean-up failed: the sweep will find the job stale
            import_log.exception("Import %s: the writer thread failed", job.public_id)
        finally:
            upload.close()
            connections.close_all()  # this thread's connections only
            with _IMPORT_THREADS_LOCK:
                _IMPORT_THREADS.pop(job.pk, None)

    thread = threading.Thread(target=run, name=f"chatsite-import-{job.pk}", daemon=True)
    with _IMPORT_THREADS_LOCK:
        _IMPORT_THREADS[job.pk] = thread
    thread.start()


def import_job_wait(*, job_id: int, timeout: float | None = None) -> bool:
    """Wait for this process's writer of the job (tests, shutdown); True once none runs."""
    with _IMPORT_THREADS_LOCK:
        thread = _IMPORT_THREADS.get(job_id)
    if thread is None:
        return True
    thread.join(timeout)
    return not thread.is_alive()


def import_job_cleanup(*, owner_id: int | None = None) -> int:
    """What abandoned imports left: a job still running whose writer stopped beating
    (CHATSITE_IMPORT_STALE_AFTER seconds) is failed, then the hidden rows of every failed
    or orphaned import are deleted, in short transactions. Run by each new import (for its
    owner) and by `manage.py purge_conversations` (for everyone). Returns how many jobs
    it found abandoned."""
    cutoff = timezone.now() - timedelta(seconds=ImportJob.stale_after())
    stale = ImportJob.objects.filter(status=ImportJob.Status.RUNNING, heartbeat_at__lt=cutoff)
    leftovers = Conversation.objects.filter(importing=True).filter(
        Q(import_job__isnull=True) | Q(import_job__status=ImportJob.Status.FAILED)
    )
    if owner_id is not None:
        stale = stale.filter(owner_id=owner_id)
        leftovers = leftovers.filter(owner_id=owner_id)
    abandoned = stale.update(
        status=ImportJob.Status.FAILED, error=IMPORT_STOPPED, finished_at=timezone.now()
    )
    conversation_delete_batched(conversations=leftovers)
    return abandoned


def _import_job_fail(*, job: ImportJob, error: str) -> None:
    # Failed first (a sweep elsewhere then deletes these rows too), then the rows.
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(
        status=ImportJob.Status.FAILED, error=error, finished_at=timezone.now()
    )
    conversation_delete_batched(
        conversations=Conversation.objects.filter(import_job=job, importing=True)
    )


@dataclass
class _Written:
    """A draft being written, possibly over several transactions."""

    draft: reading.Draft
    pk: int | None = None
    ids: dict[str, int] = field(default_factory=dict)  # the file's ids -> new ids


_Piece = tuple[_Written, int, int]  # a draft's messages [start, end) for one transaction
# A piece with its rows prepared before the transaction (its new conversation's, if any).
_Prepared = list[tuple[_Piece, list[Any] | None, list[list[Any]]]]


class _ImportWriter:
    """Drafts into rows, at most CHATSITE_IMPORT_BATCH_ROWS rows per transaction (small
    conversations share one; a large one spans several), each transaction also advancing
    the job's progress and heartbeat."""

    def __init__(self, *, job: ImportJob) -> None:
        self.job = job
        self.batch = max(1, settings.CHATSITE_IMPORT_BATCH_ROWS)
        self.pacer = _WritePacer()
        self.rows: _OrmRows | _SqliteRows = (
            _SqliteRows(job=job) if connection.vendor == "sqlite" else _OrmRows(job=job)
        )
        self.pieces: list[_Piece] = []
        self.count = 0  # rows in self.pieces

    def add(self, draft: reading.Draft) -> None:
        written = _Written(draft)
        start, total, first = 0, len(draft.messages), True
        while True:
            if self.count >= self.batch:
                self.flush()
            room = self.batch - self.count - (1 if first else 0)  # the conversation is a row
            end = min(total, start + max(room, 0))
            self.pieces.append((written, start, end))
            self.count += end - start + (1 if first else 0)
            first = False
            if end >= total:
                return
            start = end

    def flush(self) -> None:
        if not self.pieces:
            return
        prepared = self.rows.prepare(self.pieces)  # outside the transaction: no lock held
        with attachment_services.files_kept_if_committed() as stored, self.pacer.transaction():
            self.rows.write(prepared)
            attachment_services.attachments_import(
                owner_id=self.job.owner_id,
                files=[
                    (written.ids[item.key], name, inspected)
                    for written, start, end in self.pieces
                    for item in written.draft.messages[start:end]
                    for name, inspected in zip(item.attachment_names, item.attachments, strict=True)
                ],
                stored=stored,
            )
            messages = sum(end - start for _, start, end in self.pieces)
            finished = sum(1 for w, _, end in self.pieces if end == len(w.draft.messages))
            beat = ImportJob.objects.filter(pk=self.job.pk, status=ImportJob.Status.RUNNING).update(
                conversations_done=F("conversations_done") + finished,
                messages_done=F("messages_done") + messages,
                heartbeat_at=timezone.now(),
            )
            if not beat:
                raise ImportStopped  # rolls this batch back; the caller deletes the rest
        self.pieces = []
        self.count = 0

    def complete(self) -> None:
        self.flush()
        with self.pacer.transaction():
            now = timezone.now()
            done = ImportJob.objects.filter(pk=self.job.pk, status=ImportJob.Status.RUNNING).update(
                status=ImportJob.Status.COMPLETE, finished_at=now, heartbeat_at=now
            )
            if not done:
                raise ImportStopped
            # One short statement shows the whole import to its owner at once.
            Conversation.objects.filter(import_job=self.job, importing=True).update(importing=False)


def _conversation_values(draft: reading.Draft, now: datetime) -> dict[str, Any]:
    return {
        "title": draft.title,
        "title_source": draft.title_source if draft.title else "",
        "model": draft.model or settings.OPENAI_MODEL,
        "system_prompt": draft.system_prompt,
        "pinned": draft.pinned,
        "archived": draft.archived,
        "created_at": draft.created_at or now,
        "updated_at": draft.updated_at or draft.created_at or now,
    }


def _message_values(item: reading.DraftMessage, now: datetime) -> dict[str, Any]:
    return {
        "role": item.role,
        "content": item.content,
        "status": item.status,
        "finish_reason": item.finish_reason,
        "error": item.error,
        "model": item.model,
        "prompt_tokens": item.prompt_tokens,
        "completion_tokens": item.completion_tokens,
        "total_tokens": item.total_tokens,
        "created_at": item.created_at or now,
        "completed_at": item.completed_at,
    }


class _OrmRows:
    """Rows through the ORM, on any database: bulk_create, then one bulk_update for what
    the insert could not know (a parent in the same batch; auto_now_add overwrote the
    file's dates). Its Python work happens inside the transaction, which on PostgreSQL
    (row locks) keeps nobody waiting."""

    def __init__(self, *, job: ImportJob) -> None:
        self.job = job
        self.now = timezone.now()

    def prepare(self, pieces: list[_Piece]) -> _Prepared:
        return [(piece, None, []) for piece in pieces]

    def write(self, prepared: _Prepared) -> None:
        for (written, start, end), _, _ in prepared:
            if written.pk is None:
                dates = _conversation_values(written.draft, self.now)
                written.pk = Conversation.objects.create(
                    owner_id=self.job.owner_id, import_job=self.job, importing=True, **dates
                ).pk
                Conversation.objects.filter(pk=written.pk).update(
                    created_at=dates["created_at"], updated_at=dates["updated_at"]
                )
            self._messages(written, written.pk, start, end)
            if end == len(written.draft.messages):
                current = written.draft.current
                Conversation.objects.filter(pk=written.pk).update(
                    leaf_id=written.ids.get(current) if current else None
                )

    def _messages(self, written: _Written, pk: int, start: int, end: int) -> None:
        items = written.draft.messages[start:end]
        if not items:
            return
        ids = written.ids
        rows = [
            Message(
                conversation_id=pk,
                # A parent in an earlier batch has its id; one in this batch gets it below.
                parent_id=ids.get(item.parent) if item.parent is not None else None,
                **_message_values(item, self.now),
            )
            for item in items
        ]
        # Inserted in order (parents first), so a child's id is larger than its parent's.
        Message.objects.bulk_create(rows)
        for item, row in zip(items, rows, strict=True):
            ids[item.key] = row.pk
        for item, row in zip(items, rows, strict=True):
            row.parent_id = ids[item.parent] if item.parent is not None else None
            row.created_at = item.created_at or self.now
        Message.objects.bulk_update(rows, ["parent", "created_at"])


class _SqliteRows:
    """Rows as plain INSERTs, for SQLite, where a transaction holds the whole database's
    write lock and must be short. Everything is prepared before the transaction; inside
    it, only ids are given out (above the table's AUTOINCREMENT sequence: nobody else can
    take one while this transaction holds the lock) and executemany runs: a thousand rows
    take a few tens of milliseconds, a tenth of what the ORM's bulk methods need. Parents
    and dates are right on insert, so nothing is updated afterwards."""

    def __init__(self, *, job: ImportJob) -> None:
        self.job = job
        self.now = timezone.now()
        self.conversations = _Columns(Conversation)
        self.messages = _Columns(Message)

    def prepare(self, pieces: list[_Piece]) -> _Prepared:
        prepared = []
        for written, start, end in pieces:
            conversation = None
            if written.pk is None:
                conversation = self.conversations.row(
                    {
                        **_conversation_values(written.draft, self.now),
                        "public_id": uuid.uuid4(),
                        "owner_id": self.job.owner_id,
                        "import_job_id": self.job.pk,
                        "importing": True,
                    }
                )
            messages = [
                self.messages.row(_message_values(item, self.now))
                for item in written.draft.messages[start:end]
            ]
            prepared.append(((written, start, end), conversation, messages))
        return prepared

    def write(self, prepared: _Prepared) -> None:
        new_conversations = [row for _, row, _ in prepared if row is not None]
        conversation_id = self.conversations.first_free_id()
        message_id = self.messages.first_free_id()
        leaves = []
        id_at, conversation_at, parent_at = (
            self.messages.at("id"),
            self.messages.at("conversation_id"),
            self.messages.at("parent_id"),
        )
        message_rows = []
        for (written, start, end), conversation, rows in prepared:
            if conversation is not None:
                written.pk = conversation[self.conversations.at("id")] = conversation_id
                conversation_id += 1
            ids = written.ids
            for item, row in zip(written.draft.messages[start:end], rows, strict=True):
                row[id_at] = ids[item.key] = message_id
                row[conversation_at] = written.pk
                row[parent_at] = ids[item.parent] if item.parent is not None else None
                message_id += 1
                message_rows.append(row)
            if end == len(written.draft.messages) and written.draft.current:
                leaves.append((ids.get(written.draft.current), written.pk))
        with connection.cursor() as cursor:
            if new_conversations:
                cursor.executemany(self.conversations.insert, new_conversations)
            if message_rows:
                cursor.executemany(self.messages.insert, message_rows)
            if leaves:
                table = connection.ops.quote_name(Conversation._meta.db_table)
                cursor.executemany(f"UPDATE {table} SET leaf_id = %s WHERE id = %s", leaves)  # noqa: S608  # quoted names, values as parameters


class _Columns:
    """A model's columns for a plain INSERT: the values the import sets, every other
    column at its default (prepared once), so that a column added later with a default
    needs nothing here."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        fields = list(model._meta.concrete_fields)
        self.fields = {f.attname: f for f in fields}
        self.positions = {f.attname: n for n, f in enumerate(fields)}
        self.defaults = [
            None if f.primary_key else f.get_db_prep_save(f.get_default(), connection)
            for f in fields
        ]
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        columns = ", ".join(quote(f.column) for f in fields)
        marks = ", ".join(["%s"] * len(fields))
        self.insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608  # quoted names

    def at(self, attname: str) -> int:
        return self.positions[attname]

    def row(self, values: dict[str, Any]) -> list[Any]:
        row = list(self.defaults)
        for attname, value in values.items():
            if isinstance(value, datetime | uuid.UUID):
                value = self.fields[attname].get_db_prep_save(value, connection)
            row[self.positions[attname]] = value
        return row

    def first_free_id(self) -> int:
        """The first id never used. The table is AUTOINCREMENT: ids above its sequence
        were never given out, and the INSERTs move the sequence past the ones they use.
        Only inside the write transaction, which keeps every other writer out."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = %s", [self.model._meta.db_table]
            )
            found = cursor.fetchone()
        return (found[0] if found else 0) + 1
