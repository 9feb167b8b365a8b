"""Who may suspend whom, wherever a suspension starts (the suspension form, the flag
queue's action): nobody themselves, never a superuser, staff only by a superuser."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import Suspension
from conversations import services
from moderation.models import Flag
from tests.conftest import make_user

# Not transactional: a flush would take the Moderators group its data migration made.
pytestmark = pytest.mark.django_db


SUSPEND = "/admin/accounts/suspension/add/"


def _member(username: str, *, moderator: bool = False) -> Any:
    user = make_user(username)
    user.is_staff = True
    user.save()
    if moderator:
        user.groups.add(Group.objects.get(name="Moderators"))
    return user


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _suspend_form(client: Client, user: Any) -> Any:
    return client.post(
        SUSPEND, {"user": user.pk, "reason": "Abusing the queue.", "until_0": "", "until_1": ""}
    )


def test_a_moderator_cannot_suspend_staff_or_themselves_on_the_suspension_form() -> None:
    make_user("boss")
    moderator = _member("mod", moderator=True)
    colleague = _member("colleague", moderator=True)
    client = _as(moderator)
    refused = _suspend_form(client, colleague)
    assert refused.status_code == 200  # the form again, with the rule
    assert "Only a superuser can suspend a member of staff." in refused.content.decode()
    itself = _suspend_form(client, moderator)
    assert "You cannot suspend yourself." in itself.content.decode()
    assert not Suspension.objects.exists()


def test_nobody_suspends_a_superuser_not_even_another_superuser() -> None:
    boss = make_user("boss")
    other_boss = _member("other-boss")
    other_boss.is_superuser = True
    other_boss.save()
    refused = _suspend_form(_as(other_boss), boss)
    assert "A superuser cannot be suspended." in refused.content.decode()
    assert "You cannot suspend yourself." in _suspend_form(_as(boss), boss).content.decode()
    assert not Suspension.objects.exists()


def test_a_moderator_cannot_suspend_staff_or_themselves_from_the_flag_queue() -> None:
    make_user("boss")
    moderator = _member("mod", moderator=True)
    colleague = _member("colleague", moderator=True)
    client = _as(moderator)
    for subject, error in (
        (colleague, "Only a superuser can suspend a member of staff."),
        (moderator, "You cannot suspend yourself."),
    ):
        conversation = services.conversation_create(owner=subject, model="m", title="t")
        flag = Flag.objects.create(
            conversation=conversation, subject=subject, source="report", category="rude"
        )
        response = client.post(
            "/admin/moderation/flag/",
            {"action": "suspend_user", "_selected_action": [flag.pk]},
            follow=True,
        )
        assert error in response.content.decode()
        flag.refresh_from_db()
        assert flag.status == "open"  # not closed as "suspended" for nothing
    assert not Suspension.objects.exists()


def test_a_superuser_can_suspend_a_member_of_staff() -> None:
    boss = make_user("boss")
    moderator = _member("mod", moderator=True)
    assert _suspend_form(_as(boss), moderator).status_code == 302
    assert Suspension.objects.get().user == moderator


def test_a_moderator_can_suspend_an_ordinary_user_from_the_flag_queue() -> None:
    make_user("boss")
    client = _as(_member("mod", moderator=True))
    troll = make_user("troll")
    conversation = services.conversation_create(owner=troll, model="m", title="t")
    flag = Flag.objects.create(
        conversation=conversation, subject=troll, source="report", category="rude"
    )
    opened = client.post(
        "/admin/moderation/flag/", {"action": "suspend_user", "_selected_action": [flag.pk]}
    )
    assert opened["Location"].startswith(SUSPEND)
    assert _suspend_form(client, troll).status_code == 302
    assert Suspension.objects.get().user == troll
