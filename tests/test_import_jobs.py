"""An import is written in short transactions and its owner never sees half of it: hidden
everywhere until complete, then shown at once; a failure deletes what was written and
says why; what a crashed process left is found by its stale heartbeat and deleted; a
large import is written after the response while the page shows its progress."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench import import_files
from conversations import message_selectors, selectors, services, usage_selectors
from conversations.models import Conversation, ImportJob, Message
from conversations.portability import exports, parsing, reading, writing
from tests.conftest import make_user
from tests.test_portability import _document, _rich_conversation

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _export(*conversations: Conversation) -> bytes:
    return exports.to_json([_document(c) for c in conversations])


def _what_the_owner_sees(user: Any) -> dict[str, Any]:
    """Every owner-facing read: lists, sidebar pages, search, export, usage."""
    page, _ = selectors.conversation_page(user=user)
    return {
        "list": [c.pk for c in selectors.conversation_list(user=user)],
        "archived": [c.pk for c in selectors.conversation_list(user=user, archived=True)],
        "sidebar": [c.pk for c in page],
        "search": [r.title for r in selectors.conversation_search(user=user, query="tides")],
        "export": selectors.conversation_ids(user=user),
        "usage": usage_selectors.usage_this_month(user=user),
    }


@contextmanager
def _after_each_transaction(check: Any) -> Iterator[list[int]]:
    """Run `check` after every transaction the import writer commits."""
    original = services._WritePacer.transaction
    calls: list[int] = []

    @contextmanager
    def transaction(self: Any) -> Iterator[None]:
        with original(self):
            yield
        calls.append(1)
        check(len(calls))

    services._WritePacer.transaction = transaction  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        services._WritePacer.transaction = original  # type: ignore[method-assign]


def _rows_class() -> Any:
    """The writer of rows this database uses (plain SQL on SQLite, the ORM elsewhere)."""
    return writing._SqliteRows if connection.vendor == "sqlite" else writing._OrmRows


def test_an_import_stays_hidden_from_its_owner_until_complete_then_shows_at_once(
    settings: Any,
) -> None:
    settings.CHATSITE_IMPORT_BATCH_ROWS = 3  # many short transactions for a small file
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    data = _export(tides, tides, tides)
    bob = make_user("bob")
    nothing = _what_the_owner_sees(bob)
    hidden_public_ids: set[str] = set()

    def check(transactions: int) -> None:
        job = ImportJob.objects.get(owner=bob)
        if job.status == ImportJob.Status.COMPLETE:
            return
        written = Conversation.objects.filter(owner=bob)
        hidden_public_ids.update(str(c.public_id) for c in written)
        assert _what_the_owner_sees(bob) == nothing, transactions
        for public_id in hidden_public_ids:
            assert selectors.conversation_get(user=bob, public_id=public_id) is None
        assert job.messages_done <= job.messages_total

    with _after_each_transaction(check) as calls:
        job = writing.conversation_import(owner=bob, upload=io.BytesIO(data), name="x.json")
    assert len(calls) > 5  # written in many transactions, checked after each
    assert hidden_public_ids  # rows existed, hidden, while the import ran
    assert job.status == ImportJob.Status.COMPLETE
    assert (job.conversations_done, job.messages_done) == (3, 3 * tides.messages.count())
    seen = _what_the_owner_sees(bob)
    assert len(seen["list"]) == 3
    assert len(seen["export"]) == 3
    assert seen["search"] == ["Tides"] * 3
    for public_id in hidden_public_ids:
        assert selectors.conversation_get(user=bob, public_id=public_id) is not None
    # Split over transactions, the conversations are still exactly the original.
    for copy in Conversation.objects.filter(owner=bob):
        assert _document(copy) == _document(tides)


def test_the_orm_writer_used_beyond_sqlite_writes_the_same_rows(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL gets the ORM writer (bulk_create, then bulk_update for parents within a
    batch and the file's dates); forced here, on SQLite, it must write the same rows."""
    monkeypatch.setattr(writing, "_SqliteRows", writing._OrmRows)
    settings.CHATSITE_IMPORT_BATCH_ROWS = 4
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    bob = make_user("bob")
    job = writing.conversation_import(owner=bob, upload=io.BytesIO(_export(tides, tides)))
    assert job.status == ImportJob.Status.COMPLETE
    copies = list(Conversation.objects.filter(owner=bob))
    assert len(copies) == 2
    for copy in copies:
        assert _document(copy) == _document(tides)
        assert not copy.importing


