"""The operator's overview: superusers only, server-drawn SVG, bounded queries."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from django.test import Client

from accounts import quotas
from conversations import services, turn_services
from conversations.models import Message
from moderation import overview
from moderation.models import Flag
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_the_overview_shows_the_month_in_svg_for_superusers_only(
    django_assert_max_num_queries: Any,
) -> None:
    boss = make_user("boss")
    for n in range(30):
        user = make_user(f"user{n}")
        quotas.record_message(user_id=user.pk)
        quotas.record_tokens(
            user_id=user.pk, model=f"model-{n % 3}", tokens=100 + n, estimated=False
        )
    conversation = services.conversation_create(owner=boss, model="m")
    turn_services.turn_start(
        conversation=conversation, text="hi", generation_channel="c"
    )  # streaming
    Flag.objects.create(conversation=conversation, subject=boss, source="report", category="x")
    client = Client()
    client.force_login(boss)
    with django_assert_max_num_queries(12):  # the same whatever the number of rows
        page = client.get("/admin/overview/")
    body = page.content.decode()
    assert page.status_code == 200
    assert body.count('<svg class="chart"') == 2  # drawn on the server
    assert body.count(">Overview of the last 30 days</h1>") == 1  # the heading once
    assert ' style="' not in body.split('<div id="content-main"', 1)[1]  # the CSP holds
    assert 'id="open-flags">1<' in body
    assert 'id="streaming-now">1<' in body
    assert "<td>user29</td><td>129</td>" in body  # the top user first
    assert "/admin/overview/" in client.get("/admin/").content.decode()  # linked from admin
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    other = Client()
    other.force_login(staff)
    assert other.get("/admin/overview/").status_code == 403
    assert Client().get("/admin/overview/").status_code == 302


DAYS = [date(2025, 5, 8) + timedelta(days=n) for n in range(30)]


def test_a_small_day_beside_a_big_one_is_still_a_visible_bar() -> None:
    chart = overview.bar_chart(
        [(day, 0) for day in DAYS[:28]] + [(DAYS[28], 1), (DAYS[29], 9_000)],
        key="t",
        title="Tokens per day",
        unit="tokens",
    )
    *empty, small, big = chart.bars
    assert all(bar.height == 0 for bar in empty)
    assert small.height >= overview.MIN_BAR
    assert big.y == pytest.approx(chart.top + (chart.baseline - chart.top) * 0.1, abs=0.1)
    assert (small.value_label, big.value_label) == ("1", "9k")
    assert [line.label for line in chart.gridlines] == ["0", "2.5k", "5k", "7.5k", "10k"]
    assert chart.total == 9_001
    assert chart.peak == (DAYS[29], 9_000)


def test_every_seventh_day_is_named_ending_with_the_last() -> None:
    chart = overview.bar_chart([(day, 3) for day in DAYS], key="m", title="M", unit="messages")
    named = [tick.label for tick in chart.days if tick.label]
    assert named == ["May 9", "May 16", "May 23", "May 30", "Jun 6"]
    assert chart.days[-1].label == "Jun 6"


@pytest.mark.parametrize(
    ("peak", "top"),
    [(0, 4), (1, 4), (7, 8), (9, 12), (40, 40), (129, 160), (4_663, 6_000), (9_000, 10_000)],
)
def test_the_scale_ends_on_a_round_number_above_the_peak(peak: int, top: int) -> None:
    assert overview.scale_top(peak) == top


def _superuser_client() -> Client:
    boss = make_user("boss")  # the first account: a superuser
    client = Client()
    client.force_login(boss)
    return client


def test_the_charts_have_axes_day_names_values_and_the_numbers_as_a_table() -> None:
    client = _superuser_client()
    user = make_user("ada")
    quotas.record_message(user_id=user.pk)
    quotas.record_tokens(user_id=user.pk, model="m", tokens=1234, estimated=False)
    body = client.get("/admin/overview/").content.decode()
    chart = body[body.index('<figure class="overview-chart" id="chart-tokens">') :]
    chart = chart[: chart.index("</figure>")]
    assert chart.count('<g class="chart-axis">') == 1
    assert len(re.findall(r'<text class="chart-day"[^>]*>\w{3} \d+</text>', chart)) == 5
    assert '<text class="chart-scale"' in chart
    assert re.search(r'<text class="chart-value"[^>]*>1.2k</text>', chart)  # today's bar
    assert re.search(r"<title>\w{3} \w{3} \d+: 1,234 tokens</title>", chart)  # hover, readers
    assert 'aria-labelledby="chart-tokens-title chart-tokens-summary"' in chart
    assert "1,234 tokens in 30 days" in chart
    assert chart.count("<tr><td>") == 30  # the table: every day
    assert "chatsite/admin-overview.css" in body


def test_answer_feedback_is_counted_per_model() -> None:
    client = _superuser_client()
    empty = client.get("/admin/overview/").content.decode()
    assert "No feedback yet." in empty[empty.index('id="feedback-per-model"') :]
    owner = make_user("rater")
    conversation = services.conversation_create(owner=owner, model="gpt")
    verdicts = [("gpt", "up"), ("gpt", "up"), ("gpt", "up"), ("gpt", "down"), ("llama", "down")]
    for model, value in verdicts:
        turn = turn_services.turn_start(conversation=conversation, text="q", generation_channel="c")
        Message.objects.filter(pk=turn.answer.pk).update(model=model)
        services.message_finalize(message_id=turn.answer.pk, content="a", status="complete")
        services.answer_feedback_set(
            conversation=conversation, message_id=turn.answer.pk, value=value
        )
    body = client.get("/admin/overview/").content.decode()
    section = body[body.index('id="feedback-per-model"') :]
    assert "<caption>Answer feedback per model</caption>" in section
    assert "<tr><td>gpt</td><td>3</td><td>1</td><td>75%</td></tr>" in section
    assert "<tr><td>llama</td><td>0</td><td>1</td><td>0%</td></tr>" in section
