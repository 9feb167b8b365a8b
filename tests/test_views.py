"""Pages: sign-up, sign-in, the list, a conversation, starting one with a first message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client

from conversations import services, turn_services
from conversations.models import Conversation, Message
from tests.conftest import make_user
from tests.fake_openai import FakeUpstream, Stream

pytestmark = pytest.mark.django_db


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pages_need_sign_in() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_signup_signs_in_and_first_account_is_superuser() -> None:
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "ada",
            "password1": "correct-horse-battery",
            "password2": "correct-horse-battery",
        },
    )
    assert response.status_code == 302
    ada = get_user_model().objects.get(username="ada")
    assert ada.is_superuser
    assert client.get("/").status_code == 200
    Client().post(
        "/accounts/signup/",
        {
            "username": "bob",
            "password1": "correct-horse-battery",
            "password2": "correct-horse-battery",
        },
    )
    assert not get_user_model().objects.get(username="bob").is_superuser


def test_signup_can_be_turned_off(settings: Any) -> None:
    settings.CHATSITE_SIGNUP_ENABLED = False
    assert Client().get("/accounts/signup/").status_code == 404
    Client().post(
        "/accounts/signup/",
        {"username": "x", "password1": "pw-long-enough-1", "password2": "pw-long-enough-1"},
    )
    assert not get_user_model().objects.exists()


def test_logout_is_post_only() -> None:
    client = logged_in(make_user())
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_home_lists_only_own_conversations_newest_first() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    old = services.conversation_create(owner=alice, model="m", title="Old one")
    services.conversation_create(owner=alice, model="m", title="New one")
    services.conversation_create(owner=bob, model="m", title="Bob's secret")
    turn_services.turn_start(conversation=old, text="bump", generation_channel="c")
    page = logged_in(alice).get("/").content.decode()
    assert "Bob&#x27;s secret" not in page
    assert "Bob's secret" not in page
    assert page.index("Old one") < page.index("New one")  # activity moves a conversation up


def test_conversation_page_shows_messages_escaped_with_stable_ids() -> None:
    user = make_user()
    conversation = services.conversation_create(owner=user, model="m")
    turn = turn_services.turn_start(
        conversation=conversation,
        text="<script>alert(1)</script>\nline two",
        generation_channel="c",
    )
    services.message_finalize(message_id=turn.answer.pk, content="<b>bold?</b>", status="stopped")
    page = logged_in(user).get(f"/conversations/{conversation.public_id}/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\nline two" in page
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page
    assert f'id="message-{turn.user_message.pk}"' in page
    assert (
        f'id="message-{turn.answer.pk}" class="message message--assistant" '
        'data-role="assistant" data-status="stopped"' in page
    )
    assert "Stopped" in page
    assert f'ws-connect="/ws/conversations/{conversation.public_id}/?seen=' in page


def test_other_users_conversation_is_404() -> None:
    owner, other = make_user("owner"), make_user("other")
    conversation = services.conversation_create(owner=owner, model="m")
    assert logged_in(other).get(f"/conversations/{conversation.public_id}/").status_code == 404
    assert logged_in(owner).get("/conversations/not-a-uuid/").status_code == 404


def test_every_page_has_a_strict_content_security_policy() -> None:
    for response in (Client().get("/accounts/login/"), logged_in(make_user()).get("/")):
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy


def test_new_conversation_without_message_redirects_to_it() -> None:
    user = make_user()
    response = logged_in(user).post("/conversations/new/")
    conversation = Conversation.objects.get(owner=user)
    assert response.status_code == 302
    assert response["Location"] == f"/conversations/{conversation.public_id}/"


def test_new_conversation_with_oversized_message_is_refused(settings: Any) -> None:
    settings.CHATSITE_MAX_MESSAGE_CHARS = 5
    user = make_user()
    response = logged_in(user).post("/conversations/new/", {"message": "far too long"})
    assert response.status_code == 400
    assert "limit is 5" in response.content.decode()
    assert not Conversation.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_stray_generations")
async def test_new_conversation_with_first_message_starts_the_answer(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["Right ", "away."]))
    user = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    response = await client.post("/conversations/new/", {"message": "Start please"})
    assert response.status_code == 302
    conversation = await Conversation.objects.aget(owner=user)
    for _ in range(200):
        answer = await Message.objects.filter(conversation=conversation, role="assistant").afirst()
        if answer is not None and answer.status != "streaming":
            break
        await asyncio.sleep(0.02)
    assert answer is not None
    assert (answer.status, answer.content) == ("complete", "Right away.")
    assert fake.completions()[-1].body["messages"] == [{"role": "user", "content": "Start please"}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_stray_generations")
async def test_new_conversation_past_the_rate_limit_is_refused_and_leaves_nothing(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_MESSAGES_PER_MINUTE = 1
    user = await sync_to_async(make_user)()
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    first = await client.post("/conversations/new/", {"message": "one"})
    assert first.status_code == 302
    second = await client.post("/conversations/new/", {"message": "two"})
    assert second.status_code == 429
    assert "1 message a minute. Try again in" in second.content.decode()
    assert "two" in second.content.decode()  # what was typed is kept in the form
    assert await Conversation.objects.acount() == 1


@pytest.mark.parametrize(
    "cursor",
    [
        "1|2026-01-01T00:00:00+00:00|99999999999999999999999",
        "0|0001-01-01T00:00:00+14:00|5",
        "0|9999-12-31T23:59:59-14:00|5",
        "0|2026-01-01T00:00:00|5",  # no offset
        "x",
        "1|2|3|4",
    ],
)
def test_a_forged_sidebar_cursor_gives_an_empty_page_not_an_error(cursor: str) -> None:
    client = logged_in(make_user())
    response = client.get("/conversations/sidebar/", {"after": cursor})
    assert response.status_code == 200


@pytest.mark.parametrize("message_id", ["1e999", "99999999999999999999999", "-3", "nan"])
def test_a_report_of_a_forged_message_id_is_a_clear_error(message_id: str) -> None:
    user = make_user()
    conversation = services.conversation_create(owner=user, model="m")
    response = logged_in(user).post(
        f"/conversations/{conversation.public_id}/report/",
        {"message_id": message_id, "category": "other"},
    )
    assert response.status_code == 422
    assert "does not exist" in response.content.decode()


def test_a_loop_of_reports_is_slowed_down() -> None:
    user = make_user()
    conversation = services.conversation_create(owner=user, model="m")
    client = logged_in(user)
    statuses = [
        client.post(
            f"/conversations/{conversation.public_id}/report/", {"category": "other"}
        ).status_code
        for _ in range(10)
    ]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    refused = client.post(f"/conversations/{conversation.public_id}/report/", {"category": "x"})
    assert "Try again in" in refused.content.decode()


def _finished_answer(user: Any) -> tuple[Conversation, Message]:
    from conversations import turn_services

    conversation = services.conversation_create(owner=user, model="m")
    turn = turn_services.turn_start(conversation=conversation, text="q", generation_channel="c")
    services.message_finalize(message_id=turn.answer.pk, content="a", status="complete")
    return conversation, turn.answer


def test_rating_an_answer_saves_it_and_answers_with_the_ratings_own_partial() -> None:
    user = make_user()
    conversation, answer = _finished_answer(user)
    client = logged_in(user)
    url = f"/conversations/{conversation.public_id}/feedback/"
    response = client.post(url, {"message_id": answer.pk, "value": "down"})
    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="rating-{answer.pk}"' in body  # the partial knows its answer
    assert f'hx-target="#rating-{answer.pk}"' in body
    assert 'aria-pressed="true" aria-label="Not helpful"' in body
    client.post(url, {"message_id": answer.pk, "value": "down", "comment": "Too long."})
    assert Message.objects.get(pk=answer.pk).feedback.comment == "Too long."
    client.post(url, {"message_id": answer.pk, "value": ""})  # taken back
    assert not Message.objects.filter(pk=answer.pk, feedback__isnull=False).exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"value": "sideways"}, "helpful or not helpful"),
        ({"value": "up", "comment": "x" * 2001}, "at most 2,000"),
    ],
)
def test_a_bad_rating_is_a_clear_error_and_saves_nothing(
    fields: dict[str, str], error: str
) -> None:
    user = make_user()
    conversation, answer = _finished_answer(user)
    response = logged_in(user).post(
        f"/conversations/{conversation.public_id}/feedback/", {"message_id": answer.pk, **fields}
    )
    assert response.status_code == 422
    assert error in response.content.decode()
    assert not Message.objects.filter(pk=answer.pk, feedback__isnull=False).exists()


def test_nobody_rates_another_users_answer() -> None:
    owner, intruder = make_user("owner"), make_user("intruder")
    conversation, answer = _finished_answer(owner)
    response = logged_in(intruder).post(
        f"/conversations/{conversation.public_id}/feedback/",
        {"message_id": answer.pk, "value": "up"},
    )
    assert response.status_code == 404
    assert not Message.objects.filter(pk=answer.pk, feedback__isnull=False).exists()
