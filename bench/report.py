"""Figures from raw measurements, and the table they make. Pure functions, no I/O.

A figure is computed only from samples: with no samples it is None, shown as "n/m" (not
measured) in the table and null in the JSON, never a zero or a default. Lag is matched
token by token: the upstream's log says when chunk `seq` of stream `id` was written, the
client's record says when the first frame holding its marker arrived.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.upstream_server import MARKER, chunk_text


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def has_marker(seq: int) -> bool:
    return MARKER in chunk_text(seq)


@dataclass
class ClientRecord:
    """What one simulated browser saw of one answer (times are time.monotonic())."""

    stream_id: str
    sent_at: float  # the send frame left the client
    seen: dict[int, float] = field(default_factory=dict)  # seq -> first frame holding it
    stop_sent_at: float | None = None
    final_at: float | None = None
    error: str = ""


@dataclass
class LevelFigures:
    tokens_sent: int
    tokens_delivered: int
    delivered_ratio: float | None
    ttft_ms: list[float]
    lag_ms: list[float]
    stop_ms: list[float]
    chunks_upstream: int
    rate_achieved: float | None  # chunks per second reaching one client, fastest stream


def level_figures(
    records: Iterable[ClientRecord], upstream_log: dict[str, dict[str, Any]]
) -> LevelFigures:
    sent_total = delivered = chunks = 0
    ttft: list[float] = []
    lag: list[float] = []
    stops: list[float] = []
    rates: list[float] = []
    for record in records:
        log = upstream_log.get(record.stream_id)
        if log is None:
            continue  # the request never reached the upstream: nothing was sent to lose
        sent: list[float] = log["sent"]
        chunks += len(sent)
        for seq, at in enumerate(sent):
            if not has_marker(seq):
                continue
            sent_total += 1
            got = record.seen.get(seq)
            if got is not None:
                delivered += 1
                lag.append((got - at) * 1000)
        if 0 in record.seen:
            ttft.append((record.seen[0] - record.sent_at) * 1000)
        if record.stop_sent_at is not None and log.get("closed_early_at") is not None:
            stops.append((log["closed_early_at"] - record.stop_sent_at) * 1000)
        if len(record.seen) > 10:
            times = sorted(record.seen.values())
            if times[-1] > times[0]:
                rates.append((len(times) - 1) / (times[-1] - times[0]))
    return LevelFigures(
        tokens_sent=sent_total,
        tokens_delivered=delivered,
        delivered_ratio=delivered / sent_total if sent_total else None,
        ttft_ms=ttft,
        lag_ms=lag,
        stop_ms=stops,
        chunks_upstream=chunks,
        rate_achieved=max(rates) if rates else None,
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ttft_figures(app_ms: Sequence[float], sdk_ms: Sequence[float]) -> dict[str, Any]:
    """Time to first token through the app and through the bare SDK, answer by answer,
    and what the app adds (difference of the percentiles; None where either is missing)."""
    figures: dict[str, Any] = {"answers": len(app_ms), "sdk_answers": len(sdk_ms)}
    for q in (50, 95):
        app, sdk = percentile(app_ms, q), percentile(sdk_ms, q)
        figures[f"app_p{q}_ms"] = app
        figures[f"sdk_p{q}_ms"] = sdk
        figures[f"added_p{q}_ms"] = difference(app, sdk)
    return figures


def knee(rows: Sequence[dict[str, Any]], *, lag_p99_ms: float = 250.0) -> int | None:
    """The largest N whose delivery was complete with p99 lag under the limit; None if no
    level passed (a level that was not measured cannot pass)."""
    passing = [
        row["n"]
        for row in rows
        if row.get("delivered_ratio") == 1.0
        and row.get("lag_p99_ms") is not None
        and row["lag_p99_ms"] < lag_p99_ms
    ]
    return max(passing) if passing else None


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/m"
    return f"{value:,.{digits}f}{unit}"


COLUMNS = [
    ("N", "n", 0),
    ("chunks/s", "rate", 0),
    ("TTFT +ms p50", "ttft_added_p50_ms", 1),
    ("TTFT +ms p95", "ttft_added_p95_ms", 1),
    ("lag p50 ms", "lag_p50_ms", 1),
    ("lag p99 ms", "lag_p99_ms", 1),
    ("lag max ms", "lag_max_ms", 0),
    ("SDK lag p99 ms", "sdk_lag_p99_ms", 1),
    ("delivered", "delivered_ratio", 4),
    ("app µs/chunk", "app_us_per_chunk", 0),
    ("SDK µs/chunk", "sdk_us_per_chunk", 0),
    ("app/SDK", "cpu_ratio", 2),
    ("writes/answer/s", "writes_per_answer_second", 2),
]


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = "| " + " | ".join(title for title, _, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in COLUMNS) + "|"
    lines = [head, rule]
    for row in rows:
        cells = [fmt(row.get(key), digits) for _, key, digits in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
