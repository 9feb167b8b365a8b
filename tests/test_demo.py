"""The built-in demo model speaks the chat completions wire format exactly."""

from __future__ import annotations

import importlib
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import AsyncClient
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.conftest import make_user
from tests.live import LiveSite, SiteClient

pytestmark = pytest.mark.django_db


class site_client:  # reads like the AsyncClient it wraps
    """A client as this site's own server-side calls are: with the demo key."""

    def __init__(self) -> None:
        self.client = AsyncClient()
        self.headers = {"Authorization": f"Bearer {settings.CHATSITE_DEMO_API_KEY}"}

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.client.get(path, headers=self.headers, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.client.post(path, headers=self.headers, **kwargs)


async def read_events(response: object) -> list[str]:
    body = b"".join([chunk async for chunk in response.streaming_content])  # type: ignore[attr-defined]
    return [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]


async def test_demo_streams_valid_chunks_ending_with_done(settings: Any) -> None:
    settings.CHATSITE_DEMO_TOKENS_PER_SECOND = 10_000
    response = await site_client().post(
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


async def test_demo_answers_vary_with_the_question(settings: Any) -> None:
    settings.CHATSITE_DEMO_TOKENS_PER_SECOND = 10_000
    texts = set()
    for question in ("a", "bb", "ccc", "dddd", "eeeee", "ffffff"):
        response = await site_client().post(
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
    response = await site_client().post(
        "/demo/v1/chat/completions", data="{", content_type="application/json"
    )
    assert response.status_code == 400
    assert "error" in response.json()


async def test_demo_writes_sensible_titles() -> None:
    response = await site_client().post(
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
    listed = (await site_client().get("/demo/v1/models")).json()
    assert [m["id"] for m in listed["data"]] == ["chatsite-demo", "chatsite-demo-fast"]
    response = await site_client().post(
        "/demo/v1/chat/completions",
        data=json.dumps({"model": "gpt-nope", "messages": [{"role": "user", "content": "hi"}]}),
        content_type="application/json",
    )
    assert response.status_code == 404
    assert "gpt-nope" in response.json()["error"]["message"]
    answer = await site_client().post(
        "/demo/v1/chat/completions",
        data=json.dumps(
            {"model": "chatsite-demo-fast", "messages": [{"role": "user", "content": "hi"}]}
        ),
        content_type="application/json",
    )
    assert ChatCompletion.model_validate_json(answer.content).model == "chatsite-demo-fast"


QUESTION = {"model": "chatsite-demo", "messages": [{"role": "user", "content": "hi"}]}


async def test_strangers_get_nothing_from_the_demo() -> None:
    anonymous = AsyncClient()
    refused = await anonymous.post(
        "/demo/v1/chat/completions", data=json.dumps(QUESTION), content_type="application/json"
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    assert (await anonymous.get("/demo/v1/models")).status_code == 401
    wrong = await anonymous.get("/demo/v1/models", headers={"Authorization": "Bearer demo"})
    assert wrong.status_code == 401


@pytest.mark.django_db(transaction=True)  # the user is made in another thread
async def test_signed_in_users_may_call_the_demo() -> None:
    user = await sync_to_async(make_user)()
    client = AsyncClient()
    await client.aforce_login(user)
    answer = await client.post(
        "/demo/v1/chat/completions", data=json.dumps(QUESTION), content_type="application/json"
    )
    assert answer.status_code == 200
    assert ChatCompletion.model_validate_json(answer.content).choices[0].message.content


async def test_the_demo_answers_only_while_it_is_the_upstream(settings: Any) -> None:
    settings.CHATSITE_DEMO_MODE = False  # a real upstream configured
    response = await site_client().get("/demo/v1/models")
    assert response.status_code == 404


def test_the_demo_is_not_mounted_when_a_real_upstream_is_configured(settings: Any) -> None:
    import chatsite.urls

    settings.CHATSITE_DEMO_MODE = False
    try:
        urls = importlib.reload(chatsite.urls)
        paths = [str(p.pattern) for p in urls.urlpatterns]
        assert "demo/v1/" not in paths
    finally:
        settings.CHATSITE_DEMO_MODE = True
        urls = importlib.reload(chatsite.urls)
        assert "demo/v1/" in [str(p.pattern) for p in urls.urlpatterns]


@pytest.mark.django_db(transaction=True)  # the user is made in another thread
async def test_an_oversized_body_is_refused_before_it_is_parsed(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    big = {**QUESTION, "messages": [{"role": "user", "content": "x" * 20_000}]}
    # A signed-in user's call (this site's own carry images: see the test below).
    client = AsyncClient()
    await client.aforce_login(await sync_to_async(make_user)())
    response = await client.post(
        "/demo/v1/chat/completions", data=json.dumps(big), content_type="application/json"
    )
    assert response.status_code == 413
    assert "too large" in response.json()["error"]["message"]


async def test_a_deeply_nested_body_is_a_clear_error() -> None:
    response = await site_client().post(
        "/demo/v1/chat/completions",
        data='{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}",
        content_type="application/json",
    )
    assert response.status_code == 400


def _get_seconds(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
    return time.perf_counter() - started


@pytest.mark.services
def test_a_huge_title_request_does_not_hold_up_other_pages(tmp_path: Path) -> None:
    """The title helper used to strip filler words with list.pop(0): one 500 KB request
    took seconds of the event loop, and every other page waited. Pages served while such
    a request runs must be about as quick as on an idle site."""
    site = LiveSite(tmp_path)
    site.migrate()
    site.start()
    try:
        client = SiteClient(site.base)
        client.sign_up()
        page = f"{site.base}/accounts/login/"
        idle = max(_get_seconds(page) for _ in range(8))
        hostile = json.dumps(
            {
                "model": "chatsite-demo",
                "stream": False,
                "messages": [
                    {"role": "system", "content": "Write a title"},
                    {"role": "user", "content": "User: " + "i " * 250_000},
                ],
            }
        ).encode()
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def post() -> None:
            request = urllib.request.Request(
                f"{site.base}/demo/v1/chat/completions",
                data=hostile,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with client.opener.open(request, timeout=60) as response:
                    outcome["status"] = response.status
            finally:
                done.set()

        busy: list[float] = []
        worker = threading.Thread(target=post)
        worker.start()
        while not done.is_set() or len(busy) < 5:
            busy.append(_get_seconds(page))
        worker.join()
        assert outcome.get("status") == 200  # answered (a signed-in user), not refused
        # Generous for a loaded machine; the quadratic helper held pages for seconds.
        assert max(busy) < idle + 0.5, (idle, sorted(busy)[-5:])
    finally:
        site.stop()


@pytest.mark.django_db(transaction=True)  # the user is made in another thread
async def test_the_sites_own_call_may_carry_images_past_the_form_limit(settings: Any) -> None:
    """A conversation's images travel to the demo model in base64: this site's own calls
    (with the demo key) are not held to DATA_UPLOAD_MAX_MEMORY_SIZE; anyone else is."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    settings.CHATSITE_DEMO_TOKENS_PER_SECOND = 10_000
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 50_000}}
    content = [{"type": "text", "text": "What is in this picture?"}, image]
    body = json.dumps({**QUESTION, "messages": [{"role": "user", "content": content}]})
    response = await site_client().post(
        "/demo/v1/chat/completions", data=body, content_type="application/json"
    )
    assert response.status_code == 200
    answer = response.json()["choices"][0]["message"]["content"]
    assert "What is in this picture" in answer  # the demo read the text part
    assert response.json()["usage"]["prompt_tokens"] < 50  # words, not the base64
    user = await sync_to_async(make_user)()
    client = AsyncClient()
    await client.aforce_login(user)
    other = await client.post(
        "/demo/v1/chat/completions", data=body, content_type="application/json"
    )
    assert other.status_code == 413
