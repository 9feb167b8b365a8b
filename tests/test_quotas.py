"""Quotas: refused before anything is saved or sent, with the limit and the reset time;
counted from reported usage (estimated when there is none); user over group over
defaults; the composer shows what is left when it runs low."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group

from accounts import quotas
from accounts.models import Quota, UsageEvent
from conversations import services, turn_services
from conversations.models import Message
from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream
from tests.test_consumers import conversation_for, final_frame

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


async def _chat() -> tuple[Any, Any, Any]:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    return user, conversation, socket


async def test_messages_per_day_refuse_with_the_limit_and_reset_and_save_nothing(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_QUOTA_MESSAGES_PER_DAY = 2
    fake.enqueue(Stream(["one"]), Stream(["two"]))
    _, _conversation, socket = await _chat()
    for text in ("a", "b"):
        await socket.send_json({"action": "send", "message": text})
        await socket.receive_until(final_frame)
    await socket.send_json({"action": "send", "message": "c"})
    error = await socket.receive_until(lambda f: "feedback error" in f)
    assert "your 2 messages today" in error
    assert "resets at" in error
    assert await Message.objects.filter(role="user").acount() == 2  # nothing saved
    assert len(fake.completions()) == 2  # nothing sent
    await socket.close()


async def test_tokens_count_from_reported_usage_and_deleting_gives_nothing_back(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_QUOTA_TOKENS_PER_DAY = 10
    fake.enqueue(Stream(["spent"], usage=USAGE))
    user, conversation, socket = await _chat()
    await socket.send_json({"action": "send", "message": "a"})
    await socket.receive_until(final_frame)
    await socket.close()
    event = await UsageEvent.objects.aget(kind="tokens")
    assert (event.tokens, event.estimated) == (18, False)
    await sync_to_async(services.conversation_delete)(conversation=conversation)
    fresh = await conversation_for(user)
    with pytest.raises(services.RateLimited, match="your 10 tokens today"):
        await sync_to_async(turn_services.turn_start)(
            conversation=fresh, text="more", generation_channel="c"
        )


async def test_without_reported_usage_tokens_are_estimated_and_marked(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["x" * 400], report_usage=False))
    _, _, socket = await _chat()
    await socket.send_json({"action": "send", "message": "y" * 40})
    await socket.receive_until(final_frame)
    event = await UsageEvent.objects.aget(kind="tokens")
    assert event.estimated
    assert event.tokens == 110  # (40 + 400) characters / 4
    await socket.close()


async def test_the_composer_shows_what_is_left_when_it_runs_low(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_QUOTA_MESSAGES_PER_DAY = 5
    fake.enqueue(*[Stream([f"answer {i}"]) for i in range(4)])
    _, _, socket = await _chat()
    frames = []
    for i in range(4):
        await socket.send_json({"action": "send", "message": f"q{i}"})
        frames.append(
            await socket.receive_until(lambda f, i=i: final_frame(f) and f"answer {i}" in f)
        )
    assert 'id="quota-notice"' in frames[0]
    assert "left today" not in frames[0]  # 4 of 5 left: not low yet
    assert "1 message left today" in frames[3]
    await socket.close()


def test_a_users_own_quota_beats_groups_which_beat_defaults(settings: Any) -> None:
    settings.CHATSITE_QUOTA_MESSAGES_PER_DAY = 10
    user = make_user("u")
    assert quotas.limits_for(user_id=user.pk).messages_per_day == 10
    small, big = Group.objects.create(name="small"), Group.objects.create(name="big")
    user.groups.add(small, big)
    Quota.objects.create(group=small, messages_per_day=3)
    Quota.objects.create(group=big, messages_per_day=50)
    assert quotas.limits_for(user_id=user.pk).messages_per_day == 50  # the most generous
    Quota.objects.create(user=user, messages_per_day=1, tokens_per_month=0)
    limits = quotas.limits_for(user_id=user.pk)
    assert (limits.messages_per_day, limits.tokens_per_month) == (1, 0)
