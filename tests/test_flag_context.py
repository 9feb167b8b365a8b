"""A flag's page in admin shows the flagged answer among the turns of its own path, each
labelled with its version, inside a container admin's styles do not reach."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from conversations import services, turn_services
from conversations.models import Message
from moderation.models import Flag
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _finish(answer: Message, text: str) -> None:
    services.message_finalize(message_id=answer.pk, content=text, status="complete")


def _superuser() -> Client:
    client = Client()
    client.force_login(make_user("boss"))  # the first account: a superuser
    return client


def _flag(message: Message) -> Flag:
    return Flag.objects.create(
        conversation=message.conversation,
        message=message,
        subject=message.conversation.owner,
        source="report",
        category="misinformation",
        excerpt=message.content[:500],
    )


def _turns(page: str) -> list[str]:
    context = page[page.index('<div class="flag-context">') :]
    return re.findall(r'<article class="flag-turn[^"]*">(.*?)</article>', context, re.S)


def test_the_flagged_answer_is_shown_on_its_path_with_its_version_labelled(
    django_assert_max_num_queries: Any,
) -> None:
    client = _superuser()
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="t")
    first = turn_services.turn_start(
        conversation=conversation, text="Earlier question", generation_channel="c"
    )
    _finish(first.answer, "Earlier answer.")
    turn = turn_services.turn_start(conversation=conversation, text="Moon?", generation_channel="c")
    _finish(turn.answer, "First version: rock.")
    versions = []
    for text in ("Second version: cheese.", "Third version: dust."):
        again = turn_services.answer_retry(
            conversation=conversation, message_id=turn.answer.pk, generation_channel="c"
        )
        _finish(again, text)
        versions.append(again)
    flag = _flag(versions[0])  # the second of three
    with django_assert_max_num_queries(30):
        page = client.get(f"/admin/moderation/flag/{flag.pk}/change/").content.decode()
    turns = _turns(page)
    assert len(turns) == 3  # the answer before, the question, the flagged answer
    assert "Earlier answer." in turns[0]
    assert "Moon?" in turns[1]
    assert "Second version: cheese." in turns[2]
    assert "Version 2 of 3" in turns[2]
    assert "Flagged" in turns[2]
    assert "Version" not in turns[0] + turns[1]  # one version: nothing to say
    assert "rock" not in page  # other versions left out
    assert "Third version" not in page
    assert "chatsite/admin-flag.css" in page


def test_the_answers_markup_sits_in_a_neutral_container_and_its_next_turn_follows() -> None:
    client = _superuser()
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="t")
    turn = turn_services.turn_start(
        conversation=conversation, text="Show me", generation_channel="c"
    )
    _finish(turn.answer, "## Heading\n\n```bash\nrm -rf /\n```\n\n<b>not html</b>")
    after = turn_services.turn_start(
        conversation=conversation, text="Thanks", generation_channel="c"
    )
    _finish(after.answer, "You're welcome.")
    flag = _flag(Message.objects.get(pk=turn.answer.pk))
    page = client.get(f"/admin/moderation/flag/{flag.pk}/change/").content.decode()
    turns = _turns(page)
    assert len(turns) == 3  # the question, the flagged answer, what followed it
    assert "Thanks" in turns[2]
    assert "<h2>Heading</h2>" in turns[1]  # the site's rendering, styled by admin-flag.css
    assert "&lt;b&gt;not html&lt;/b&gt;" in turns[1]
    css = (Path(__file__).parents[1] / "static/chatsite/admin-flag.css").read_text()
    css = css.replace("\n", " ")
    assert ".flag-context .copy-button { display: none; }" in css
    assert re.search(r"\.flag-context \.flag-turn-body h2[^{]*\{[^}]*background: none", css)


def test_a_flag_on_a_whole_conversation_shows_its_first_turns() -> None:
    client = _superuser()
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="t")
    turn = turn_services.turn_start(conversation=conversation, text="Hello", generation_channel="c")
    _finish(turn.answer, "Hi there.")
    flag = Flag.objects.create(
        conversation=conversation, subject=owner, source="report", category="spam", excerpt="x"
    )
    page = client.get(f"/admin/moderation/flag/{flag.pk}/change/").content.decode()
    turns = _turns(page)
    assert ["Hello" in turns[0], "Hi there." in turns[1]] == [True, True]
    assert "flag-turn--flagged" not in page
