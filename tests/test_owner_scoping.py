"""Every route, tried by someone who does not own the data: a 404 (or an empty result),
never data, and nothing changes. Anonymous visitors are sent to sign in."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations import services, turn_services
from conversations.models import Conversation, Message
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

CONVERSATION_ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("get", "/conversations/{id}/", {}),
    ("get", "/conversations/{id}/export.json", {}),
    ("get", "/conversations/{id}/export.md", {}),
    ("post", "/conversations/{id}/rename/", {"title": "owned"}),
    ("post", "/conversations/{id}/flags/", {"pinned": "1", "archived": "1"}),
    ("post", "/conversations/{id}/configure/", {"system_prompt": "pwned"}),
    ("post", "/conversations/{id}/delete/", {}),
]
USER_ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("get", "/", {}),
    ("get", "/search/?q=secret", {}),
    ("get", "/settings/", {}),
    ("get", "/settings/export.zip", {}),
    ("get", "/conversations/sidebar/", {}),
]


@pytest.fixture
def victim() -> Conversation:
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="secret plans")
    turn = turn_services.turn_start(
        conversation=conversation, text="secret words", generation_channel="c"
    )
    services.message_finalize(message_id=turn.answer.pk, content="secret answer", status="complete")
    return Conversation.objects.get(pk=conversation.pk)


def _state() -> list[tuple[object, ...]]:
    conversations = list(
        Conversation.objects.values_list("title", "pinned", "archived", "system_prompt", "model")
    )
    return [*conversations, *Message.objects.values_list("content", "status")]


@pytest.mark.parametrize(("method", "url", "data"), CONVERSATION_ROUTES)
def test_another_users_conversation_is_a_404_and_unchanged(
    victim: Conversation, method: str, url: str, data: dict[str, str]
) -> None:
    client = Client()
    client.force_login(make_user("mallory"))
    before = _state()
    response = getattr(client, method)(url.format(id=victim.public_id), data)
    assert response.status_code == 404
    assert b"secret" not in response.content
    assert _state() == before


@pytest.mark.parametrize(("method", "url", "data"), USER_ROUTES)
def test_user_wide_routes_show_only_the_users_own_data(
    victim: Conversation, method: str, url: str, data: dict[str, str]
) -> None:
    client = Client()
    client.force_login(make_user("mallory"))
    response = getattr(client, method)(url, data)
    assert response.status_code == 200
    if not response.streaming:  # the zip's contents: tests/test_portability.py
        for text in (b"secret plans", b"secret words", b"secret answer"):
            assert text not in response.content


@pytest.mark.parametrize(
    ("method", "url", "data"),
    [*CONVERSATION_ROUTES, *USER_ROUTES, ("post", "/settings/import/", {})],
)
def test_anonymous_visitors_are_sent_to_sign_in(
    victim: Conversation, method: str, url: str, data: dict[str, str]
) -> None:
    before = _state()
    response = getattr(Client(), method)(url.format(id=victim.public_id), data)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert _state() == before
