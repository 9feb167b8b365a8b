"""Staff read a user's messages only after giving a reason, which is recorded and cannot
be edited or deleted; the owner can see it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from conversations import services
from conversations.models import Conversation
from moderation.models import AccessLog, Flag
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss() -> Client:
    client = Client()
    client.force_login(make_user("boss"))  # the first account: a superuser
    return client


@pytest.fixture
def private() -> Conversation:
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="Diary")
    turn = services.turn_start(
        conversation=conversation, text="my private words", generation_channel="c"
    )
    services.message_finalize(message_id=turn.answer.pk, content="noted", status="complete")
    return conversation


@pytest.mark.parametrize("page", ["conversation", "message"])
def test_reading_a_users_messages_asks_for_a_reason_and_records_it(
    boss: Client, private: Conversation, page: str
) -> None:
    target = private.pk if page == "conversation" else private.messages.first().pk  # type: ignore[union-attr]
    url = f"/admin/conversations/{page}/{target}/change/"
    asked = boss.get(url).content.decode()
    assert "Why do you need to read this conversation?" in asked
    assert "my private words" not in asked
    assert not AccessLog.objects.exists()
    shown = boss.get(url, {"access_reason": "Support ticket 42"}).content.decode()
    assert "my private words" in shown
    entry = AccessLog.objects.get()
    assert (entry.staff_username, entry.owner_id, entry.conversation_id, entry.reason) == (
        "boss",
        private.owner_id,
        private.pk,
        "Support ticket 42",
    )


def test_opening_a_flag_is_recorded_with_the_flag_as_reason(
    boss: Client, private: Conversation
) -> None:
    flag = Flag.objects.create(
        conversation=private, subject=private.owner, source="report", category="other"
    )
    assert boss.get(f"/admin/moderation/flag/{flag.pk}/change/").status_code == 200
    assert AccessLog.objects.get().reason == f"Flag #{flag.pk} (User report: other)"


def test_nobody_can_edit_or_delete_the_log(boss: Client, private: Conversation) -> None:
    boss.get(f"/admin/conversations/conversation/{private.pk}/change/", {"access_reason": "x"})
    entry = AccessLog.objects.get()
    assert boss.get("/admin/moderation/accesslog/").status_code == 200  # superusers read it
    change = boss.post(f"/admin/moderation/accesslog/{entry.pk}/change/", {"reason": "nothing"})
    assert change.status_code in (200, 403)
    assert (
        boss.post(f"/admin/moderation/accesslog/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    bulk = boss.post(
        "/admin/moderation/accesslog/",
        {"action": "delete_selected", "_selected_action": [entry.pk]},
    )
    assert bulk.status_code in (200, 302)
    entry.refresh_from_db()
    assert entry.reason == "x"
    assert AccessLog.objects.count() == 1
    assert boss.get("/admin/moderation/accesslog/add/").status_code == 403


def test_the_owner_sees_when_and_why_unless_the_operator_turns_it_off(
    boss: Client, private: Conversation, settings: Any
) -> None:
    boss.get(
        f"/admin/conversations/conversation/{private.pk}/change/", {"access_reason": "Abuse report"}
    )
    owner = Client()
    owner.force_login(private.owner)
    page = owner.get("/settings/").content.decode()
    assert "When staff opened your conversations" in page
    assert "Abuse report" in page
    assert "Diary" in page
    other = Client()
    other.force_login(make_user("other"))
    assert "Abuse report" not in other.get("/settings/").content.decode()
    settings.CHATSITE_SHOW_ACCESS_LOG_TO_USERS = False
    assert "Abuse report" not in owner.get("/settings/").content.decode()


def test_staff_without_permission_get_neither_the_form_nor_the_messages(
    private: Conversation,
) -> None:
    make_user("boss")
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    response = client.get(
        f"/admin/conversations/conversation/{private.pk}/change/", {"access_reason": "curious"}
    )
    assert response.status_code == 403
    assert not AccessLog.objects.exists()
