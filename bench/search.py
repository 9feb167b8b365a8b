"""Search latency with 10,000 conversations and 200,000 messages.

Migrates a fresh database (the one DATABASE_URL names; by default a temporary SQLite
file), fills it with one user's 10,000 conversations of 20 messages each (the worst case
for a per-user search: every row is the user's) plus another user's, then times the
search selector for several kinds of query and prints p50/p95 in milliseconds. A
baseline from the same run is printed beside it: fetching one conversation by id, the
cheapest read the site makes, so that the ratio means something on a busy machine.

    make bench-search      # SQLite, then PostgreSQL (started by scripts/with-postgres.sh)
    .venv/bin/python -m bench.search [--conversations 10000] [--per 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

if "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(
        tempfile.mkdtemp(prefix="chatsite-bench-"), "bench.sqlite3"
    )
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts import services as account_services  # noqa: E402
from conversations import selectors  # noqa: E402
from conversations.models import Conversation, Message  # noqa: E402

SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "nu",
    "pe",
    "ra",
    "si",
    "to",
    "vu",
    "xe",
    "ba",
    "de",
    "fi",
    "go",
    "hu",
    "ja",
    "ke",
    "li",
    "mo",
    "ne",
]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def fill(conversations: int, per: int, rng: random.Random) -> tuple[Any, list[str]]:
    words = vocabulary(6000, rng)
    # Zipf-like: a few words are everywhere, most are rare, like real text.
    weights = [1 / (rank + 1) for rank in range(len(words))]
    owner: Any = account_services.user_create(username="bench", password="bench-password-123")
    other: Any = account_services.user_create(username="other", password="bench-password-123")
    now = timezone.now()
    started = time.perf_counter()
    for start in range(0, conversations, 500):
        with transaction.atomic():
            batch = [
                Conversation(
                    owner=owner if (start + i) % 10 else other,
                    model="bench",
                    title=" ".join(rng.choices(words, weights, k=4)),
                    updated_at=now,
                )
                for i in range(min(500, conversations - start))
            ]
            Conversation.objects.bulk_create(batch)
            rows = []
            for conversation in batch:
                for n in range(per):
                    rows.append(
                        Message(
                            conversation=conversation,
                            role="user" if n % 2 == 0 else "assistant",
                            content=" ".join(
                                rng.choices(
                                    words, weights, k=rng.randint(10, 20 if n % 2 == 0 else 120)
                                )
                            ),
                        )
                    )
            Message.objects.bulk_create(rows, batch_size=2000)
        print(f"  filled {start + len(batch):,} conversations", end="\r", file=sys.stderr)
    print(f"  filled in {time.perf_counter() - started:.0f} s" + " " * 20, file=sys.stderr)
    return owner, words


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--per", type=int, default=20)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = random.Random(7)
    call_command("migrate", verbosity=0)
    owner, words = fill(args.conversations, args.per, rng)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    first = Conversation.objects.filter(owner=owner).first()
    assert first is not None
    queries = {
        "common word": words[0],
        "rare word": words[-1],
        "3-letter prefix": words[len(words) // 2][:3],
        "two words": f"{words[3]} {words[40]}",
        "no match": "zzzzqqq",
    }
    results: dict[str, Any] = {
        "database": connection.vendor,
        "conversations": Conversation.objects.count(),
        "messages": Message.objects.count(),
        "rows": [],
    }
    baseline = timed(
        lambda: selectors.conversation_get(user=owner, public_id=first.public_id), args.runs
    )
    results["baseline_ms_p50"] = statistics.median(baseline)
    print(
        f"\nSearch on {connection.vendor}: {results['conversations']:,} conversations, "
        f"{results['messages']:,} messages (90% of them one user's)\n"
    )
    print("| query | results | p50 ms | p95 ms | p50 / one-row read |")
    print("|---|---:|---:|---:|---:|")
    for label, query in queries.items():
        found = len(selectors.conversation_search(user=owner, query=query))
        times = timed(partial(selectors.conversation_search, user=owner, query=query), args.runs)
        p50, p95 = statistics.median(times), pct(times, 0.95)
        ratio = p50 / results["baseline_ms_p50"]
        results["rows"].append(
            {"query": label, "results": found, "p50_ms": p50, "p95_ms": p95, "ratio": ratio}
        )
        print(f"| {label} (`{query}`) | {found} | {p50:.1f} | {p95:.1f} | {ratio:.0f}x |")
    print(f"\nOne-row read (baseline): p50 {results['baseline_ms_p50']:.2f} ms")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
