"""Migrations bring existing data along: linear conversations become paths of versions and
the search index is built for rows written before it existed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from conversations import message_selectors, selectors
from conversations.models import Conversation
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("conversations", "0004_pin_archive")]


def _migrate(targets: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def test_old_conversations_get_paths_and_a_search_index() -> None:
    user = make_user("old-timer")
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()  # every app: moderation too
    executor = _migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps
        OldConversation = old.get_model("conversations", "Conversation")
        OldMessage = old.get_model("conversations", "Message")
        conversation = OldConversation.objects.create(
            owner_id=user.pk, model="m", title="Greenhouse"
        )

        def say(role: str, text: str, reply_to=None):
            return OldMessage.objects.create(
                conversation=conversation, role=role, content=text, reply_to=reply_to
            )

        q1 = say("user", "how warm for tomatoes")
        say("assistant", "failed try", q1)
        say("assistant", "about twenty degrees", q1)  # a retry: the turn's latest answer
        q2 = say("user", "and cucumbers")
        say("assistant", "a little warmer", q2)
    finally:
        _migrate(latest)

    migrated = Conversation.objects.get(title="Greenhouse")
    path = message_selectors.message_list(conversation=migrated)
    assert [m.message.content for m in path] == [
        "how warm for tomatoes",
        "about twenty degrees",
        "and cucumbers",
        "a little warmer",
    ]
    assert [m.versions.count for m in path] == [1, 2, 1, 1]
    assert [r.title for r in selectors.conversation_search(user=user, query="cucumb")] == [
        "Greenhouse"
    ]
    assert [r.title for r in selectors.conversation_search(user=user, query="greenhouse")] == [
        "Greenhouse"
    ]


def test_answers_streaming_at_the_migration_are_indexed_when_they_end() -> None:
    from conversations import services

    user = make_user("mid-answer")
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    before = [("conversations", "0013_shared_attachment")]
    executor = _migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        conversation = old.get_model("conversations", "Conversation").objects.create(
            owner_id=user.pk, model="m", title="Orchard"
        )
        OldMessage = old.get_model("conversations", "Message")
        question = OldMessage.objects.create(
            conversation=conversation, role="user", content="which fruit"
        )
        answer = OldMessage.objects.create(
            conversation=conversation,
            role="assistant",
            status="streaming",
            content="a medlar, half",
            parent=question,
        )
    finally:
        _migrate(latest)

    def found(word: str) -> list[str]:
        return [r.title for r in selectors.conversation_search(user=user, query=word)]

    assert found("which") == ["Orchard"]
    assert found("medlar") == []  # streaming: indexed when it ends
    services.message_finalize(message_id=answer.pk, content="a medlar, ripe", status="complete")
    assert found("medlar") == ["Orchard"]
    assert found("half") == []
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:  # raises if the index and the text disagree
            cursor.execute(
                "INSERT INTO conversations_message_fts(conversations_message_fts, rank)"
                " VALUES ('integrity-check', 1)"
            )
