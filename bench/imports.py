"""Imports: what a large file costs, what it costs everyone else, and what hostile files
cost before they are refused.

Migrates a fresh database (the one DATABASE_URL names; by default a temporary SQLite
file), then:

* checks and writes a chatsite export of 5 conversations x 10,000 messages (about
  10 MB), reporting the time of each pass, the number of transactions and how long each
  held the write lock;
* meanwhile another user creates conversations in a thread of its own, as another
  request would: its latency during the import against the same write on the idle
  database (the ratio is what matters on a busy machine), and against the same import
  written in one transaction, as imports were before;
* times the refusal of files built to amplify (600,000 empty conversations, as JSON and
  as a 20 KB zip; 600,000 children references), with the bytes read and the memory
  held, against json.loads of the same bytes (what the parser paid before checking).

    .venv/bin/python -m bench.imports [--conversations 5] [--messages 10000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

if "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(
        tempfile.mkdtemp(prefix="chatsite-bench-"), "bench.sqlite3"
    )
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402

from accounts import services as account_services  # noqa: E402
from bench import import_files  # noqa: E402
from conversations import services  # noqa: E402
from conversations.models import Conversation, ImportJob  # noqa: E402
from conversations.portability import parsing, reading, writing  # noqa: E402


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _other_writer(owner: Any, running: Callable[[], bool]) -> list[float]:
    """Another user's write, again and again while `running()`, in a thread of its own."""
    waits: list[float] = []

    def loop() -> None:
        try:
            while running():
                began = time.perf_counter()
                services.conversation_create(owner=owner, model="m", title="meanwhile")
                waits.append(time.perf_counter() - began)
                time.sleep(0.02)
        finally:
            connections.close_all()

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    return waits


@contextmanager
def _lock_holds() -> Iterator[list[float]]:
    original = services._WritePacer.transaction
    holds: list[float] = []

    @contextmanager
    def timed(self: Any) -> Iterator[None]:
        with original(self):
            began = time.perf_counter()
            yield
        holds.append(time.perf_counter() - began)

    services._WritePacer.transaction = timed  # type: ignore[method-assign]
    try:
        yield holds
    finally:
        services._WritePacer.transaction = original  # type: ignore[method-assign]


def _import_meanwhile(
    owner: Any, other: Any, data: bytes, *, one_transaction: bool
) -> dict[str, Any]:
    upload = io.BytesIO(data)
    began = time.perf_counter()
    totals = parsing.import_check(upload)
    checked = time.perf_counter() - began
    job = writing.import_job_create(owner=owner, totals=totals)
    done = threading.Event()
    result: dict[str, Any] = {}

    def write() -> None:
        try:
            with _lock_holds() as holds:
                began = time.perf_counter()
                if one_transaction:  # as imports were written before
                    with transaction.atomic():
                        writing.import_job_run(job=job, upload=upload)
                else:
                    writing.import_job_run(job=job, upload=upload)
                result["written"] = time.perf_counter() - began
                result["holds"] = holds
        finally:
            done.set()
            connections.close_all()

    writer = threading.Thread(target=write)
    writer.start()
    waits = _other_writer(other, lambda: not done.is_set())
    writer.join()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.COMPLETE, job.error
    Conversation.objects.filter(owner=owner).delete()
    return {"checked": checked, "waits": waits, **result}


def _refusal(data: bytes) -> tuple[float, int, int, str]:
    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, size: int | None = -1) -> bytes:
            chunk = super().read(size)
            Counting.read_bytes += len(chunk)
            return chunk

    def refuse() -> str:
        try:
            parsing.import_check(Counting(data))
        except reading.ImportRefused as exc:
            return str(exc)
        return "(accepted!)"

    began = time.perf_counter()
    refuse()
    took = time.perf_counter() - began
    Counting.read_bytes = 0
    tracemalloc.start()
    message = refuse()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return took, Counting.read_bytes, peak, message


def _json_loads(data: bytes) -> tuple[float, int]:
    """What the import paid before: json.loads of the whole file (timed without
    tracemalloc, which slows it; its memory measured in a second run)."""
    began = time.perf_counter()
    json.loads(data)
    took = time.perf_counter() - began
    tracemalloc.start()
    json.loads(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return took, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=5)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    owner = account_services.user_create(username="importer", password="bench-password-1")
    other = account_services.user_create(username="other", password="bench-password-1")

    data = import_files.chatsite_export(args.conversations, args.messages, words=4)
    rows = args.conversations * args.messages
    print(
        f"A chatsite export: {args.conversations} x {args.messages:,} messages, "
        f"{len(data) / 1e6:.1f} MB\n"
    )

    idle = _other_writer(other, iter([True] * 50 + [False]).__next__)
    short = _import_meanwhile(owner, other, data, one_transaction=False)
    whole = _import_meanwhile(owner, other, data, one_transaction=True)
    loads, _ = _json_loads(data)

    print(
        f"check (whole file, streamed): {_ms(short['checked'])} "
        f"({short['checked'] / loads:.1f}x json.loads of the same bytes, {_ms(loads)})"
    )
    print(
        f"write: {_ms(short['written'])} for {rows:,} rows, "
        f"{len(short['holds'])} transactions; each held the lock "
        f"median {_ms(statistics.median(short['holds']))}, "
        f"max {_ms(max(short['holds']))}\n"
    )
    print("another user's write (create a conversation):")
    print("| while | writes | median | p95 | worst | worst / idle worst |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, waits in (
        ("the site is idle", idle),
        ("an import is written (short transactions)", short["waits"]),
        ("the same import in one transaction", whole["waits"]),
    ):
        ordered = sorted(waits)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        print(
            f"| {label} | {len(waits)} | {_ms(statistics.median(waits))} | {_ms(p95)} "
            f"| {_ms(max(waits))} | {max(waits) / max(idle):,.0f}x |"
        )

    print("\nhostile files, refused:")
    print("| file | size | refused after | read | memory held | json.loads | its memory |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    empty = import_files.empty_conversations(600_000)
    for label, hostile, plain in (
        ("600,000 empty conversations", empty, empty),
        (
            "the same, ChatGPT's format",
            import_files.empty_conversations(600_000, chatgpt=True),
            None,
        ),
        ("the same in a zip", import_files.zipped("c.json", empty), empty),
        ("600,000 children references", import_files.chatgpt_children(600_000), None),
    ):
        took, read, peak, message = _refusal(hostile)
        plain = plain or hostile
        loaded, loaded_peak = _json_loads(plain)
        print(
            f"| {label} | {len(hostile) / 1e3:,.0f} KB | {_ms(took)} | {read / 1e3:,.0f} KB "
            f"| {peak / 1e6:.1f} MB | {_ms(loaded)} | {loaded_peak / 1e6:,.0f} MB |"
        )
        assert message.startswith(("That file holds more", "Conversation 1: its children")), message


if __name__ == "__main__":
    main()
