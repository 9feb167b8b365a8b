"""The operator's overview: superusers only, server-drawn SVG, bounded queries."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts import quotas
from conversations import services, turn_services
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
