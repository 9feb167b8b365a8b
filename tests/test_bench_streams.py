"""The streams benchmark reports only what it measured.

The figures come from two logs that never see each other's numbers: the upstream's (when
each chunk was written) and the simulated browsers' (when each marker arrived). These
tests check the arithmetic on hand-made logs, then run the whole benchmark small, end to
end, and hold its report against what the upstream must have sent.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import report, streams
from bench.report import ClientRecord
from bench.upstream_server import chunk_text, marker_count, parse_model


def _log(sent: list[float], closed_early_at: float | None = None) -> dict[str, object]:
    return {"sent": sent, "requested_at": sent[0], "closed_early_at": closed_early_at}


def test_every_chunk_but_the_fence_end_carries_its_own_marker() -> None:
    for seq in range(240):
        text = chunk_text(seq)
        assert (f"zq{seq}" in text) == (seq % 60 != 48), text
    assert marker_count(60) == 59
    assert parse_model("bench-500x1500") == (500.0, 1500)
    assert parse_model("gpt-4o") is None


def test_lag_is_receive_minus_send_per_token_and_missing_tokens_are_undelivered() -> None:
    sent = [10.0 + i * 0.1 for i in range(5)]
    record = ClientRecord(stream_id="1", sent_at=9.99, seen={0: 10.02, 1: 10.15, 3: 10.5})
    figures = report.level_figures([record], {"1": _log(sent)})
    assert figures.tokens_sent == 5
    assert figures.tokens_delivered == 3
    assert figures.delivered_ratio == 0.6
    assert [round(x) for x in figures.lag_ms] == [20, 50, 200]
    assert [round(x) for x in figures.ttft_ms] == [30]


def test_a_client_that_never_finished_counts_its_tokens_as_lost() -> None:
    sent = [1.0, 1.1, 1.2]
    records = [
        ClientRecord(stream_id="1", sent_at=0.9, seen={0: 1.01, 1: 1.11, 2: 1.21}),
        ClientRecord(stream_id="2", sent_at=0.0),  # timed out: nothing arrived
    ]
    figures = report.level_figures(records, {"1": _log(sent), "2": _log(sent)})
    assert figures.delivered_ratio == 0.5


def test_stop_latency_is_measured_only_where_the_upstream_saw_the_hang_up() -> None:
    records = [
        ClientRecord(stream_id="1", sent_at=0.0, stop_sent_at=2.0),
        ClientRecord(stream_id="2", sent_at=0.0, stop_sent_at=2.0),  # upstream never saw it
    ]
    log = {"1": _log([1.0], closed_early_at=2.03), "2": _log([1.0])}
    figures = report.level_figures(records, log)
    assert [round(x) for x in figures.stop_ms] == [30]


def test_figures_without_samples_are_not_measured_rather_than_zero() -> None:
    figures = report.level_figures([], {})
    assert figures.delivered_ratio is None
    assert report.percentile([], 99) is None
    assert report.difference(None, 3.0) is None
    assert report.ratio(5.0, 0) is None
    assert report.ttft_figures([], [12.0])["added_p50_ms"] is None
    assert report.ttft_figures([20.0, 30.0], [5.0, 5.0])["added_p50_ms"] == 20.0
    row = {"n": 10, "lag_p99_ms": None, "delivered_ratio": None}
    assert "n/m" in report.table([row])
    # A level that was not measured cannot be the knee; a complete fast one can.
    assert report.knee([row]) is None
    assert report.knee([row, {"n": 5, "lag_p99_ms": 80.0, "delivered_ratio": 1.0}]) == 5
    assert report.knee([{"n": 50, "lag_p99_ms": 300.0, "delivered_ratio": 1.0}]) is None


def test_the_benchmark_runs_end_to_end_and_accounts_for_every_token(tmp_path: Path) -> None:
    chunks = 45
    code = streams.main(
        [
            "--levels=1,3",
            "--modes=memory",
            f"--chunks={chunks}",
            "--spread=0.2",
            "--memory-sockets=3",
            "--stop-answers=3",
            "--ttft-answers=3",
            f"--out={tmp_path}",
        ]
    )
    assert code == 0
    data = json.loads((tmp_path / "streams.json").read_text())
    (mode,) = data["results"]
    assert [row["n"] for row in mode["levels"]] == [1, 3]
    for row in mode["levels"]:
        # What the upstream must have sent, from the model's shape, not from either log.
        assert row["tokens_sent"] == row["n"] * marker_count(chunks)
        assert row["delivered_ratio"] == 1.0
        assert 0 < row["lag_p50_ms"] <= row["lag_p99_ms"] <= row["lag_max_ms"]
        assert row["app_us_per_chunk"] > 0
        assert row["sdk_us_per_chunk"] > 0
        assert row["writes"].get("UPDATE conversations_message", 0) >= row["n"]  # checkpoints
        assert row["error_count"] == 0
    assert mode["fast"]["delivered_ratio"] == 1.0
    assert mode["stop"]["stops_measured"] == 3
    assert 0 < mode["stop"]["stop_p50_ms"] < 5000
    assert mode["memory"]["rss_idle_kb"] > 10_000
    assert (mode["ttft"]["answers"], mode["ttft"]["sdk_answers"]) == (3, 3)
    assert 0 < mode["ttft"]["sdk_p50_ms"] < mode["ttft"]["app_p50_ms"]
    table = (tmp_path / "streams.md").read_text()
    assert "| 3 | 30 |" in table
    assert "Knee" in table
    assert "Time to first token, 3 answers one at a time: the app adds p50" in table
    assert (tmp_path / "streams.png").read_bytes()[:4] == b"\x89PNG"
