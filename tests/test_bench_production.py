"""The production benchmark: its arithmetic on hand-made rows, then a small run end to end
through nginx on PostgreSQL and Redis, held against what must have happened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import production

pytestmark = pytest.mark.services


def _row(n: int, lag: float, delivered: float = 1.0) -> dict[str, object]:
    return {
        "n": n,
        "lag_p50_ms": lag / 2,
        "lag_p99_ms": lag,
        "delivered_ratio": delivered,
        "app_us_per_chunk": 400.0,
        "worker_cpu_per_answer_second": 0.012,
        "infra_cpu_per_answer_second": 0.003,
        "publishes_per_answer_second": 7.0,
        "writes_per_answer_second": 1.5,
    }


def test_the_knee_is_the_largest_level_on_time_with_every_token() -> None:
    rows = [_row(10, 40), _row(50, 120), _row(100, 260), _row(200, 90, delivered=0.99)]
    assert production.knee(rows) == 50  # 100 is late, 200 lost tokens


def test_the_sizing_scales_the_measured_costs_per_answer() -> None:
    one = {"workers": 1, "levels": [_row(10, 40), _row(50, 300)]}
    two = {"workers": 2, "levels": [_row(10, 40), _row(50, 120), _row(100, 900)]}
    text = "\n".join(production.sizing([one, two], {1: 10, 2: 50}))
    assert "with 2 workers at N=50" in text  # the busiest level still on time
    # 0.012 CPU-s per answer-second at 75%: 1.6 cores per 100 answers; 25 per worker.
    assert "| 100 | 2 | 4 | 0.3 | 700 | 150 |" in text
    assert "| 1,000 | 16 | 40 | 3.0 | 7,000 | 1,500 |" in text
    assert "| 10,000 | 160 | 400 | 30.0 | 70,000 | 15,000 |" in text


def test_a_small_run_through_the_profile_reports_what_happened(tmp_path: Path) -> None:
    assert production.main(["--levels", "2", "--workers", "1", "--chunks", "60",
                            "--out", str(tmp_path)]) == 0  # fmt: skip
    results = json.loads((tmp_path / "production.json").read_text())
    (row,) = results[0]["levels"]
    assert row["n"] == 2
    assert row["delivered_ratio"] == 1.0
    assert row["tokens_delivered"] == row["tokens_sent"] > 0
    assert row["app_us_per_chunk"] > 0
    # Frames went through Redis, checkpoints and final saves into PostgreSQL.
    assert row["publishes"] >= 2 * 10
    assert row["writes"]["rows"] >= 2 * 2
    text = (tmp_path / "production.md").read_text()
    assert "| 1 | 2 |" in text
    assert "| 10,000 |" in text
