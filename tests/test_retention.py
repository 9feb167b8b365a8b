"""Retention: old conversations go, recent and streaming ones stay."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from conversations import services, turn_services
from conversations.models import Conversation
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _aged(title: str, days: int, *, streaming: bool = False) -> Conversation:
    owner = make_user(f"u-{title}")
    conversation = services.conversation_create(owner=owner, model="m", title=title)
    turn = turn_services.turn_start(conversation=conversation, text="hi", generation_channel="c")
    if not streaming:
        services.message_finalize(message_id=turn.answer.pk, content="ok", status="complete")
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(days=days)
    )
    return conversation


def _purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_conversations", *args, stdout=out)
    return out.getvalue()


def test_purge_deletes_only_what_is_older_than_the_retention(settings: Any) -> None:
    _aged("ancient", 400)
    _aged("recent", 10)
    _aged("ancient but answering", 400, streaming=True)
    assert "1 conversation(s) older than 365 days would be deleted" in _purge(
        "--days", "365", "--dry-run"
    )
    assert Conversation.objects.count() == 3
    settings.CHATSITE_RETENTION_DAYS = 365
    assert "1 conversation(s) older than 365 days deleted" in _purge()
    assert sorted(Conversation.objects.values_list("title", flat=True)) == [
        "ancient but answering",
        "recent",
    ]


def test_retention_off_by_default_deletes_nothing() -> None:
    _aged("ancient", 4000)
    assert "Retention is off" in _purge()
    assert Conversation.objects.count() == 1
