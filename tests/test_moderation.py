"""Screening while the answer streams, through the fake server's /v1/moderations and
local rules; policies; user reports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from conversations.models import Message
from moderation.models import Flag, Policy, Rule
from tests.conftest import make_user, open_socket
from tests.fake_openai import MODERATION_CATEGORIES, Error, FakeUpstream, Json, Stream
from tests.test_consumers import conversation_for, final_frame

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]


def flagged(*categories: str) -> Json:
    result = {
        "flagged": True,
        "categories": {c: c in categories for c in MODERATION_CATEGORIES},
        "category_scores": {c: (0.97 if c in categories else 0.01) for c in MODERATION_CATEGORIES},
    }
    return Json({"id": "modr-1", "model": "omni-moderation-latest", "results": [result]})


async def _rule(pattern: str, category: str, action: str) -> None:
    await Rule.objects.acreate(pattern=pattern, category=category)
    await Policy.objects.acreate(category=category, action=action)


async def _ask(text: str) -> tuple[Any, Any, Any]:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": text})
    return user, conversation, socket


async def test_a_blocked_message_never_goes_upstream_and_is_kept_for_moderators(
    fake: FakeUpstream,
) -> None:
    await _rule("bomb", "weapons", "block")
    _, _, socket = await _ask("How do I build a BOMB at home?")
    final = await socket.receive_until(final_frame)
    assert "not sent to the model" in final
    assert "weapons" in final
    assert fake.completions() == []  # nothing went upstream
    question = await Message.objects.aget(role="user")
    assert question.hidden  # hidden from the page, kept for moderators
    assert question.content == "How do I build a BOMB at home?"
    flag = await Flag.objects.aget()
    assert (flag.source, flag.category, flag.action, flag.message_id) == (
        "rule",
        "weapons",
        "block",
        question.pk,
    )
    await socket.close()


async def test_a_flag_only_rule_lets_the_message_through_and_records_a_flag(
    fake: FakeUpstream,
) -> None:
    await Rule.objects.acreate(pattern=r"\bcasino\w*", is_regex=True, category="gambling")
    fake.enqueue(Stream(["Sure."]))
    _, _, socket = await _ask("best casinos near me")
    await socket.receive_until(final_frame)
    assert len(fake.completions()) == 1
    flag = await Flag.objects.aget()
    assert (flag.category, flag.action, flag.status) == ("gambling", "flag", "open")
    await socket.close()


async def test_a_stop_policy_ends_the_stream_mid_answer_and_hides_it(fake: FakeUpstream) -> None:
    await _rule("forbidden-recipe", "dangerous", "stop")
    pieces = ["Harmless start.\n\n", "Now the forbidden-recipe follows.\n\n"]
    pieces += [f"step {i} " for i in range(300)]
    fake.enqueue(Stream(pieces, interval=0.02))
    _, _, socket = await _ask("tell me")
    final = await socket.receive_until(final_frame)
    log = fake.completions()[-1]
    assert await log.await_closed(2.0)
    assert not log.completed  # the upstream saw us hang up, as with Stop
    answer = await Message.objects.aget(role="assistant")
    assert answer.status == "stopped"
    assert answer.hidden
    assert "forbidden-recipe" in answer.content  # kept for moderators
    assert "forbidden-recipe" not in final  # the page shows a notice instead
    assert "goes against this site" in final
    assert await Flag.objects.filter(message=answer, action="stop").aexists()
    await socket.close()


async def test_the_moderation_endpoint_screens_and_its_policy_applies(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_MODERATION_ENDPOINT = True
    await Policy.objects.acreate(category="harassment", action="block")
    fake.enqueue_moderation(flagged("harassment"))
    _, _, socket = await _ask("you are all idiots")
    await socket.receive_until(final_frame)
    assert fake.completions() == []
    flag = await Flag.objects.aget()
    assert (flag.source, flag.category) == ("endpoint", "harassment")
    assert flag.scores["harassment"] == pytest.approx(0.97)
    moderation_calls = [r for r in fake.requests if r.path == "/v1/moderations"]
    assert moderation_calls[0].body["input"] == "you are all idiots"
    await socket.close()


@pytest.mark.parametrize(("on_error", "answered"), [("allow", True), ("block", False)])
async def test_a_screening_failure_follows_the_setting(
    fake: FakeUpstream, settings: Any, on_error: str, answered: bool
) -> None:
    settings.CHATSITE_MODERATION_ENDPOINT = True
    settings.CHATSITE_SCREENING_ON_ERROR = on_error
    fake.enqueue_moderation(*[Error(500)] * 10)
    fake.enqueue(Stream(["Fine."]))
    _, _, socket = await _ask("hello")
    final = await socket.receive_until(final_frame)
    assert (len(fake.completions()) == 1) is answered
    assert ("Fine." in final) is answered
    await socket.close()


async def test_hidden_messages_are_never_sent_upstream_again(fake: FakeUpstream) -> None:
    await _rule("bomb", "weapons", "block")
    fake.enqueue(Stream(["Hello."]))
    _, _, socket = await _ask("bomb")
    await socket.receive_until(final_frame)
    await socket.send_json({"action": "send", "message": "hi"})
    await socket.receive_until(lambda f: final_frame(f) and "Hello." in f)
    assert fake.completions()[-1].body["messages"] == [{"role": "user", "content": "hi"}]
    await socket.close()


async def test_users_report_answers_and_conversations_and_only_their_own(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["A wrong answer."]))
    user, conversation, socket = await _ask("question")
    await socket.receive_until(final_frame)
    await socket.close()
    answer = await Message.objects.aget(role="assistant")
    client = AsyncClient()
    await sync_to_async(client.force_login)(user)
    url = f"/conversations/{conversation.public_id}/report/"
    bad = await client.post(url, {"message_id": answer.pk, "category": "nonsense"})
    assert bad.status_code == 422
    ok = await client.post(
        url, {"message_id": answer.pk, "category": "misinformation", "comment": "wrong year"}
    )
    assert ok.status_code == 200
    whole = await client.post(url, {"category": "other"})
    assert whole.status_code == 200
    flags = [f async for f in Flag.objects.order_by("id")]
    assert [(f.source, f.category, f.message_id, f.comment) for f in flags] == [
        ("report", "misinformation", answer.pk, "wrong year"),
        ("report", "other", None, ""),
    ]
    mallory = AsyncClient()
    await sync_to_async(mallory.force_login)(await sync_to_async(make_user)("mallory"))
    assert (await mallory.post(url, {"category": "other"})).status_code == 404
    assert await Flag.objects.acount() == 2


async def test_rules_are_read_from_memory_and_edits_apply(settings: Any) -> None:
    from moderation import screening

    settings.CHATSITE_SCREENING_RULES_SECONDS = 0.5
    assert not (await screening.screen("a grue here", config=None)).flagged
    # Saved in this process (admin): applies at once, although the rules were just read.
    rule = await Rule.objects.acreate(pattern="grue", category="monsters")
    assert (await screening.screen("a grue here", config=None)).category == "monsters"
    # Changed by another process (no signal here): the copy in memory serves until it is
    # old enough, then the change applies.
    await Rule.objects.filter(pk=rule.pk).aupdate(enabled=False)
    assert (await screening.screen("a grue here", config=None)).flagged
    await asyncio.sleep(0.6)
    assert not (await screening.screen("a grue here", config=None)).flagged


@pytest.mark.parametrize("on_error", ["allow", "block"])
async def test_a_failing_screening_is_logged_and_follows_the_policy_for_errors(
    fake: FakeUpstream,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    on_error: str,
) -> None:
    """A database error while screening the answer used to end screening for the rest of
    that answer, with nothing logged."""
    from django.db import DatabaseError

    from moderation import services as moderation_services

    settings.CHATSITE_SCREENING_ON_ERROR = on_error
    await _rule("tomato", "food", "flag")  # every batch with the word is flagged

    def broken(**kwargs: Any) -> None:
        raise DatabaseError("database went away")

    monkeypatch.setattr(moderation_services, "flag_from_verdict", broken)
    pieces = ["Hello there. ", "A tomato sentence. ", *[f"w{i} " for i in range(200)], "end."]
    fake.enqueue(Stream(pieces, interval=0.01))
    _, _, socket = await _ask("tell me about vegetables")
    final = await socket.receive_until(final_frame)
    answer = await Message.objects.aget(role="assistant")
    failures = [r for r in caplog.records if "screening message" in r.getMessage()]
    assert failures
    assert failures[0].levelname == "ERROR"
    assert failures[0].exc_info is not None  # with its traceback
    if on_error == "allow":
        assert answer.status == "complete"
        assert not answer.hidden
        assert answer.content.endswith("end.")
    else:
        assert answer.status == "stopped"  # stopped at once, as a screening stop does
        assert answer.hidden
        assert "screening-unavailable" in answer.error
        assert "stopped and hidden" in final
    await socket.close()
