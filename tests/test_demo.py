"""The built-in demo model speaks the chat completions wire format exactly."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient
from openai.types.chat import ChatCompletion, ChatCompletionChunk

pytestmark = pytest.mark.django_db


async def read_events(response: object) -> list[str]:
    body = b"".join([chunk async for chunk in response.streaming_content])  # type: ignore[attr-defined]
    return [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]


async def test_demo_streams_valid_chunks_ending_with_done(settings: object) -> None:
    settings.CHATSITE_DEMO_TOKENS_PER_SECOND = 10_000  # type: ignore[attr-defined]
    response = await AsyncClient().post(
        "/demo/v1/chat/completions",
        data=json.dumps(
            {
                "model": "chatsite-demo",
                "messages": [{"role": "user", "content": "Tell me about tides"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["x-request-id"].startswith("req_demo_")
    events = await read_events(response)
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Tell me about tides" in text
    assert "```" in text
    assert "\n- " in text or "\n1. " in text
    assert len(chunks) > 100  # a few hundred tokens, one per chunk
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None


async def test_demo_answers_vary_with_the_question(settings: object) -> None:
    settings.CHATSITE_DEMO_TOKENS_PER_SECOND = 10_000  # type: ignore[attr-defined]
    texts = set()
    for question in ("a", "bb", "ccc", "dddd", "eeeee", "ffffff"):
        response = await AsyncClient().post(
            "/demo/v1/chat/completions",
            data=json.dumps(
                {"model": "chatsite-demo", "messages": [{"role": "user", "content": question}]}
            ),
            content_type="application/json",
        )
        completion = ChatCompletion.model_validate_json(response.content)
        texts.add(completion.choices[0].message.content.replace(question, ""))  # type: ignore[union-attr]
    assert len(texts) >= 3


async def test_demo_rejects_bad_requests_like_the_api() -> None:
    response = await AsyncClient().post(
        "/demo/v1/chat/completions", data="{", content_type="application/json"
    )
    assert response.status_code == 400
    assert "error" in response.json()


async def test_demo_writes_sensible_titles() -> None:
    response = await AsyncClient().post(
        "/demo/v1/chat/completions",
        data=json.dumps(
            {
                "model": "chatsite-demo",
                "messages": [
                    {"role": "system", "content": "Write a title of at most six words."},
                    {
                        "role": "user",
                        "content": "User: how do I bake sourdough bread at home?\n\n"
                        "Assistant: Start with a starter...",
                    },
                ],
            }
        ),
        content_type="application/json",
    )
    completion = ChatCompletion.model_validate_json(response.content)
    assert completion.choices[0].message.content == "Bake Sourdough Bread at Home"


async def test_demo_offers_two_models_and_refuses_others() -> None:
    listed = (await AsyncClient().get("/demo/v1/models")).json()
    assert [m["id"] for m in listed["data"]] == ["chatsite-demo", "chatsite-demo-fast"]
    response = await AsyncClient().post(
        "/demo/v1/chat/completions",
        data=json.dumps({"model": "gpt-nope", "messages": [{"role": "user", "content": "hi"}]}),
        content_type="application/json",
    )
    assert response.status_code == 404
    assert "gpt-nope" in response.json()["error"]["message"]
    answer = await AsyncClient().post(
        "/demo/v1/chat/completions",
        data=json.dumps(
            {"model": "chatsite-demo-fast", "messages": [{"role": "user", "content": "hi"}]}
        ),
        content_type="application/json",
    )
    assert ChatCompletion.model_validate_json(answer.content).model == "chatsite-demo-fast"
