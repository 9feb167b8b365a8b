"""Versions of a turn: regenerate and edit keep earlier versions, the path the reader sees
is what goes upstream, and the conversation remembers it."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from conversations import message_selectors, services, turn_services
from conversations.models import Conversation, Message
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _answer(turn_or_answer: turn_services.Turn | Message, text: str) -> Message:
    answer = (
        turn_or_answer.answer if isinstance(turn_or_answer, turn_services.Turn) else turn_or_answer
    )
    done = services.message_finalize(message_id=answer.pk, content=text, status="complete")
    assert done is not None
    return done


def _seen(conversation: Conversation) -> list[tuple[str, str, str]]:
    return [
        (m.message.role, m.message.content, f"{m.versions.number}/{m.versions.count}")
        for m in message_selectors.message_list(conversation=conversation)
    ]


def _fresh(conversation: Conversation) -> Conversation:
    return Conversation.objects.get(pk=conversation.pk)


@pytest.fixture
def chat() -> Conversation:
    conversation = services.conversation_create(owner=make_user(), model="m")
    first = turn_services.turn_start(conversation=conversation, text="q1", generation_channel="c")
    _answer(first, "a1")
    second = turn_services.turn_start(conversation=conversation, text="q2", generation_channel="c")
    _answer(second, "a2")
    return conversation


def test_regenerate_keeps_the_earlier_answer_as_a_version(chat: Conversation) -> None:
    a2 = message_selectors.message_list(conversation=chat)[-1].message
    again = turn_services.answer_retry(conversation=chat, message_id=a2.pk, generation_channel="c")
    _answer(again, "a2 bis")
    assert _seen(_fresh(chat)) == [
        ("user", "q1", "1/1"),
        ("assistant", "a1", "1/1"),
        ("user", "q2", "1/1"),
        ("assistant", "a2 bis", "2/2"),
    ]
    # Flip back: the first version is shown, and that is remembered (a reload, a new tab).
    services.conversation_show_version(conversation=_fresh(chat), message_id=a2.pk)
    assert _seen(_fresh(chat))[-1] == ("assistant", "a2", "1/2")


def test_regenerating_an_earlier_answer_branches_and_keeps_the_later_turns(
    chat: Conversation,
) -> None:
    a1 = message_selectors.message_list(conversation=chat)[1].message
    again = turn_services.answer_retry(conversation=chat, message_id=a1.pk, generation_channel="c")
    _answer(again, "a1 bis")
    assert _seen(_fresh(chat)) == [("user", "q1", "1/1"), ("assistant", "a1 bis", "2/2")]
    services.conversation_show_version(conversation=_fresh(chat), message_id=a1.pk)
    # Back on the first version, the turns that followed it are there again.
    assert [text for _, text, _ in _seen(_fresh(chat))] == ["q1", "a1", "q2", "a2"]


def test_what_goes_upstream_is_the_path_the_reader_sees(chat: Conversation) -> None:
    q2 = message_selectors.message_list(conversation=chat)[2].message
    edited = turn_services.turn_start(
        conversation=chat, text="q2 edited", generation_channel="c", edit_of=q2.pk
    )
    assert message_selectors.message_history_for_upstream(answer_id=edited.answer.pk) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2 edited"},
    ]
    _answer(edited, "a2 for the edit")
    assert _seen(_fresh(chat))[2:] == [
        ("user", "q2 edited", "2/2"),
        ("assistant", "a2 for the edit", "1/1"),
    ]
    # A new message follows the path shown, whichever version that is.
    services.conversation_show_version(conversation=_fresh(chat), message_id=q2.pk)
    third = turn_services.turn_start(conversation=_fresh(chat), text="q3", generation_channel="c")
    assert [
        m["content"]
        for m in message_selectors.message_history_for_upstream(answer_id=third.answer.pk)
    ] == ["q1", "a1", "q2", "a2", "q3"]


def test_the_system_prompt_goes_first(chat: Conversation) -> None:
    Conversation.objects.filter(pk=chat.pk).update(system_prompt="Answer in French.")
    turn = turn_services.turn_start(conversation=_fresh(chat), text="q3", generation_channel="c")
    history = message_selectors.message_history_for_upstream(answer_id=turn.answer.pk)
    assert history[0] == {"role": "system", "content": "Answer in French."}


def test_stopped_and_failed_answers_are_versions_too(chat: Conversation) -> None:
    a2 = message_selectors.message_list(conversation=chat)[-1].message
    again = turn_services.answer_retry(conversation=chat, message_id=a2.pk, generation_channel="c")
    services.message_finalize(message_id=again.pk, content="half", status="stopped")
    third = turn_services.answer_retry(
        conversation=chat, message_id=again.pk, generation_channel="c"
    )
    services.message_finalize(message_id=third.pk, content="", status="error", error="down")
    last = message_selectors.message_list(conversation=_fresh(chat))[-1]
    assert (last.message.status, last.versions.number, last.versions.count) == ("error", 3, 3)


def test_regenerate_edit_and_switch_are_refused_while_an_answer_streams(
    chat: Conversation,
) -> None:
    path = [item.message for item in message_selectors.message_list(conversation=chat)]
    turn_services.answer_retry(conversation=chat, message_id=path[-1].pk, generation_channel="c")
    count = Message.objects.count()
    with pytest.raises(services.ConversationBusy):
        turn_services.answer_retry(conversation=chat, message_id=path[1].pk, generation_channel="c")
    with pytest.raises(services.ConversationBusy):
        turn_services.turn_start(
            conversation=chat, text="x", generation_channel="c", edit_of=path[2].pk
        )
    with pytest.raises(services.VersionRefused, match="still being written"):
        services.conversation_show_version(conversation=chat, message_id=path[-1].pk)
    assert Message.objects.count() == count


def test_versions_of_another_conversation_are_not_found(chat: Conversation) -> None:
    other = services.conversation_create(owner=make_user("other"), model="m")
    theirs = turn_services.turn_start(conversation=other, text="secret", generation_channel="c")
    _answer(theirs, "hidden")
    leaf_before = _fresh(chat).leaf_id
    with pytest.raises(services.VersionRefused, match="does not exist"):
        services.conversation_show_version(conversation=chat, message_id=theirs.answer.pk)
    with pytest.raises(services.NotRetryable):
        turn_services.answer_retry(
            conversation=chat, message_id=theirs.answer.pk, generation_channel="c"
        )
    with pytest.raises(services.NotRetryable):
        turn_services.turn_start(
            conversation=chat, text="x", generation_channel="c", edit_of=theirs.user_message.pk
        )
    with pytest.raises(ValidationError):
        turn_services.turn_start(conversation=chat, text=" ", generation_channel="c", edit_of=1)
    assert _fresh(chat).leaf_id == leaf_before
    assert Message.objects.filter(conversation=other).count() == 2


def test_old_linear_conversations_become_paths(chat: Conversation) -> None:
    # A conversation from before versions has no remembered path: the newest is shown.
    Conversation.objects.filter(pk=chat.pk).update(leaf=None)
    assert [text for _, text, _ in _seen(_fresh(chat))] == ["q1", "a1", "q2", "a2"]
