"""Rename, pin, archive and delete a conversation; other users' ids are 404s."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client

from conversations import selectors, services
from conversations.models import Conversation, Message
from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.test_consumers import conversation_for

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_rename_keeps_the_users_title_and_refuses_empty_or_long_ones() -> None:
    user = make_user()
    conversation = services.conversation_create(owner=user, model="m", title="Old")
    client = client_for(user)
    url = f"/conversations/{conversation.public_id}/rename/"
    ok = client.post(url, {"title": "  My   own title "}, HTTP_HX_REQUEST="true")
    assert ok.status_code == 200
    assert '<h1 id="conversation-title" class="chat-title">My own title</h1>' in ok.content.decode()
    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_source) == ("My own title", "user")
    for bad, message in (("   ", "cannot be empty"), ("x" * 121, "at most 120")):
        refused = client.post(url, {"title": bad}, HTTP_HX_REQUEST="true")
        assert refused.status_code == 422
        assert message in refused.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "My own title"


def test_rename_and_instructions_work_without_htmx_and_keep_what_was_typed() -> None:
    # A form submitted before htmx took it over (a swap not yet settled, a slow script)
    # posts natively: the user gets the page back, never a bare fragment or a lost edit.
    user = make_user()
    conversation = services.conversation_create(owner=user, model="m", title="Old")
    client = client_for(user)
    page = f"/conversations/{conversation.public_id}/"
    renamed = client.post(f"{page}rename/", {"title": "Typed fast"})
    assert (renamed.status_code, renamed["Location"]) == (303, page)
    assert (
        '<h1 id="conversation-title" class="chat-title">Typed fast</h1>'
        in client.get(page).content.decode()
    )
    refused = client.post(f"{page}rename/", {"title": "x" * 121})
    body = refused.content.decode()
    assert refused.status_code == 422
    assert "<html" in body
    assert "at most 120" in body
    assert 'value="' + "x" * 121 in body
    saved = client.post(f"{page}configure/", {"system_prompt": "Be brief."})
    assert (saved.status_code, saved["Location"]) == (303, page)
    too_long = client.post(f"{page}configure/", {"system_prompt": "x" * 9000})
    assert too_long.status_code == 422
    assert "<html" in too_long.content.decode()
    assert "the limit is" in too_long.content.decode()
    conversation.refresh_from_db()
    assert (conversation.title, conversation.system_prompt) == ("Typed fast", "Be brief.")


def test_pin_puts_first_and_archive_hides_from_the_list() -> None:
    user = make_user()
    first = services.conversation_create(owner=user, model="m", title="First")
    second = services.conversation_create(owner=user, model="m", title="Second")
    client = client_for(user)
    client.post(f"/conversations/{first.public_id}/flags/", {"pinned": "1"})
    assert list(selectors.conversation_list(user=user)) == [first, second]
    client.post(f"/conversations/{second.public_id}/flags/", {"archived": "1"})
    assert list(selectors.conversation_list(user=user)) == [first]
    assert list(selectors.conversation_list(user=user, archived=True)) == [second]
    assert "Second" in client.get("/?archived=1").content.decode()
    assert "Second" not in client.get("/").content.decode()
    client.post(f"/conversations/{second.public_id}/flags/", {"archived": "0"})
    assert list(selectors.conversation_list(user=user)) == [first, second]


@pytest.mark.parametrize("action", ["rename", "flags", "delete"])
def test_other_users_ids_are_404_and_change_nothing(action: str) -> None:
    owner, intruder = make_user("owner"), make_user("intruder")
    conversation = services.conversation_create(owner=owner, model="m", title="Private")
    response = client_for(intruder).post(
        f"/conversations/{conversation.public_id}/{action}/",
        {"title": "pwned", "pinned": "1", "archived": "1"},
    )
    assert response.status_code == 404
    conversation.refresh_from_db()
    assert (conversation.title, conversation.pinned, conversation.archived) == (
        "Private",
        False,
        False,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_stray_generations")
async def test_delete_stops_the_answer_first_and_other_tabs_see_it_gone(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream([f"w{i} " for i in range(500)], interval=0.02))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, tab = await open_socket(conversation, user)
    await tab.send_json({"action": "send", "message": "long"})
    log = await fake.await_request()
    while log.chunks_sent < 5:
        await asyncio.sleep(0.02)
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    response = await client.post(
        f"/conversations/{conversation.public_id}/delete/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/"
    assert await log.await_closed(1.0)  # the answer was stopped, the upstream hung up on
    gone = await tab.receive_until(lambda f: "This conversation was deleted." in f)
    assert 'id="messages"' in gone
    assert await tab.communicator.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": 4404,
    }
    assert not await Conversation.objects.filter(pk=conversation.pk).aexists()
    assert not await Message.objects.filter(conversation_id=conversation.pk).aexists()


def test_the_sidebar_pages_through_every_conversation_once_in_order() -> None:
    import re

    user, other = make_user("owner"), make_user("other")
    for i in range(70):
        services.conversation_create(owner=user, model="m", title=f"Chat {i:02d}")
    services.conversation_create(owner=other, model="m", title="Not yours")
    pinned = Conversation.objects.get(title="Chat 05")
    services.conversation_set_flags(conversation=pinned, pinned=True)
    client = client_for(user)
    page = client.get(f"/conversations/{pinned.public_id}/").content.decode()
    seen = re.findall(r'id="nav-title-[^"]+"[^>]*>([^<]+)<', page)
    assert len(seen) == 30
    while (more := re.search(r'hx-get="(/conversations/sidebar/\?[^"]+)"', page)) is not None:
        page = client.get(more.group(1).replace("&amp;", "&")).content.decode()
        seen += re.findall(r'id="nav-title-[^"]+"[^>]*>([^<]+)<', page)
    expected = ["Chat 05"] + [f"Chat {i:02d}" for i in range(69, -1, -1) if i != 5]
    assert seen == expected
    assert client.get("/conversations/sidebar/?after=garbage").content.decode().strip() == ""
