"""The render benchmark measures what it says (bytes are deterministic, time is not)."""

from bench.render_cost import CHECKPOINTS_KB, measure, table


def test_render_benchmark_reports_every_size_and_flat_bytes() -> None:
    rows = measure(frame_chars=400, window=3)
    assert [r["answer_kb"] for r in rows] == CHECKPOINTS_KB
    assert all(r["us_per_frame"] > 0 and r["naive_us_per_frame"] > 0 for r in rows)
    first, last = rows[0], rows[-1]
    # Frames stay the same size while the naive whole-answer frame grows with the answer.
    assert last["bytes_per_frame"] < 1.5 * first["bytes_per_frame"]
    assert last["naive_bytes_per_frame"] > 10 * first["naive_bytes_per_frame"]
    assert "100 KB / 1 KB" in table(rows)
