"""Sidebar sections by recency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from conversations.grouping import sidebar_sections

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)


@dataclass
class Item:
    name: str
    updated_at: datetime
    pinned: bool = False


def test_sections_follow_recency_with_pinned_on_top() -> None:
    items = [
        Item("pinned old", NOW - timedelta(days=400), pinned=True),
        Item("now", NOW - timedelta(minutes=5)),
        Item("this morning", NOW.replace(hour=1)),
        Item("yesterday", NOW - timedelta(days=1)),
        Item("3 days", NOW - timedelta(days=3)),
        Item("20 days", NOW - timedelta(days=20)),
        Item("in August", datetime(2026, 8, 3, tzinfo=UTC)),
        Item("last year", datetime(2025, 12, 24, tzinfo=UTC)),
    ]
    sections = [
        (label, [i.name for i in group]) for label, group in sidebar_sections(items, now=NOW)
    ]
    assert sections == [
        ("Pinned", ["pinned old"]),
        ("Today", ["now", "this morning"]),
        ("Yesterday", ["yesterday"]),
        ("Previous 7 days", ["3 days"]),
        ("Previous 30 days", ["20 days"]),
        ("August 2026", ["in August"]),
        ("December 2025", ["last year"]),
    ]
