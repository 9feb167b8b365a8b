"""Import files for the import tests and benchmark: a large export like the site writes,
and files built to amplify (many empty conversations, padded children lists). Pure
functions, no Django: the tests import them too."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "under", "tides"]
START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def _text(n: int, words: int) -> str:
    return " ".join(WORDS[(n + i) % len(WORDS)] for i in range(words))


def chatsite_export(conversations: int, messages: int, *, words: int = 12) -> bytes:
    """A chatsite export with every field the site writes: each conversation a chain of
    turns, every fifth answer a second version of the one before (a regenerate, which the
    conversation then follows), usage on answers."""
    documents: list[dict[str, Any]] = []
    for c in range(conversations):
        rows: list[dict[str, Any]] = []
        parent: int | None = None
        for n in range(1, messages + 1):
            user = n % 2 == 1
            regenerate = not user and n % 10 == 0
            rows.append(
                {
                    "id": n,
                    # A regenerate: a second answer to the question before last.
                    "parent": rows[-2]["parent"] if regenerate else parent,
                    "role": "user" if user else "assistant",
                    "content": _text(n, words),
                    "hidden": False,
                    "status": "complete",
                    "finish_reason": "" if user else "stop",
                    "error": "",
                    "model": "" if user else "m1",
                    "usage": {
                        "prompt_tokens": None if user else 10,
                        "completion_tokens": None if user else 20,
                        "total_tokens": None if user else 30,
                    },
                    "created_at": (START + timedelta(days=c, seconds=n)).isoformat(),
                    "completed_at": None,
                }
            )
            parent = n
        documents.append(
            {
                "title": f"Conversation {c + 1}",
                "title_source": "user",
                "model": "m1",
                "system_prompt": "",
                "pinned": False,
                "archived": False,
                "created_at": "2024-05-01T09:00:00+00:00",
                "updated_at": "2024-05-02T09:00:00+00:00",
                "current_message": messages or None,
                "messages": rows,
            }
        )
    envelope = {"format": "chatsite", "version": 1, "conversations": documents}
    return json.dumps(envelope, separators=(",", ":")).encode()


def empty_conversations(count: int, *, chatgpt: bool = False) -> bytes:
    """`count` empty conversations: 600,000 of them make about 10 MB."""
    if chatgpt:
        return b"[" + b",".join([b'{"mapping":{}}'] * count) + b"]"
    body = b",".join([b'{"messages":[]}'] * count)
    return b'{"format":"chatsite","version":1,"conversations":[' + body + b"]}"


def chatgpt_children(references: int, *, nodes: int = 3) -> bytes:
    """One ChatGPT conversation of a few nodes whose children lists add up to
    `references` (a tree of that many nodes holds nodes - 1)."""
    mapping: dict[str, Any] = {}
    for n in range(nodes):
        mapping[f"n{n}"] = {
            "parent": f"n{n - 1}" if n else None,
            "children": [],
            "message": {
                "author": {"role": "user"},
                "content": {"parts": [f"node {n}"]},
            },
        }
    padding = json.dumps([f"n{(i % (nodes - 1)) + 1}" for i in range(references)])
    text = json.dumps([{"title": "padded", "mapping": mapping}])
    return text.replace('"children": []', '"children": ' + padding, 1).encode()


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()
