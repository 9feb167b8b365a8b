"""Every open tab of a user learns when any of their conversations is answering, and its title."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.test_consumers import conversation_for, final_frame
from tests.test_titles import completion

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]


async def test_other_tabs_of_the_owner_see_the_live_marker_and_the_new_title(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["Some ", "answer."], interval=0.05))
    fake.enqueue_plain(completion("Named Elsewhere"))
    user = await sync_to_async(make_user)()
    stranger = await sync_to_async(make_user)("stranger")
    answering, other = await conversation_for(user), await conversation_for(user)
    strangers = await conversation_for(stranger)
    _, tab = await open_socket(answering, user)
    _, elsewhere = await open_socket(other, user)  # a tab on another conversation
    _, outsider = await open_socket(strangers, stranger)
    await outsider.receive_until(lambda f: "composer-controls" in f)

    await tab.send_json({"action": "send", "message": "hello"})
    marker = f'id="nav-live-{answering.public_id}"'
    on = await elsewhere.receive_until(lambda f: marker in f and 'data-live="true"' in f)
    assert "data-user-frame" in on
    await tab.receive_until(final_frame)
    await elsewhere.receive_until(lambda f: marker in f and 'data-live="false"' in f)
    title = await elsewhere.receive_until(lambda f: f"nav-title-{answering.public_id}" in f)
    assert "Named Elsewhere" in title
    assert 'id="conversation-title"' not in title  # that tab's header is its own conversation

    # Nothing about one user's conversations reaches another user's socket.
    assert await outsider.communicator.receive_nothing(timeout=0.3)
    assert all(str(answering.public_id) not in f for f in outsider.frames)
    for socket in (tab, elsewhere, outsider):
        await socket.close()


async def test_the_home_page_socket_hears_the_users_conversations_and_no_one_elses(
    fake: FakeUpstream,
) -> None:
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application
    from tests.conftest import HOST, ORIGIN, session_cookie

    fake.enqueue(Stream(["Some ", "answer."], interval=0.05))
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)

    anonymous = WebsocketCommunicator(
        application, "/ws/me/", headers=[(b"origin", ORIGIN), (b"host", HOST)]
    )
    assert not (await anonymous.connect())[0]
    home = WebsocketCommunicator(
        application,
        "/ws/me/",
        headers=[
            (b"origin", ORIGIN),
            (b"host", HOST),
            (b"cookie", await sync_to_async(session_cookie)(user)),
        ],
    )
    assert (await home.connect())[0]

    _, tab = await open_socket(conversation, user)
    await tab.send_json({"action": "send", "message": "hello"})
    frame = await home.receive_from(timeout=5)
    assert f'id="nav-live-{conversation.public_id}"' in frame
    assert 'data-live="true"' in frame
    await tab.receive_until(final_frame)
    await home.disconnect()
    await tab.close()
