"""The frame protocol on its own: what a socket does with each frame, without a socket."""

from __future__ import annotations

from typing import Any

from conversations.streaming import frames
from conversations.streaming.frames import Action, FrameOrder


def frame(message_id: int, seq: int, *, final: bool = False) -> dict[str, Any]:
    return frames.answer_frame(message_id=message_id, seq=seq, html=f"<p>{seq}</p>", final=final)


def test_frames_of_an_answer_are_sent_in_order_from_its_announcement() -> None:
    order = FrameOrder()
    assert [order.on_frame(frame(7, n)) for n in range(4)] == [Action.SEND] * 4
    assert order.on_frame(frame(7, 4, final=True)) is Action.SEND
    assert 7 not in order.last_seq  # nothing left to follow


def test_a_gap_in_the_numbers_asks_for_healing_and_sends_nothing() -> None:
    order = FrameOrder()
    order.on_frame(frame(7, 0))
    order.on_frame(frame(7, 1))
    assert order.on_frame(frame(7, 3)) is Action.HEAL
    assert order.last_seq[7] == 1  # the missed frame is not counted as sent


def test_while_a_snapshot_is_awaited_frames_are_held_and_only_newer_ones_follow_it() -> None:
    order = FrameOrder()
    order.await_snapshot(7)
    for n in (5, 6, 7):
        assert order.on_frame(frame(7, n)) is Action.HOLD
    newer = order.on_snapshot(frames.snapshot(message_id=7, seq=6, html="so far"))
    assert [f["seq"] for f in newer or []] == [7]
    assert order.awaiting is None
    assert [order.on_frame(f) for f in newer or []] == [Action.SEND]
    assert order.on_frame(frame(7, 8)) is Action.SEND


def test_a_final_frame_ends_the_wait_and_a_late_snapshot_is_dropped() -> None:
    order = FrameOrder()
    order.await_snapshot(7)
    order.on_frame(frame(7, 5))
    assert order.on_frame(frame(7, frames.BEYOND_ANY_FRAME, final=True)) is Action.SEND
    assert order.awaiting is None
    assert order.on_snapshot(frames.snapshot(message_id=7, seq=4, html="late")) is None


def test_frames_about_the_conversation_are_never_held_or_numbered() -> None:
    order = FrameOrder()
    order.await_snapshot(7)
    assert order.on_frame(frames.side_frame(html="<h1>title</h1>")) is Action.SEND
    gone = frames.side_frame(html="gone", gone=True)
    assert gone["gone"] is True
    assert order.on_frame(gone) is Action.SEND
    assert order.last_seq == {}


def test_group_names_never_carry_a_session_key() -> None:
    key = "abcdef0123456789abcdef0123456789"
    group = frames.session_group(key)
    assert key not in group
    assert group == frames.session_group(key)  # stable across processes
    assert group != frames.session_group(key[::-1])
    assert len(group) < 100  # the channel layer's limit
