"""The hand-built fragments of conversations/fragments.py (the hot growing-answer frame, and
a few one-liners) name elements by id: each of those ids must be one the page's template
renders, or a frame would silently update nothing."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from conversations import fragments, message_selectors, services, turn_services
from conversations.growing import GrowingBlock
from conversations.models import Conversation, Message
from conversations.rendering import render
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

ID = re.compile(r'\bid="([^"]+)"')
TARGET = re.compile(r'hx-swap-oob="[a-z]+:#([^"]+)"')


def ids(html: str) -> set[str]:
    return set(ID.findall(html))


def targets(html: str) -> set[str]:
    """Ids a fragment writes to: its own top-level ids and the targets it names."""
    return ids(html) | set(TARGET.findall(html))


@pytest.fixture
def streaming() -> tuple[Client, Conversation, Message]:
    user = make_user()
    conversation = services.conversation_create(owner=user, model="m", title="Ids")
    turn = turn_services.turn_start(conversation=conversation, text="hi", generation_channel="c")
    client = Client()
    client.force_login(user)
    return client, conversation, turn.answer


def test_the_growing_answer_frame_writes_only_to_ids_the_page_has(
    streaming: tuple[Client, Conversation, Message],
) -> None:
    client, conversation, answer = streaming
    page = ids(client.get(f"/conversations/{conversation.public_id}/").content.decode())
    growing = GrowingBlock(key=f"message-{answer.pk}-live")
    growth = fragments.answer_growth_html(
        answer.pk, render("A finished paragraph.\n\n"), growing.restart("growing "), whole=True
    )
    # The next frame inserts before the live element the first one made, and deletes it.
    tail_html, whole = growing.grow("growing more")
    assert not whole
    more = fragments.answer_growth_html(answer.pk, "", tail_html, whole=False)
    note = fragments.message_note_html(answer.pk, "Retrying in 2 s")
    live = f"message-{answer.pk}-live-1"  # made by the frame itself, inside the tail
    written = (targets(growth) | targets(note)) - {live}
    assert {f"message-{answer.pk}-blocks", f"message-{answer.pk}-tail"} <= written
    assert written - {"announcer"} <= page
    assert set(TARGET.findall(more)) == {live}
    assert live in ids(growth)
    assert "announcer" in page  # the live region finished blocks are announced in


def test_conversation_and_sidebar_frames_write_only_to_ids_the_page_has(
    streaming: tuple[Client, Conversation, Message],
) -> None:
    client, conversation, _ = streaming
    page = ids(client.get(f"/conversations/{conversation.public_id}/").content.decode())
    home = ids(client.get("/").content.decode())
    for html in (
        fragments.conversation_header_html(conversation),
        fragments.session_end_html("bye"),
        fragments.conversation_gone_html(),
    ):
        assert targets(html) <= page, html
    for html in (fragments.nav_title_html(conversation), fragments.nav_gone_html(conversation)):
        assert targets(html) <= page, html
        assert targets(html) <= home, html  # the home page lists it with the same partial


def test_a_snapshot_renders_the_same_ids_as_the_page(
    streaming: tuple[Client, Conversation, Message],
) -> None:
    client, conversation, answer = streaming
    page = ids(client.get(f"/conversations/{conversation.public_id}/").content.decode())
    view = message_selectors.message_view(message=answer)
    snapshot = fragments.message_html(
        message_selectors.MessageView(view.message, view.versions, ("done\n\n", "tail")), note="n"
    )
    assert ids(snapshot) <= page
