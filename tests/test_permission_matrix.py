"""Who may open which admin page: anonymous, a user, staff without permissions, a
moderator, a superuser. Nothing leaks, nothing changes without its permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import Quota, Suspension, UsageEvent
from conversations import services, share_services, turn_services
from conversations.models import ShareLink
from moderation.models import AccessLog, Flag, Policy, Rule
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "user", "staff", "moderator", "superuser"]
# page -> expected status per role, in ROLES order.
LOGIN, OK, NO = 302, 200, 403
MATRIX = {
    "/admin/moderation/flag/": [LOGIN, LOGIN, NO, OK, OK],
    "/admin/moderation/flag/{flag}/change/": [LOGIN, LOGIN, NO, OK, OK],
    "/admin/moderation/rule/": [LOGIN, LOGIN, NO, OK, OK],
    "/admin/moderation/rule/add/": [LOGIN, LOGIN, NO, NO, OK],
    "/admin/moderation/policy/": [LOGIN, LOGIN, NO, OK, OK],
    "/admin/moderation/accesslog/": [LOGIN, LOGIN, NO, NO, OK],
    "/admin/moderation/accesslog/add/": [LOGIN, LOGIN, NO, NO, NO],
    "/admin/moderation/accesslog/{log}/delete/": [LOGIN, LOGIN, NO, NO, NO],
    "/admin/accounts/suspension/": [LOGIN, LOGIN, NO, OK, OK],
    "/admin/accounts/suspension/add/": [LOGIN, LOGIN, NO, OK, OK],
    "/admin/accounts/quota/": [LOGIN, LOGIN, NO, NO, OK],
    "/admin/accounts/usageevent/": [LOGIN, LOGIN, NO, NO, OK],
    "/admin/accounts/usageevent/add/": [LOGIN, LOGIN, NO, NO, NO],
    "/admin/conversations/conversation/": [LOGIN, LOGIN, NO, NO, OK],
    "/admin/conversations/conversation/{conversation}/change/": [LOGIN, LOGIN, NO, NO, OK],
    "/admin/conversations/message/{message}/change/": [LOGIN, LOGIN, NO, NO, OK],
    # The reason is posted, never sent in a GET: those who may open the page get 405.
    "/admin/conversations/conversation/{conversation}/reason/": [LOGIN, LOGIN, NO, NO, 405],
    "/admin/conversations/message/{message}/reason/": [LOGIN, LOGIN, NO, NO, 405],
    "/admin/conversations/conversation/text-search/": [LOGIN, LOGIN, NO, NO, OK],
    # Shared conversations: moderators see the list; opening one asks for a reason first.
    "/admin/conversations/sharelink/": [LOGIN, LOGIN, NO, OK, OK],
    "/admin/conversations/sharelink/{share}/change/": [LOGIN, LOGIN, NO, OK, OK],
    "/admin/conversations/sharelink/add/": [LOGIN, LOGIN, NO, NO, NO],
    "/admin/conversations/sharelink/{share}/delete/": [LOGIN, LOGIN, NO, NO, NO],
    "/admin/auth/user/": [LOGIN, LOGIN, NO, NO, OK],
    "/admin/overview/": [LOGIN, LOGIN, NO, NO, OK],
}


@pytest.fixture
def world() -> dict[str, object]:
    boss = make_user("boss")  # first account: superuser
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="secret diary")
    turn = turn_services.turn_start(
        conversation=conversation, text="secret words", generation_channel="c"
    )
    services.message_finalize(message_id=turn.answer.pk, content="noted", status="complete")
    flag = Flag.objects.create(
        conversation=conversation, message=turn.answer, subject=owner, source="rule", category="x"
    )
    log = AccessLog.objects.create(
        staff=boss, staff_username="boss", owner=owner, conversation=conversation, reason="r"
    )
    Rule.objects.create(pattern="bad", category="x")
    Policy.objects.create(category="x", action="flag")
    Quota.objects.create(user=owner, messages_per_day=5)
    UsageEvent.objects.create(user=owner, kind="message")
    Suspension.objects.create(user=make_user("troll"), reason="r")
    share = share_services.share_create(owner=owner, conversation=conversation)
    return {
        "share": share.pk,
        "boss": boss,
        "flag": flag.pk,
        "log": log.pk,
        "conversation": conversation.pk,
        "message": turn.answer.pk,
    }


def _client(role: str, world: dict[str, object]) -> Client:
    client = Client()
    if role == "anonymous":
        return client
    if role == "superuser":
        client.force_login(world["boss"])  # type: ignore[arg-type]
        return client
    user = make_user(role)
    user.is_staff = role in ("staff", "moderator")
    user.save()
    if role == "moderator":
        user.groups.add(Group.objects.get(name="Moderators"))
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ROLES)
def test_every_admin_page_answers_each_role_as_it_should(
    role: str, world: dict[str, object]
) -> None:
    client = _client(role, world)
    expected_by_page = {page: statuses[ROLES.index(role)] for page, statuses in MATRIX.items()}
    seen = {}
    for page in expected_by_page:
        response = client.get(page.format(**world))
        seen[page] = response.status_code
        if response.status_code != OK:
            assert b"secret words" not in response.content
    assert seen == expected_by_page


@pytest.mark.parametrize("role", ["anonymous", "user", "staff", "moderator", "superuser"])
def test_nobody_edits_or_deletes_the_access_log_or_the_usage_ledger(
    role: str, world: dict[str, object]
) -> None:
    client = _client(role, world)
    ledger = list(UsageEvent.objects.values_list("pk", flat=True))
    client.post(f"/admin/moderation/accesslog/{world['log']}/delete/", {"post": "yes"})
    client.post(f"/admin/moderation/accesslog/{world['log']}/change/", {"reason": "changed"})
    client.post(
        "/admin/moderation/accesslog/",
        {"action": "delete_selected", "_selected_action": [world["log"]], "post": "yes"},
    )
    client.post(
        "/admin/accounts/usageevent/",
        {"action": "delete_selected", "_selected_action": ledger, "post": "yes"},
    )
    assert list(AccessLog.objects.values_list("reason", flat=True)) == ["r"]
    assert list(UsageEvent.objects.values_list("pk", flat=True)) == ledger


@pytest.mark.parametrize("role", ["anonymous", "user", "staff"])
def test_flags_cannot_be_resolved_without_permission(role: str, world: dict[str, object]) -> None:
    client = _client(role, world)
    client.post(
        "/admin/moderation/flag/", {"action": "hide_message", "_selected_action": [world["flag"]]}
    )
    assert Flag.objects.get().status == "open"


@pytest.mark.parametrize("role", ROLES)
def test_only_who_may_view_conversations_give_reasons_or_search_their_text(
    role: str, world: dict[str, object]
) -> None:
    client = _client(role, world)
    reasons = [
        f"/admin/conversations/conversation/{world['conversation']}/reason/",
        f"/admin/conversations/message/{world['message']}/reason/",
    ]
    responses = [client.post(page, {"access_reason": "curious"}) for page in reasons]
    responses.append(
        client.post(
            "/admin/conversations/conversation/text-search/",
            {"words": "secret", "access_reason": "curious"},
        )
    )
    logged = AccessLog.objects.exclude(reason="r").count()
    if role == "superuser":
        assert [r.status_code for r in responses] == [303, 303, OK]
        assert logged == 3
    else:
        for response in responses:
            assert response.status_code in (LOGIN, NO)
            assert b"secret" not in response.content
        assert logged == 0


@pytest.mark.parametrize("role", ["anonymous", "user", "staff"])
def test_shares_cannot_be_taken_down_without_permission(
    role: str, world: dict[str, object]
) -> None:
    client = _client(role, world)
    client.post(
        "/admin/conversations/sharelink/",
        {"action": "take_down", "_selected_action": [world["share"]], "take_down_reason": "x"},
    )
    assert ShareLink.objects.get().taken_down_at is None
