"""Reads are scoped to their owner."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from accounts.models import UsageEvent
from conversations import message_selectors, selectors, services, turn_services, usage_selectors
from conversations.models import Message
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_conversation_get_returns_only_the_owners_conversation() -> None:
    owner, other = make_user("owner"), make_user("other")
    conversation = services.conversation_create(owner=owner, model="m")
    assert selectors.conversation_get(user=owner, public_id=conversation.public_id) == conversation
    assert (
        selectors.conversation_get(user=owner, public_id=str(conversation.public_id))
        == conversation
    )
    assert selectors.conversation_get(user=other, public_id=conversation.public_id) is None
    assert (
        selectors.conversation_get(user=AnonymousUser(), public_id=conversation.public_id) is None
    )
    assert selectors.conversation_get(user=owner, public_id="not-a-uuid") is None
    assert selectors.conversation_get(user=owner, public_id=uuid.uuid4()) is None


def test_inactive_users_see_nothing() -> None:
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m")
    owner.is_active = False
    owner.save()
    assert selectors.conversation_get(user=owner, public_id=conversation.public_id) is None


def test_conversation_list_is_the_users_own_newest_first() -> None:
    owner, other = make_user("owner"), make_user("other")
    older = services.conversation_create(owner=owner, model="m")
    newer = services.conversation_create(owner=owner, model="m")
    services.conversation_create(owner=other, model="m")
    turn_services.turn_start(conversation=older, text="bump", generation_channel="c")  # activity
    assert list(selectors.conversation_list(user=owner)) == [older, newer]
    assert list(selectors.conversation_list(user=AnonymousUser())) == []


def test_history_for_upstream_is_earlier_turns_with_text() -> None:
    conversation = services.conversation_create(owner=make_user(), model="m")
    first = turn_services.turn_start(conversation=conversation, text="one", generation_channel="c")
    services.message_finalize(message_id=first.answer.pk, content="", status="error", error="x")
    second = turn_services.turn_start(conversation=conversation, text="two", generation_channel="c")
    history = message_selectors.message_history_for_upstream(answer_id=second.answer.pk)
    # The failed empty answer is left out; the streaming answer itself is not sent.
    assert history == [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]


def test_answer_load_is_the_owners_streaming_answers_and_nth_newest_request_in_the_window() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    for owner, status in [(alice, "streaming"), (alice, "streaming"), (alice, "complete")]:
        conversation = services.conversation_create(owner=owner, model="m")
        Message.objects.create(conversation=conversation, role="assistant", status=status)
    theirs = services.conversation_create(owner=bob, model="m")
    Message.objects.create(conversation=theirs, role="assistant", status="streaming")
    now = timezone.now()
    at = {}
    for user, kind, seconds_ago in [
        (alice, "message", 90),  # outside the minute
        (alice, "message", 50),
        (alice, "message", 30),
        (alice, "tokens", 20),  # not a request
        (alice, "message", 10),
        (bob, "message", 1),  # someone else's
    ]:
        event = UsageEvent.objects.create(user=user, kind=kind)
        at[seconds_ago] = now - timedelta(seconds=seconds_ago, microseconds=123)
        UsageEvent.objects.filter(pk=event.pk).update(at=at[seconds_ago])

    def load(nth: int) -> usage_selectors.AnswerLoad:
        return usage_selectors.user_answer_load(user_id=alice.pk, seconds=60, nth=nth)

    assert [load(n).streaming for n in (0, 1, 3)] == [2, 2, 2]
    assert load(1).nth_recent_at == at[10]
    assert load(3).nth_recent_at == at[50]  # the third newest of the last minute
    assert load(4).nth_recent_at is None  # only three in the last minute
    assert load(0).nth_recent_at is None  # no limit asked about
