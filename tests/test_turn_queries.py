"""A turn's start is one trip to the database thread that the first token waits for: its
queries are counted, so that one more does not slip in unseen."""

from __future__ import annotations

from typing import Any

import pytest

from conversations import services, turn_services
from conversations.models import Conversation
from conversations.streaming import turns
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def start(conversation: Conversation, text: str) -> turns._Prepared:
    turn = turn_services.turn_start(
        conversation=conversation, text=text, generation_channel="gen.x", client_key=text
    )
    return turns._prepare(
        turn.answer, turn.user_message, new_leaves=True, question_files=turn.has_files
    )


def test_a_turn_starts_in_eleven_queries_first_or_later(
    django_assert_max_num_queries: Any,
) -> None:
    conversation = services.conversation_create(owner=make_user(), model="fake-model")
    with django_assert_max_num_queries(11):  # BEGIN and COMMIT included
        first = start(conversation, "hello there")
    conversation.messages.filter(status="streaming").update(status="complete")
    with django_assert_max_num_queries(11):
        second = start(conversation, "and again")
    assert [m["content"] for m in second.history] == ["hello there", "and again"]
    assert first.question is not None
    assert first.question.attachments == ()
    conversation.refresh_from_db()
    assert conversation.title == "hello there"  # given on the first turn, in its update
    assert conversation.leaf_id == second.answer.message.pk


def test_a_title_written_meanwhile_is_kept() -> None:
    conversation = services.conversation_create(owner=make_user(), model="fake-model")
    Conversation.objects.filter(pk=conversation.pk).update(title="From the model")
    start(conversation, "hello there")  # `conversation` itself still has no title
    conversation.refresh_from_db()
    assert conversation.title == "From the model"
    assert conversation.leaf is not None


def test_a_resend_at_the_rate_limit_is_the_earlier_turn_not_a_refusal(settings: Any) -> None:
    # The client key is checked by the database at the message's insert, before the
    # limits: a page replaying its last send after a reconnect must not be told "too many".
    settings.CHATSITE_MESSAGES_PER_MINUTE = 1
    conversation = services.conversation_create(owner=make_user(), model="fake-model")
    first = turn_services.turn_start(
        conversation=conversation, text="once", generation_channel="gen.x", client_key="k"
    )
    conversation.messages.filter(status="streaming").update(status="complete")
    again = turn_services.turn_start(
        conversation=conversation, text="once", generation_channel="gen.y", client_key="k"
    )
    assert not again.created
    assert (again.user_message.pk, again.answer.pk) == (first.user_message.pk, first.answer.pk)
    with pytest.raises(services.RateLimited):
        turn_services.turn_start(
            conversation=conversation, text="another", generation_channel="gen.z", client_key="k2"
        )
