"""The operator's overview: the last 30 days at a glance, charts drawn as SVG on the
server (no script, no external asset, no inline style: classes styled by
static/chatsite/admin-overview.css). A fixed number of queries whatever the data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts import selectors as account_selectors
from conversations import usage_selectors

from . import selectors

DAYS = 30

# The drawing's own units (the SVG scales to its box): room on the left for the scale,
# below for the days, above for the tallest bar's value.
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 18, 28
GRIDLINES = 4
MIN_BAR = 2  # a day with a value is never drawn flat, however small beside the peak


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    value: int
    value_label: str  # over the bar; "" for a day with nothing
    label_x: float
    label_y: float


@dataclass(frozen=True)
class Gridline:
    y: float
    label: str


@dataclass(frozen=True)
class DayTick:
    x: float
    label: str  # "" for the days between labelled ones


@dataclass(frozen=True)
class Chart:
    """One bar per day, with a scale, for a template to draw (admin/overview_chart.html)."""

    key: str
    title: str
    unit: str
    points: list[tuple[date, int]]
    bars: list[Bar]
    gridlines: list[Gridline]
    days: list[DayTick]
    total: int
    peak: tuple[date, int] | None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    baseline: int = HEIGHT - BOTTOM
    top: int = TOP
    scale_x: int = LEFT - 8  # the scale's numbers end here
    tick_end: int = HEIGHT - BOTTOM + 4
    day_y: int = HEIGHT - 8  # the days' names


def compact(value: float) -> str:
    """1234 → "1.2k", 2500000 → "2.5M": numbers that fit over a bar."""
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            text = f"{scaled:.1f}" if scaled < 10 else f"{scaled:.0f}"
            return text.removesuffix(".0") + suffix
    return f"{value:g}"


def scale_top(peak: int) -> int:
    """The top of the scale: GRIDLINES equal steps, the smallest that hold the peak, each
    a whole number up to 10 (9 → 12 in steps of 3), then a round one (129 → 160 in steps
    of 40, 4,663 → 6,000 in steps of 1,500)."""
    if peak <= 0:
        return GRIDLINES
    raw = peak / GRIDLINES
    if raw <= 10:
        return math.ceil(raw) * GRIDLINES
    power = 10 ** math.floor(math.log10(raw))
    step = next(f * power for f in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if f * power >= raw)
    return int(step * GRIDLINES)


def bar_chart(points: list[tuple[date, int]], *, key: str, title: str, unit: str) -> Chart:
    """A bar per day on a scale from 0: gridlines with their values, every seventh day
    named (today's included), each bar's value over it and in its <title>."""
    top = scale_top(max((value for _, value in points), default=0))
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - RIGHT - LEFT) / max(len(points), 1)
    gap = min(4.0, slot * 0.2)
    bars = []
    for i, (day, value) in enumerate(points):
        height = value / top * plot_height
        if value > 0:
            height = max(height, MIN_BAR)
        x = LEFT + i * slot + gap / 2
        y = HEIGHT - BOTTOM - height
        bars.append(
            Bar(
                x=round(x, 1),
                y=round(y, 1),
                width=round(slot - gap, 1),
                height=round(height, 1),
                day=day,
                value=value,
                value_label=compact(value) if value else "",
                label_x=round(x + (slot - gap) / 2, 1),
                label_y=round(y - 4, 1),
            )
        )
    gridlines = [
        Gridline(
            y=round(HEIGHT - BOTTOM - n / GRIDLINES * plot_height, 1),
            label=compact(top * n / GRIDLINES),
        )
        for n in range(GRIDLINES + 1)
    ]
    last = len(points) - 1
    days = [
        DayTick(
            x=round(LEFT + (i + 0.5) * slot, 1),
            label=f"{day:%b} {day.day}" if (last - i) % 7 == 0 else "",
        )
        for i, (day, _) in enumerate(points)
    ]
    peak = max(points, key=lambda point: point[1]) if points else None
    return Chart(
        key=key,
        title=title,
        unit=unit,
        points=points,
        bars=bars,
        gridlines=gridlines,
        days=days,
        total=sum(value for _, value in points),
        peak=peak if peak and peak[1] > 0 else None,
    )


def _series(rows: Any, start: date) -> list[tuple[date, int]]:
    by_day = {row["day"]: row["value"] or 0 for row in rows}
    return [
        (start + timedelta(days=n), by_day.get(start + timedelta(days=n), 0)) for n in range(DAYS)
    ]


def feedback_per_model(*, since: datetime) -> list[dict[str, Any]]:
    """Answers' feedback per model since a moment, [{"model", "up", "down"}], most rated
    first, for the section "Answer feedback per model"."""
    return usage_selectors.feedback_per_model(since=since)


@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    if not request.user.is_superuser:
        raise PermissionDenied  # per-user figures: superusers only
    since = timezone.now() - timedelta(days=DAYS - 1)
    start = timezone.localdate(since)
    usage = account_selectors.usage_overview(since=since)
    context = {
        **admin.site.each_context(request),
        "title": "Overview of the last 30 days",
        "messages_chart": bar_chart(
            _series(usage.messages_per_day, start),
            key="messages",
            title="Messages per day",
            unit="messages",
        ),
        "tokens_chart": bar_chart(
            _series(usage.tokens_per_day, start),
            key="tokens",
            title="Tokens per day",
            unit="tokens",
        ),
        "per_model": usage.per_model,
        "top_users": usage.top_users,
        "open_flags": selectors.flags_open_count(),
        "streaming_now": usage_selectors.answers_streaming_count(),
        "feedback_per_model": feedback_per_model(since=since),
    }
    return render(request, "admin/overview.html", context)
