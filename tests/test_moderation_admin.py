"""The flag queue in Django admin: who may see it, what its actions do."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from conversations import services, turn_services
from conversations.models import Message
from moderation.models import Flag
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _flagged_answer() -> Flag:
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="t")
    turn = turn_services.turn_start(conversation=conversation, text="q", generation_channel="c")
    services.message_finalize(
        message_id=turn.answer.pk, content="<script>x()</script> **bad** words", status="complete"
    )
    return Flag.objects.create(
        conversation=conversation,
        message_id=turn.answer.pk,
        subject=owner,
        source="rule",
        category="rude",
        excerpt="bad words",
    )


def _staff(username: str, *, moderator: bool = False, superuser: bool = False) -> Client:
    user = make_user(username)
    user.is_staff = True
    user.is_superuser = superuser
    user.save()
    if moderator:
        user.groups.add(Group.objects.get(name="Moderators"))
    client = Client()
    client.force_login(user)
    return client


def test_moderators_work_the_queue_and_see_the_text_rendered_safely() -> None:
    flag = _flagged_answer()
    make_user("first")  # not the first account: not a superuser
    moderator = _staff("mod", moderator=True)
    queue = moderator.get("/admin/moderation/flag/")
    assert queue.status_code == 200
    assert "bad words" in queue.content.decode()
    page = moderator.get(f"/admin/moderation/flag/{flag.pk}/change/").content.decode()
    assert "<strong>bad</strong>" in page  # rendered as on the site
    assert "<script>x()</script>" not in page
    # The group has no way into conversations themselves.
    assert moderator.get("/admin/conversations/conversation/").status_code == 403
    response = moderator.post(
        "/admin/moderation/flag/",
        {"action": "hide_message", "_selected_action": [flag.pk]},
    )
    assert response.status_code == 302
    flag.refresh_from_db()
    assert flag.status == "hidden"
    assert Message.objects.get(pk=flag.message_id or 0).hidden
    moderator.post(
        "/admin/moderation/flag/", {"action": "unhide_message", "_selected_action": [flag.pk]}
    )
    assert not Message.objects.get(pk=flag.message_id or 0).hidden


def test_staff_without_the_group_and_ordinary_users_cannot_see_flags() -> None:
    flag = _flagged_answer()
    assert _staff("staff-only").get("/admin/moderation/flag/").status_code == 403
    user = Client()
    user.force_login(make_user("plain"))
    assert user.get("/admin/moderation/flag/").status_code == 302
    assert (
        user.post(
            "/admin/moderation/flag/", {"action": "dismiss", "_selected_action": [flag.pk]}
        ).status_code
        == 302
    )
    flag.refresh_from_db()
    assert flag.status == "open"
