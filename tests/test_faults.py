"""Upstream faults, driven through the fake server over real HTTP.

Before the first token worth-retrying errors are retried (and the page says so); after
text has arrived nothing is replayed: the partial is kept as interrupted, with Retry and
Continue offered.
"""

from __future__ import annotations

import html
import logging
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from conversations.models import Message
from tests.conftest import API_KEY, make_user, open_socket
from tests.fake_openai import Error, FakeUpstream, Hang, Stream
from tests.frames import PageView, norm, text_of
from tests.test_consumers import answer, conversation_for, final_frame, messages_of

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]

PIECES = [f"p{i} " for i in range(20)]


@pytest.fixture
def quick_retries(settings: Any) -> None:
    settings.CHATSITE_RETRY_BASE_DELAY = 0.02
    settings.CHATSITE_RETRY_BUDGET = 3.0


async def ask(text: str = "question") -> tuple[Any, Any, Any]:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": text})
    return user, conversation, socket


@pytest.mark.usefixtures("quick_retries")
async def test_retryable_errors_before_the_first_token_are_retried_visibly(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Error(503), Error(429, headers={"retry-after": "0.2"}), Error(408), Stream(["ok"]))
    _, conversation, socket = await ask()
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert (saved.status, saved.content) == ("complete", "ok")
    assert len(fake.completions()) == 4
    notes = [f for f in socket.frames if "message-note" in f and "Retrying" in f]
    assert notes, socket.frames
    assert "attempt 2" in html.unescape(notes[0])
    assert "Retrying" not in final
    await socket.close()


@pytest.mark.usefixtures("quick_retries")
async def test_retry_after_is_honoured(fake: FakeUpstream) -> None:
    fake.enqueue(Error(429, headers={"retry-after": "0.6"}), Stream(["ok"]))
    _, _, socket = await ask()
    await socket.receive_until(final_frame)
    first, second = fake.completions()
    assert second.received_at - first.received_at >= 0.55
    await socket.close()


@pytest.mark.usefixtures("quick_retries")
async def test_connection_errors_and_timeouts_before_text_are_retried(
    fake: FakeUpstream, settings: Any
) -> None:
    from tests.fake_openai import Drop

    settings.CHATSITE_UPSTREAM_IDLE_TIMEOUT = 0.3
    fake.enqueue(Drop(), Hang(), Stream(PIECES, drop_after=0), Stream(["fine"]))
    _, conversation, socket = await ask()
    await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert (saved.status, saved.content) == ("complete", "fine")
    assert len(fake.completions()) == 4
    await socket.close()


@pytest.mark.usefixtures("quick_retries")
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_client_errors_are_not_retried(fake: FakeUpstream, status: int) -> None:
    fake.enqueue(Error(status), Stream(["never"]))
    _, conversation, socket = await ask()
    await socket.receive_until(final_frame)
    assert len(fake.completions()) == 1
    assert (await answer(conversation)).status == "error"
    await socket.close()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Error(429, headers={"retry-after": "30"}), "rate limited"),
        (Error(503), "unavailable"),
        (Error(401), "rejected this site's API key"),
        (Error(404), "model was not found"),
    ],
)
async def test_when_retries_give_up_the_reason_is_readable_with_a_retry_button(
    fake: FakeUpstream, settings: Any, reply: Any, reason: str
) -> None:
    settings.CHATSITE_RETRY_BUDGET = 0.3
    settings.CHATSITE_RETRY_BASE_DELAY = 0.05
    fake.default = reply
    _, conversation, socket = await ask("keep me")
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.status == "error"
    assert reason in saved.error
    assert reason in html.unescape(final)
    assert 'data-action="retry"' in final
    assert 'data-action="continue"' not in final  # nothing to continue from
    users = [m for m in await messages_of(conversation) if m.role == "user"]
    assert [m.content for m in users] == ["keep me"]
    await socket.close()


