"""Reads are scoped to their owner."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser

from conversations import message_selectors, selectors, services, turn_services
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
