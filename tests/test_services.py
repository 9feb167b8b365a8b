"""Writes: accounts, turns, checkpoints and final states, and the database invariants."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from conversations import services, turn_services
from conversations.models import Message
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_first_account_becomes_superuser_and_later_ones_do_not() -> None:
    first = make_user("first")
    second = make_user("second")
    assert first.is_superuser
    assert first.is_staff
    assert not second.is_superuser
    assert not second.is_staff


def test_once_every_account_is_deleted_the_next_one_is_not_a_superuser() -> None:
    make_user("first")
    get_user_model().objects.all().delete()
    later = make_user("later")
    assert not later.is_superuser
    assert not later.is_staff


def test_turn_start_saves_user_message_and_streaming_answer() -> None:
    user = make_user()
    conversation = services.conversation_create(owner=user, model="m1")
    turn = turn_services.turn_start(
        conversation=conversation, text="Hello\nthere", generation_channel="c1"
    )
    assert turn.user_message.content == "Hello\nthere"
    assert turn.user_message.role == "user"
    assert turn.answer.status == "streaming"
    assert turn.answer.model == "m1"
    assert turn.answer.generation_channel == "c1"
    conversation.refresh_from_db()
    assert conversation.title == "Hello there"


@pytest.mark.parametrize("text", ["", "   ", "\n\t", None, 5])
def test_turn_start_refuses_empty_or_non_text_and_saves_nothing(text: object) -> None:
    conversation = services.conversation_create(owner=make_user(), model="m")
    with pytest.raises(ValidationError):
        turn_services.turn_start(conversation=conversation, text=text, generation_channel="c")  # type: ignore[arg-type]
    assert not conversation.messages.exists()


def test_turn_start_refuses_oversized_messages(settings: object) -> None:
    settings.CHATSITE_MAX_MESSAGE_CHARS = 10  # type: ignore[attr-defined]
    conversation = services.conversation_create(owner=make_user(), model="m")
    with pytest.raises(ValidationError, match="limit is 10"):
        turn_services.turn_start(conversation=conversation, text="x" * 11, generation_channel="c")
    turn_services.turn_start(conversation=conversation, text="x" * 10, generation_channel="c")


def test_turn_start_refuses_while_an_answer_streams() -> None:
    conversation = services.conversation_create(owner=make_user(), model="m")
    turn_services.turn_start(conversation=conversation, text="one", generation_channel="c")
    with pytest.raises(services.ConversationBusy):
        turn_services.turn_start(conversation=conversation, text="two", generation_channel="c")
    assert conversation.messages.count() == 2


def test_database_allows_one_streaming_answer_per_conversation() -> None:
    conversation = services.conversation_create(owner=make_user(), model="m")
    Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, role="assistant", status="streaming")


def test_database_rejects_unknown_statuses_and_living_user_messages() -> None:
    conversation = services.conversation_create(owner=make_user(), model="m")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, role="assistant", status="thinking")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, role="user", status="streaming")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, role="wizard")


def test_checkpoint_saves_text_only_while_streaming() -> None:
    conversation = services.conversation_create(owner=make_user(), model="m")
    turn = turn_services.turn_start(conversation=conversation, text="q", generation_channel="c")
    assert services.message_checkpoint(message_id=turn.answer.pk, content="partial")
    turn.answer.refresh_from_db()
    assert turn.answer.content == "partial"
    services.message_finalize(
        message_id=turn.answer.pk, content="partial and more", status="stopped"
    )
    # A late checkpoint never overwrites a final answer.
    assert not services.message_checkpoint(message_id=turn.answer.pk, content="stale")
    turn.answer.refresh_from_db()
    assert (turn.answer.content, turn.answer.status) == ("partial and more", "stopped")


def test_finalize_happens_once_and_frees_the_conversation() -> None:
    conversation = services.conversation_create(owner=make_user(), model="m")
    turn = turn_services.turn_start(conversation=conversation, text="q", generation_channel="c")
    done = services.message_finalize(
        message_id=turn.answer.pk,
        content="answer",
        status="complete",
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=1,
        total_tokens=4,
    )
    assert done is not None
    assert done.status == "complete"
    assert done.completed_at is not None
    assert done.generation_channel == ""
    assert services.message_finalize(message_id=turn.answer.pk, content="x", status="error") is None
    done.refresh_from_db()
    assert done.content == "answer"
    turn_services.turn_start(conversation=conversation, text="next", generation_channel="c2")


def test_finalize_refuses_a_non_final_status() -> None:
    with pytest.raises(ValueError, match="not a final status"):
        services.message_finalize(message_id=1, content="", status="streaming")