def test_a_conversation_is_written_a_thousand_rows_at_a_time_in_a_few_queries(
    settings: Any,
) -> None:
    settings.CHATSITE_IMPORT_BATCH_ROWS = 1000
    bob = make_user("bob")
    data = import_files.chatsite_export(1, 2_500, words=3)
    transactions = 0

    def count(_: int) -> None:
        nonlocal transactions
        transactions += 1

    with _after_each_transaction(count), CaptureQueriesContext(connection) as queries:
        job = writing.conversation_import(owner=bob, upload=io.BytesIO(data))
    assert job.status == ImportJob.Status.COMPLETE
    assert transactions == 4  # 2,501 rows in three batches, then completion
    assert len(queries) < 60  # a few statements per thousand rows, not one per row
    [conversation] = Conversation.objects.filter(owner=bob)
    assert conversation.messages.count() == 2_500
    # The remembered version (the file's current_message, the last one) survived.
    assert conversation.leaf_id == conversation.messages.order_by("-id").first().pk  # type: ignore[union-attr]
    path = message_selectors.message_list(conversation=conversation)
    # Every fifth answer is a regenerate: the answer and question it replaced are off the path.
    assert len(path) == 2_500 - 2 * (2_500 // 10)


def test_a_failure_half_way_deletes_what_was_written_logs_it_and_says_why(
    settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHATSITE_IMPORT_BATCH_ROWS = 3
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    bob = make_user("bob")
    services.conversation_create(owner=bob, model="m", title="Bob's own")
    rows = _rows_class()
    original = rows.write
    writes = 0

    def failing(self: Any, prepared: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 4:
            raise RuntimeError("disk full")
        original(self, prepared)

    monkeypatch.setattr(rows, "write", failing)
    with caplog.at_level(logging.ERROR, logger="conversations.imports"):
        job = writing.conversation_import(owner=bob, upload=io.BytesIO(_export(tides, tides)))
    assert job.status == ImportJob.Status.FAILED
    assert job.error == writing.IMPORT_FAILED
    assert job.finished_at is not None
    # Three transactions had been committed; all of it is gone, Bob's own is not.
    assert list(Conversation.objects.filter(owner=bob).values_list("title", flat=True)) == [
        "Bob's own"
    ]
    assert not Message.objects.filter(conversation__owner=bob).exists()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None
    assert "disk full" in caplog.text


def _half_written(owner: Any, data: bytes, *, beat_age: float) -> ImportJob:
    """What a process that died mid-import leaves: a running job with hidden rows."""
    totals = parsing.import_check(io.BytesIO(data))
    job = writing.import_job_create(owner=owner, totals=totals)
    writer = writing._ImportWriter(job=job)
    for draft in parsing.import_drafts(io.BytesIO(data)):
        writer.add(draft)
    writer.flush()  # written, never completed
    ImportJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=beat_age)
    )
    return job


def test_a_crashed_import_is_cleaned_up_by_purge_conversations(settings: Any) -> None:
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    bob = make_user("bob")
    job = _half_written(bob, _export(tides), beat_age=600)
    assert Conversation.objects.filter(owner=bob, importing=True).exists()
    assert _what_the_owner_sees(bob)["list"] == []
    out = StringIO()
    call_command("purge_conversations", stdout=out)
    assert "1 abandoned import(s) cleaned up." in out.getvalue()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert job.error == writing.IMPORT_STOPPED
    assert not Conversation.objects.filter(owner=bob).exists()
    assert not Message.objects.filter(conversation__owner=bob).exists()
    assert Conversation.objects.filter(owner=alice).count() == 1  # nobody else's


def test_a_live_import_is_left_alone_and_its_owner_waits_for_it() -> None:
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    bob = make_user("bob")
    job = _half_written(bob, _export(tides), beat_age=5)  # beating recently: alive
    assert writing.import_job_cleanup() == 0
    assert Conversation.objects.filter(owner=bob, importing=True).exists()
    response = _client(bob).post(
        "/settings/import/", {"file": SimpleUploadedFile("again.json", _export(tides))}
    )
    assert response.status_code == 409
    assert writing.IMPORT_BUSY in response.content.decode()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.RUNNING


def test_a_new_import_first_clears_what_a_crashed_one_of_the_same_owner_left() -> None:
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    bob = make_user("bob")
    crashed = _half_written(bob, _export(tides, tides), beat_age=600)
    response = _client(bob).post(
        "/settings/import/", {"file": SimpleUploadedFile("again.json", _export(tides))}
    )
    assert response.status_code == 200
    assert "Imported 1 conversation." in response.content.decode()
    crashed.refresh_from_db()
    assert crashed.status == ImportJob.Status.FAILED
    assert Conversation.objects.filter(owner=bob).count() == 1
    assert not Conversation.objects.filter(importing=True).exists()


def test_a_job_failed_by_a_sweep_stops_writing_and_deletes_its_rows(settings: Any) -> None:
    settings.CHATSITE_IMPORT_BATCH_ROWS = 3
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    bob = make_user("bob")

    def swept(transactions: int) -> None:
        if transactions == 2:  # another process took the job for dead meanwhile
            ImportJob.objects.filter(owner=bob).update(status=ImportJob.Status.FAILED)

    with _after_each_transaction(swept):
        job = writing.conversation_import(owner=bob, upload=io.BytesIO(_export(tides, tides)))
    assert job.status == ImportJob.Status.FAILED
    assert not Conversation.objects.filter(owner=bob).exists()


def test_a_zip_of_the_site_s_own_export_imports_through_the_same_parser() -> None:
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations/a.json", _export(tides))
        archive.writestr("conversations/a.md", b"# not imported")
        archive.writestr("conversations/b.json", b"\xef\xbb\xbf" + _export(tides, tides))
    bob = make_user("bob")
    job = writing.conversation_import(owner=bob, upload=io.BytesIO(buffer.getvalue()))
    assert job.status == ImportJob.Status.COMPLETE
    assert Conversation.objects.filter(owner=bob).count() == 3
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("good.json", _export(tides))
        archive.writestr("bad.json", b'{"format": "chatsite", "version": 1, "conversations": 5}')
    refusal = "bad.json in that archive: conversations must be a list, not the number 5."
    with pytest.raises(reading.ImportRefused, match=refusal):
        writing.conversation_import(owner=bob, upload=io.BytesIO(bad.getvalue()))
    assert Conversation.objects.filter(owner=bob).count() == 3


def test_the_settings_page_shows_a_running_import_polling_and_then_its_result() -> None:
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    bob = make_user("bob")
    client = _client(bob)
    job = _half_written(bob, _export(tides), beat_age=1)
    ImportJob.objects.filter(pk=job.pk).update(messages_done=2, messages_total=5)
    page = client.get("/settings/").content.decode()
    status_url = f"/settings/import/{job.public_id}/"
    assert f'hx-get="{status_url}"' in page
    assert 'hx-trigger="every 1s"' in page
    assert "2 of 5 messages" in page
    fragment = client.get(status_url)
    assert fragment.status_code == 200
    assert 'hx-trigger="every 1s"' in fragment.content.decode()  # the same fragment
    assert "<html" not in fragment.content.decode()
    # Someone else's import is no one else's business.
    assert _client(alice).get(status_url).status_code == 404
    # The writer died: the page says so, and stops polling.
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    stalled = client.get(status_url).content.decode()
    assert "stopped before it finished" in stalled
    assert "hx-trigger" not in stalled


@pytest.mark.django_db(transaction=True)  # the writer thread needs committed rows
def test_a_large_upload_is_written_in_the_background_and_the_page_follows_it(
    settings: Any,
) -> None:
    settings.CHATSITE_IMPORT_BACKGROUND_ROWS = 100
    bob = make_user("bob")
    client = _client(bob)
    data = import_files.chatsite_export(3, 400, words=3)
    response = client.post("/settings/import/", {"file": SimpleUploadedFile("big.json", data)})
    assert response.status_code == 202
    page = response.content.decode()
    assert "Importing big.json…" in page
    assert 'hx-trigger="every 1s"' in page
    job = ImportJob.objects.get(owner=bob)
    assert writing.import_job_wait(job_id=job.pk, timeout=120)
    result = client.get(f"/settings/import/{job.public_id}/").content.decode()
    assert "Imported 3 conversations." in result
    assert "hx-trigger" not in result  # done: no more polling
    assert result.count('<a href="/conversations/') == 3
    assert len(selectors.conversation_list(user=bob)) == 3
    assert Message.objects.filter(conversation__owner=bob).count() == 1_200
    # The settings page shows the recent result too.
    assert "Imported 3 conversations." in client.get("/settings/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_background_import_that_fails_is_logged_and_leaves_nothing(
    settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHATSITE_IMPORT_BACKGROUND_ROWS = 10
    settings.CHATSITE_IMPORT_BATCH_ROWS = 50
    rows = _rows_class()
    original = rows.write
    writes = 0

    def failing(self: Any, prepared: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise RuntimeError("the disk is full")
        original(self, prepared)

    monkeypatch.setattr(rows, "write", failing)
    bob = make_user("bob")
    client = _client(bob)
    data = import_files.chatsite_export(2, 100, words=3)
    with caplog.at_level(logging.ERROR, logger="conversations.imports"):
        response = client.post("/settings/import/", {"file": SimpleUploadedFile("big.json", data)})
        assert response.status_code == 202
        job = ImportJob.objects.get(owner=bob)
        assert writing.import_job_wait(job_id=job.pk, timeout=120)
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    result = client.get(f"/settings/import/{job.public_id}/").content.decode()
    assert writing.IMPORT_FAILED in result
    assert "Nothing was imported." in result
    assert not Conversation.objects.filter(owner=bob).exists()


def test_json_with_keys_in_any_order_and_a_byte_order_mark_imports() -> None:
    alice = make_user("alice")
    tides = _rich_conversation(alice)
    document = json.loads(_export(tides))
    reordered = {key: document[key] for key in reversed(list(document))}
    data = b"\xef\xbb\xbf" + json.dumps(reordered).encode()
    bob = make_user("bob")
    response = _client(bob).post("/settings/import/", {"file": SimpleUploadedFile("t.json", data)})
    assert response.status_code == 200
    [copy] = Conversation.objects.filter(owner=bob)
    assert _document(copy) == _document(tides)