async def test_raw_upstream_errors_are_logged_with_request_id_never_shown(
    fake: FakeUpstream, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHATSITE_RETRY_BUDGET = 0
    secret = "internal detail: shard 7 exploded"
    fake.enqueue(Error(500, body={"error": {"message": secret, "type": "server_error"}}))
    with caplog.at_level(logging.WARNING):
        _, conversation, socket = await ask()
        final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert secret not in final
    assert secret not in saved.error
    assert secret in caplog.text
    assert saved.upstream_request_id
    assert saved.upstream_request_id in caplog.text
    assert API_KEY not in caplog.text
    await socket.close()


@pytest.mark.parametrize(
    "fault",
    [
        {"drop_after": 5},
        {"error_event_after": 5},
        {"malformed_after": 5},
        {"finish_reason": None},
    ],
    ids=["dropped", "sse-error", "malformed", "no-finish-reason"],
)
async def test_failure_after_text_keeps_the_partial_as_interrupted(
    fake: FakeUpstream, fault: dict[str, Any]
) -> None:
    pieces = PIECES[:5] if fault == {"finish_reason": None} else PIECES
    fake.enqueue(Stream(pieces, interval=0.01, **fault))
    _, conversation, socket = await ask()
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.status == "interrupted"
    assert saved.content == "".join(PIECES[:5])
    assert text_of(final, saved.pk) == norm(saved.content)
    assert 'data-action="retry"' in final
    assert 'data-action="continue"' in final
    assert len(fake.completions()) == 1  # nothing replayed: no duplicated text
    await socket.close()


async def test_silent_upstream_is_abandoned_after_the_idle_timeout(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_UPSTREAM_IDLE_TIMEOUT = 0.3
    fake.enqueue(Stream(PIECES, hang_after=3))
    _, conversation, socket = await ask()
    started = time.monotonic()
    await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.status == "interrupted"
    assert saved.content == "".join(PIECES[:3])
    assert "stopped responding" in saved.error
    assert time.monotonic() - started < 3
    assert await fake.completions()[0].await_closed(1.0)
    await socket.close()


@pytest.mark.parametrize("cap", ["chars", "seconds"])
async def test_runaway_answers_end_at_the_cap_with_a_marker(
    fake: FakeUpstream, settings: Any, cap: str
) -> None:
    if cap == "chars":
        settings.CHATSITE_MAX_ANSWER_CHARS = 30
    else:
        settings.CHATSITE_MAX_ANSWER_SECONDS = 0.3
    fake.enqueue(Stream([f"x{i} " for i in range(1000)], interval=0.01))
    _, conversation, socket = await ask()
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.status == "interrupted"
    assert "limit" in saved.error
    assert "limit" in html.unescape(final)
    assert await fake.completions()[0].await_closed(1.0)  # the upstream was hung up on
    await socket.close()


@pytest.mark.parametrize(
    ("finish", "marker", "can_continue"),
    [("length", "Cut off", True), ("content_filter", "Filtered", False)],
)
async def test_finish_reasons_are_shown(
    fake: FakeUpstream, finish: str, marker: str, can_continue: bool
) -> None:
    fake.enqueue(Stream(["partial ", "answer"], finish_reason=finish))
    _, conversation, socket = await ask()
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert (saved.status, saved.finish_reason) == ("complete", finish)
    assert marker in final
    assert ('data-action="continue"' in final) is can_continue
    await socket.close()


async def test_continue_extends_the_partial_in_place(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(PIECES, drop_after=4), Stream(["and ", "the rest."]))
    _, conversation, socket = await ask("tell me")
    await socket.receive_until(final_frame)
    partial = await answer(conversation)
    socket.frames.clear()
    await socket.send_json({"action": "continue", "message_id": str(partial.pk)})
    final = await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert saved.pk == partial.pk
    assert saved.status == "complete"
    assert saved.content == "".join(PIECES[:4]) + "and the rest."
    assert text_of(final, saved.pk) == norm(saved.content)
    sent = fake.completions()[-1].body["messages"]
    assert sent[0] == {"role": "user", "content": "tell me"}
    assert sent[1] == {"role": "assistant", "content": "".join(PIECES[:4])}
    assert sent[2]["role"] == "user"
    assert "Continue" in sent[2]["content"]
    await socket.close()


async def test_retry_makes_a_new_answer_and_keeps_the_old_one(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_RETRY_BUDGET = 0
    fake.enqueue(Error(500), Stream(["second try"]))
    _, conversation, socket = await ask("question")
    await socket.receive_until(final_frame)
    failed = await answer(conversation)
    await socket.send_json({"action": "retry", "message_id": failed.pk})
    await socket.receive_until(lambda f: final_frame(f) and "second try" in f)
    answers = [m for m in await messages_of(conversation) if m.role == "assistant"]
    assert [(m.status, m.content) for m in answers] == [("error", ""), ("complete", "second try")]
    assert answers[1].parent_id == answers[0].parent_id
    assert fake.completions()[-1].body["messages"] == [{"role": "user", "content": "question"}]
    await socket.close()


async def test_continue_never_shows_text_twice_while_it_streams(fake: FakeUpstream) -> None:
    """Stopped mid-paragraph, then continued: the unfinished paragraph showed twice until
    the answer ended. The page is read after every frame, not only at the end."""
    more = [f"more{i} " for i in range(40)]
    fake.enqueue(Stream(PIECES, drop_after=6), Stream(more, interval=0.01))
    _, conversation, socket = await ask("tell me")
    await socket.receive_until(final_frame)
    partial = await answer(conversation)
    socket.frames.clear()
    await socket.send_json({"action": "continue", "message_id": partial.pk})
    await socket.receive_until(final_frame)
    saved = await answer(conversation)
    assert norm(saved.content) == norm("".join(PIECES[:6]) + "".join(more))
    page = PageView(saved.pk)
    seen = []
    for frame in socket.frames:
        page.apply(frame)
        if page.text:
            assert norm(saved.content).startswith(page.text), (page.text, frame)
            seen.append(page.text)
    assert len(set(seen)) > 3  # it grew over several frames, each checked
    assert seen[0].startswith(norm("".join(PIECES[:6])))  # the kept text from the start
    await socket.close()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"action": "retry", "message_id": "nope"}, "does not exist"),
        ({"action": "continue", "message_id": 999999}, "does not exist"),
    ],
)
async def test_retry_and_continue_refuse_bad_ids(
    fake: FakeUpstream, payload: dict[str, Any], expected: str
) -> None:
    user = await sync_to_async(make_user)()
    conversation = await conversation_for(user)
    _, socket = await open_socket(conversation, user)
    await socket.send_json(payload)
    error = await socket.receive_until(lambda f: "feedback error" in f)
    assert expected in error
    assert await Message.objects.acount() == 0
    await socket.close()


async def test_regenerate_with_another_model_uses_it_for_that_version_only(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["usual"]), Stream(["mini"]))
    _, conversation, socket = await ask("which?")
    await socket.receive_until(final_frame)
    first = await answer(conversation)
    await socket.send_json({"action": "retry", "message_id": first.pk, "model": "nope"})
    refused = await socket.receive_until(lambda f: "feedback error" in f)
    assert "not available" in refused
    assert len(fake.completions()) == 1  # nothing sent for a model not offered
    await socket.send_json({"action": "retry", "message_id": first.pk, "model": "fake-model-mini"})
    await socket.receive_until(lambda f: final_frame(f) and "mini" in f)
    second = await answer(conversation)
    assert (second.model, second.content) == ("fake-model-mini", "mini")
    assert fake.completions()[-1].body["model"] == "fake-model-mini"
    await conversation.arefresh_from_db()
    assert conversation.model == "fake-model"  # the conversation keeps its own
    await socket.close()
