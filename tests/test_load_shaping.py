"""Under load, one answer's frames get coarser instead of falling behind."""

from __future__ import annotations

from typing import Any

from conversations.streaming import generation


def test_frames_get_coarser_with_many_answers_and_never_past_the_ceiling(
    settings: Any, monkeypatch: Any
) -> None:
    settings.CHATSITE_FRAME_INTERVAL = 0.05
    settings.CHATSITE_FRAME_INTERVAL_MAX = 0.15
    settings.CHATSITE_FRAME_FULL_RATE_ANSWERS = 50

    def running(n: int) -> float:
        monkeypatch.setattr(generation, "RUNNING", dict.fromkeys(range(n)))
        return generation.frame_interval()

    assert running(1) == 0.05
    assert running(50) == 0.05
    assert running(100) == 0.1
    assert running(2000) == 0.15
