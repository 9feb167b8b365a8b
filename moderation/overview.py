"""The operator's overview: the last 30 days at a glance, charts drawn as SVG on the
server (no script, no external asset). A fixed number of queries whatever the data."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts import selectors as account_selectors
from conversations import selectors as conversation_selectors

from . import selectors

DAYS = 30


def bar_chart(points: list[tuple[date, int]], *, label: str) -> SafeString:
    """A bar per day; each bar carries its value in a <title> for hover and readers."""
    width, height, gap = 600, 140, 2
    top = max((value for _, value in points), default=0) or 1
    bar = width / max(len(points), 1)
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>',
        (
            (
                f"{i * bar:.1f}",
                f"{height - value / top * height:.1f}",
                f"{max(bar - gap, 1):.1f}",
                f"{value / top * height:.1f}",
                day.isoformat(),
                value,
            )
            for i, (day, value) in enumerate(points)
        ),
    )
    return format_html(
        '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" '
        'width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">{}</svg>',
        label,
        width,
        height,
        width,
        height,
        bars,
    )


def _series(rows: Any, start: date) -> list[tuple[date, int]]:
    by_day = {row["day"]: row["value"] or 0 for row in rows}
    return [
        (start + timedelta(days=n), by_day.get(start + timedelta(days=n), 0)) for n in range(DAYS)
    ]


@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    if not request.user.is_superuser:
        raise PermissionDenied  # per-user figures: superusers only
    since = timezone.now() - timedelta(days=DAYS - 1)
    start = timezone.localdate(since)
    usage = account_selectors.usage_overview(since=since)
    context = {
        "title": "Overview of the last 30 days",
        "messages_chart": bar_chart(
            _series(usage.messages_per_day, start), label="Messages per day"
        ),
        "tokens_chart": bar_chart(_series(usage.tokens_per_day, start), label="Tokens per day"),
        "per_model": usage.per_model,
        "top_users": usage.top_users,
        "open_flags": selectors.flags_open_count(),
        "streaming_now": conversation_selectors.answers_streaming_count(),
        "site_header": "chatsite administration",
    }
    return render(request, "admin/overview.html", context)
