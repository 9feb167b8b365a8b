"""The chunk log (CHATSITE_CHUNK_LOG): an answer's raw upstream body with arrival times,
bounded, shown only to superusers in admin (each viewing in the access log), and gone
with its conversation."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from conversations import services, turn_services
from conversations.models import ChunkLog, Conversation, Message
from moderation.models import AccessLog
from tests.conftest import make_user, open_socket
from tests.fake_openai import Error, FakeUpstream, Stream
from tests.test_consumers import answer, conversation_for, final_frame

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]


async def ask(fake: FakeUpstream, text: str = "hello?") -> Message:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": text})
    await socket.receive_until(final_frame)
    await socket.close()
    return await answer(conversation)


async def saved_log(message: Message) -> ChunkLog:
    return await ChunkLog.objects.aget(message=message)


def contents(chunk_log: ChunkLog) -> list[str]:
    """The text pieces, parsed back out of the raw body as kept."""
    body = "".join(e["data"] for e in chunk_log.entries if "data" in e)
    pieces = []
    for event in body.split("\n\n"):
        data = event.removeprefix("data: ")
        if event.startswith("data: ") and data != "[DONE]":
            for choice in json.loads(data).get("choices", []):
                pieces.append(choice.get("delta", {}).get("content") or "")
    return [p for p in pieces if p]


async def test_with_the_chunk_log_on_the_raw_body_is_kept_with_its_arrival_times(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_CHUNK_LOG = True
    fake.enqueue(Stream(["Hello", ", ", "world", "!"], interval=0.1))
    message = await ask(fake)
    assert (message.status, message.content) == ("complete", "Hello, world!")
    chunk_log = await saved_log(message)
    first = chunk_log.entries[0]
    assert first["request"] == message.upstream_request_id != ""
    assert contents(chunk_log) == ["Hello", ", ", "world", "!"]
    assert "data: [DONE]" in chunk_log.entries[-1]["data"]
    times = [e["t"] for e in chunk_log.entries]
    assert times == sorted(times)
    assert times[-1] - times[1] >= 0.25  # four pieces 0.1 s apart: the arrival times are real
    assert chunk_log.size == sum(len(e["data"].encode()) for e in chunk_log.entries if "data" in e)
    assert not chunk_log.truncated


async def test_the_chunk_log_is_off_by_default(fake: FakeUpstream) -> None:
    message = await ask(fake)
    assert message.status == "complete"
    assert not await ChunkLog.objects.filter(message=message).aexists()


async def test_the_chunk_log_keeps_at_most_its_bound_and_says_so(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_CHUNK_LOG = True
    settings.CHATSITE_CHUNK_LOG_MAX_BYTES = 300
    fake.enqueue(Stream([f"word{i} " for i in range(40)]))
    message = await ask(fake)
    assert message.status == "complete"
    assert message.content.count("word") == 40  # the answer itself is whole
    chunk_log = await saved_log(message)
    assert chunk_log.size == 300
    assert chunk_log.truncated


async def test_a_retried_request_is_logged_with_its_error(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_CHUNK_LOG = True
    settings.CHATSITE_RETRY_BASE_DELAY = 0.01
    fake.enqueue(Error(503), Stream(["fine"]))
    message = await ask(fake)
    assert message.content == "fine"
    chunk_log = await saved_log(message)
    requests = [e for e in chunk_log.entries if "request" in e]
    errors = [e for e in chunk_log.entries if "error" in e]
    assert len(requests) == 2
    assert len(errors) == 1
    assert "unavailable" in errors[0]["error"]
    assert requests[1]["request"] == message.upstream_request_id


def _logged_answer() -> Message:
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="Diary")
    turn = turn_services.turn_start(conversation=conversation, text="hi", generation_channel="c")
    services.message_finalize(message_id=turn.answer.pk, content="<b>bold</b>", status="complete")
    services.message_chunk_log_save(
        message_id=turn.answer.pk,
        entries=[
            {"t": 0.0, "request": "req_77"},
            {
                "t": 0.5,
                "data": 'data: {"choices":[{"delta":{"content":"<script>x</script>"}}]}\n\n',
            },
        ],
        size=64,
        truncated=False,
    )
    return turn.answer


@pytest.mark.django_db
def test_superusers_see_the_chunk_log_in_admin_and_each_viewing_is_recorded() -> None:
    boss = Client()
    boss.force_login(make_user("boss"))  # the first account: a superuser
    message = _logged_answer()
    url = f"/admin/conversations/message/{message.pk}/change/"
    asked = boss.get(url).content.decode()
    assert "req_77" not in asked  # the reason comes first, as for the text itself
    boss.post(url.replace("/change/", "/reason/"), {"access_reason": "Ticket 9: broken answer"})
    before = AccessLog.objects.count()
    page = boss.get(url).content.decode()
    assert "Chunk log" in page
    assert "req_77" in page
    assert "0.500 s" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page  # raw model text is never live HTML
    assert "<script>x</script>" not in page
    entry = AccessLog.objects.order_by("-pk").first()
    assert AccessLog.objects.count() == before + 1
    assert entry is not None
    assert f"Chunk log of message #{message.pk}" in entry.reason
    assert entry.conversation_id == message.conversation_id


@pytest.mark.django_db
def test_staff_who_are_not_superusers_never_see_the_chunk_log() -> None:
    make_user("boss")
    message = _logged_answer()
    staff = make_user("staffer")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_message"))
    client = Client()
    client.force_login(staff)
    url = f"/admin/conversations/message/{message.pk}/change/"
    client.post(url.replace("/change/", "/reason/"), {"access_reason": "Ticket 10"})
    page = client.get(url)
    assert page.status_code == 200
    assert "req_77" not in page.content.decode()
    assert not AccessLog.objects.filter(reason__startswith="Chunk log").exists()


@pytest.mark.django_db
def test_the_chunk_log_goes_with_its_conversation() -> None:
    message = _logged_answer()
    assert ChunkLog.objects.count() == 1
    services.conversation_delete(conversation=message.conversation)
    assert ChunkLog.objects.count() == 0


@pytest.mark.django_db
def test_retention_purges_the_chunk_log() -> None:
    message = _logged_answer()
    Conversation.objects.filter(pk=message.conversation_id).update(
        updated_at=timezone.now() - timedelta(days=40)
    )
    assert services.conversation_purge_older_than(days=30) == 1
    assert not ChunkLog.objects.exists()
