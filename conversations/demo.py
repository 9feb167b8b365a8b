"""The built-in demo model: an OpenAI-compatible chat completions endpoint.

It speaks the exact wire format of the chat completions API (SSE `chat.completion.chunk`
events ending with `data: [DONE]`), so the demo goes through the openai SDK like any real
model and Stop closes a real HTTP connection. Its answers are canned, but varied, in
markdown, a few hundred tokens long and paced like a real model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from chatsite.limits import demo_key_presented

from . import attachments

MODEL = "chatsite-demo"  # its models and their pace: settings.CHATSITE_DEMO_MODELS

ANSWERS = [
    """Good question about **{topic}**. Here is how I would think about it, step by step.

1. **Start from the goal.** Write down, in one sentence, what a good outcome looks like.
2. **Find the constraint.** Most problems have one bottleneck; everything else is noise.
3. **Make the smallest experiment** that tells you whether you are right.
4. **Measure, then decide.** Keep the numbers, not just the conclusion.

A tiny Python sketch of that loop:

```python
def improve(system, ideas):
    baseline = measure(system)
    for idea in ideas:
        candidate = idea.apply(system)
        if measure(candidate) > baseline:
            system, baseline = candidate, measure(candidate)
    return system
```

The trick is in step 2: if you optimise something that is not the bottleneck, the \
experiment will honestly tell you *nothing changed*. That is still a useful answer.

> I am the built-in demo model, so this is a canned reply, but the streaming, Stop and \
saving you just watched are the real thing.""",
    """Let me break **{topic}** down into the parts that usually matter.

## The short version

- It depends on *what you optimise for*: speed, cost or simplicity.
- Pick the simplest option that meets the requirement, then revisit.
- Write the decision down, with the reason, so that future you can undo it.

## A comparison

| Option | Strength | Weakness |
| --- | --- | --- |
| Simple | Easy to reason about | May not scale |
| Clever | Fast | Hard to debug |
| Boring | Well documented | Feels slow to adopt |

## A shell one-liner to get started

```bash
mkdir -p notes && echo "Decision: keep it simple" >> notes/decisions.md
```

Most of the time the *boring* choice wins, because the cost of a system is paid while \
running it, not while building it. (This is the demo model speaking: set \
`OPENAI_BASE_URL` to talk to a real one.)""",
    """Here is a practical way to approach **{topic}**.

First, a quick checklist:

- [x] Understand the question
- [ ] Gather the facts
- [ ] Try a small example
- [ ] Explain it to someone else

Then an example in JavaScript, since it runs everywhere:

```javascript
function summarise(items) {{
  return items
    .filter((item) => item.important)
    .map((item) => `- ${{item.title}}`)
    .join("\\n");
}}
```

A few things people often miss:

1. *Edge cases first.* Empty input, huge input, weird input.
2. *Names matter.* A good name is half the documentation.
3. *Stop early.* When the answer is good enough, ship it and learn.

If you want, ask me a follow-up and I will happily produce another canned answer. I am \
the demo model, after all: **consistent, fast, and not very deep**.""",
    """Thanks for asking about **{topic}**! A little story helps here.

Imagine a librarian who never throws anything away. Every book, every note, every \
half-finished draft is kept *exactly where it was left*. When you come back a week later, \
your place is still marked. That is the idea behind a chat that **never loses an answer**.

What makes it work:

- Each answer is saved while it is being written, about once a second.
- Pressing **Stop** keeps everything written so far.
- Reloading the page shows the text so far and then continues live.

In SQL terms, the essential invariant is simple:

```sql
SELECT count(*) FROM message
WHERE conversation_id = 42 AND status = 'streaming';
-- never more than 1
```

