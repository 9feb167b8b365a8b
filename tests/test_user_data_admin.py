"""An operator exports (after giving a reason, which is logged) or deletes all data of one
user from the user admin."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from conversations import services
from conversations.models import Conversation
from moderation.models import AccessLog
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _collect(response: Any) -> bytes:
    async def read() -> bytes:
        return b"".join([bytes(c) async for c in response.streaming_content])

    return async_to_sync(read)()


@pytest.fixture
def setup() -> tuple[Client, Any]:
    boss = make_user("boss")
    target = make_user("target")
    for n in range(3):
        services.conversation_create(owner=target, model="m", title=f"Target chat {n}")
    services.conversation_create(owner=boss, model="m", title="Boss chat")
    client = Client()
    client.force_login(boss)
    return client, target


def test_exporting_a_users_data_asks_for_a_reason_and_logs_it(setup: tuple[Client, Any]) -> None:
    client, target = setup
    url = "/admin/auth/user/"
    asked = client.post(url, {"action": "export_user_data", "_selected_action": [target.pk]})
    assert "Export all data of target" in asked.content.decode()
    assert not AccessLog.objects.exists()
    response = client.post(
        url,
        {
            "action": "export_user_data",
            "_selected_action": [target.pk],
            "access_reason": "Court order 7",
        },
    )
    archive = zipfile.ZipFile(io.BytesIO(_collect(response)))
    assert len([n for n in archive.namelist() if n.endswith(".json")]) == 3
    assert b"Boss chat" not in b"".join(archive.read(n) for n in archive.namelist())
    entry = AccessLog.objects.get()
    assert (entry.owner_id, entry.conversation_id) == (target.pk, None)
    assert entry.reason == "Export of all data: Court order 7"


def test_the_export_runs_only_from_a_post(setup: tuple[Client, Any]) -> None:
    client, target = setup
    response = client.get(
        "/admin/auth/user/",
        {"action": "export_user_data", "_selected_action": target.pk, "access_reason": "x"},
    )
    assert not response.streaming
    assert response.get("Content-Type", "").startswith("text/html")
    assert not AccessLog.objects.exists()


def test_deleting_a_users_data_needs_a_confirmation(setup: tuple[Client, Any]) -> None:
    client, target = setup
    url = "/admin/auth/user/"
    client.post(url, {"action": "delete_user_data", "_selected_action": [target.pk]})
    assert Conversation.objects.filter(owner=target).count() == 3
    client.post(
        url, {"action": "delete_user_data", "_selected_action": [target.pk], "confirmed": "yes"}
    )
    assert not Conversation.objects.filter(owner=target).exists()
    assert Conversation.objects.filter(title="Boss chat").exists()


def test_staff_who_are_not_superusers_cannot_export_or_delete(setup: tuple[Client, Any]) -> None:
    _, target = setup
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    for action in ("export_user_data", "delete_user_data"):
        client.post(
            "/admin/auth/user/",
            {
                "action": action,
                "_selected_action": [target.pk],
                "confirmed": "yes",
                "access_reason": "x",
            },
        )
    assert Conversation.objects.filter(owner=target).count() == 3
    assert not AccessLog.objects.exists()
