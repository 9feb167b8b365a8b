"""Admin list pages cost a bounded number of queries at 10,000 conversations, and their
filters and search work."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from conversations.models import Conversation, Message
from moderation.models import Flag
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_site() -> Client:
    boss = make_user("boss")
    owners = [make_user(f"user{n}") for n in range(20)]
    Conversation.objects.bulk_create(
        [
            Conversation(owner=owners[n % 20], model=f"model-{n % 4}", title=f"Chat number {n}")
            for n in range(10_000)
        ],
        batch_size=2000,
    )
    first = Conversation.objects.order_by("id")[:300]
    Message.objects.bulk_create(
        [Message(conversation=c, role="user", content=f"about zebras {c.pk}") for c in first]
    )
    flagged = Conversation.objects.get(title="Chat number 7")
    Flag.objects.create(conversation=flagged, subject=flagged.owner, source="report", category="x")
    client = Client()
    client.force_login(boss)
    return client


PAGES = [
    "/admin/conversations/conversation/",
    "/admin/conversations/message/",
    "/admin/moderation/flag/",
    "/admin/conversations/conversation/?model=model-1&flagged=none",
    "/admin/conversations/message/?role=user&flagged=any",
]


def test_list_pages_use_a_bounded_number_of_queries(
    big_site: Client, django_assert_max_num_queries: Any
) -> None:
    for page in PAGES:  # one site of 10,000 conversations for all of them
        with django_assert_max_num_queries(15):
            assert big_site.get(page).status_code == 200


def test_filters_and_search_by_user_and_title(big_site: Client) -> None:
    flagged = big_site.get("/admin/conversations/conversation/?flagged=open").content.decode()
    assert "Chat number 7<" in flagged
    assert "Chat number 8<" not in flagged
    by_title = big_site.get("/admin/conversations/conversation/?q=number+9999").content.decode()
    assert "Chat number 9999" in by_title
    by_user = big_site.get("/admin/conversations/conversation/?q=user19").content.decode()
    assert "Chat number 9999<" in by_user  # user19's newest
    assert "Chat number 9998<" not in by_user
    by_text = big_site.get("/admin/conversations/conversation/?q=zebras").content.decode()
    assert "Chat number 299<" not in by_text  # message text: its own page, asks for a reason