That is all for now. I am a demo model, so my stories are short, but they stream token \
by token just like the real ones.""",
]

_TOKEN = re.compile(r"\s*\S+|\s+")
# Attached files fenced before a user's words (attachments.upstream_content).
_ATTACHED = re.compile(
    r"\A(?:(?:File|PDF): [^\n]*\n(`{3,})\n.*?\n\1\n\n|\[Image [^\n]*\]\n\n)+", re.DOTALL
)


def _topic(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        content = message.get("content")
        if isinstance(content, list):  # text and images: the text part's words
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if message.get("role") == "user" and isinstance(content, str):
            words = _ATTACHED.sub("", content).split()  # the user's words, not the files
            topic = " ".join(words[:8])
            if len(words) > 8:
                topic += "…"
            # Keep the demo's markdown intact whatever the user typed.
            return re.sub(r"[*_`#>\[\]|\\]", "", topic) or "that"
    return "that"


def _answer_for(messages: list[dict[str, Any]]) -> str:
    user_texts = [m.get("content", "") for m in messages if m.get("role") == "user"]
    seed = hashlib.sha256(repr(user_texts).encode()).digest()
    template = ANSWERS[(seed[0] + len(user_texts)) % len(ANSWERS)]
    return template.format(topic=_topic(messages))


FILLER = frozenset(
    {"how", "do", "does", "what", "why", "when", "where", "which", "who", "is", "are", "can",
     "could", "would", "should", "i", "you", "me", "please", "tell", "explain", "to", "about"}
)  # fmt: skip
SMALL = frozenset({"a", "an", "the", "of", "to", "in", "on", "at", "for", "and", "or", "with"})


def _title_for(messages: list[dict[str, Any]]) -> str | None:
    """When asked for a conversation title, the demo makes one from the question.
    Linear in the question's length: a hostile body must not cost quadratic time."""
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    if "title" not in system.lower():
        return None
    last = str(messages[-1].get("content", "")) if messages else ""
    question = last.split("\n\nAssistant:", 1)[0].removeprefix("User:").strip()
    words = re.sub(r"[^\w\s'-]", " ", question).split()
    # "how do I bake bread" is about baking bread: skip the leading filler words.
    start = next((i for i, w in enumerate(words) if w.lower() not in FILLER), len(words))
    title = " ".join(
        w.lower() if i and w.lower() in SMALL else w[:1].upper() + w[1:]
        for i, w in enumerate(words[start : start + 6])
    )
    return title or "A Chat with the Demo Model"


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _chunk(
    cid: str, created: int, delta: dict[str, Any], finish: str | None = None, model: str = MODEL
) -> str:
    payload = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _stream(call: _Call) -> AsyncIterator[str]:
    cid = f"chatcmpl-demo{uuid.uuid4().hex[:20]}"
    created = int(time.time())
    model = call.model
    rate = max(
        1.0,
        float(settings.CHATSITE_DEMO_TOKENS_PER_SECOND)
        * settings.CHATSITE_DEMO_MODELS.get(model, 1.0),
    )
    tokens = _tokens(call.text)
    rng = random.Random(cid)
    yield _chunk(cid, created, {"role": "assistant", "content": "", "refusal": None}, model=model)
    await asyncio.sleep(min(0.4, 8 / rate))  # "thinking" before the first token
    for token in tokens:
        yield _chunk(cid, created, {"content": token}, model=model)
        # A realistic, slightly uneven pace. A client that hangs up cancels this sleep.
        await asyncio.sleep(rng.uniform(0.5, 1.5) / rate)
    yield _chunk(cid, created, {}, finish="stop", model=model)
    if call.include_usage:
        prompt = call.prompt_tokens
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(tokens),
            "total_tokens": prompt + len(tokens),
        }
        payload = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
    yield "data: [DONE]\n\n"


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JsonResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JsonResponse(body, status=status)


def _own_call(request: HttpRequest) -> bool:
    """The request presents the key this site's own server-side calls use."""
    return demo_key_presented(request.headers.get("Authorization", ""))


async def _refusal(request: HttpRequest) -> JsonResponse | None:
    """None when the caller may use the demo: this site's own server-side calls (they
    present the key derived from the secret key) or a signed-in user. Anyone else could
    otherwise spend this process's time anonymously."""
    if not settings.CHATSITE_DEMO_MODE:
        # Mounted only in demo mode; a test may switch the upstream at run time.
        return _error(404, "The demo model is not enabled on this site.", "not_found_error")
    if _own_call(request):
        return None
    user = await request.auser()
    if user.is_authenticated and user.is_active:
        return None
    return _error(401, "Sign in to use the demo model.", "authentication_error")


@dataclass(frozen=True)
class _Call:
    messages: list[dict[str, Any]]
    model: str
    stream: bool
    include_usage: bool
    prompt_tokens: int
    text: str  # the whole answer (streamed or not)


def _parse(body: bytes) -> _Call | JsonResponse:
    """The request, checked and answered in full. Runs in a worker thread: parsing a
    body of megabytes must not hold up the event loop that serves everyone else."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return _error(400, "The request body must be JSON.")
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return _error(400, "'messages' must be a list of message objects.")
    model = payload.get("model") or MODEL
    if not isinstance(model, str) or model not in settings.CHATSITE_DEMO_MODELS:
        return _error(404, f"The model `{str(model)[:100]}` does not exist.", "not_found_error")
    stream = bool(payload.get("stream"))
    options = payload.get("stream_options") or {}
    text = _answer_for(messages) if stream else (_title_for(messages) or _answer_for(messages))
    return _Call(
        messages=messages,
        model=model,
        stream=stream,
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        # Words only: an image part's base64 is no prompt text.
        prompt_tokens=sum(
            len(_tokens(attachments.content_text(m.get("content")))) for m in messages
        ),
        text=text,
    )


@csrf_exempt  # an API endpoint called by the SDK with a key, not by a browser form
@require_POST
async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    refusal = await _refusal(request)
    if refusal is not None:
        return refusal
    try:
        if _own_call(request):
            # This site's own request, which carries a conversation's images: the size
            # limit is limits.py's for such calls, not DATA_UPLOAD_MAX_MEMORY_SIZE.
            body = await sync_to_async(request.read, thread_sensitive=False)()
        else:
            # Django refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE before reading them.
            body = request.body
    except RequestDataTooBig:
        return _error(413, "The request body is too large for the demo model.")
    call = await sync_to_async(_parse, thread_sensitive=False)(body)
    if isinstance(call, JsonResponse):
        return call
    request_id = f"req_demo_{uuid.uuid4().hex[:16]}"
    if call.stream:
        response: HttpResponse | StreamingHttpResponse = StreamingHttpResponse(
            _stream(call), content_type="text/event-stream; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
    else:
        completion = len(_tokens(call.text))
        response = JsonResponse(
            {
                "id": f"chatcmpl-demo{uuid.uuid4().hex[:20]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": call.model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": call.text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": call.prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": call.prompt_tokens + completion,
                },
            }
        )
    response["x-request-id"] = request_id
    return response


@require_GET
async def models(request: HttpRequest) -> JsonResponse:
    refusal = await _refusal(request)
    if refusal is not None:
        return refusal
    return JsonResponse(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "chatsite"}
                for name in settings.CHATSITE_DEMO_MODELS
            ],
        }
    )
