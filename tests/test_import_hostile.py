"""Every field of an import, replaced in turn by hostile values: the parser accepts the
file or refuses it with ImportRefused (a sentence naming the conversation and the field),
never anything else; an upload of it is refused with that sentence (400) and changes
nothing, or imports cleanly."""

from __future__ import annotations

import copy
import io
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from bench import import_files
from chatsite.throttle import throttle_forget
from conversations.models import Conversation, ImportJob, Message
from conversations.portability import parsing, reading
from tests.conftest import make_user
from tests.test_portability import CHATGPT

pytestmark = pytest.mark.django_db

LIMIT_CHARS = 1000  # CHATSITE_IMPORT_MAX_MESSAGE_CHARS in these tests


class Raw:
    """JSON text put in place as it is (what json.dumps cannot write)."""

    def __init__(self, text: str) -> None:
        self.text = text


HOSTILE: dict[str, Any] = {
    "list": [1, 2],
    "object": {"a": 1},
    "empty list": [],
    "empty object": {},
    "nested": [[[[{"a": [1]}]]]],
    "too deep": Raw("[" * 100 + "]" * 100),
    "huge int": 10**30,
    "int too long to read": Raw("9" * 5000),
    "negative": -1,
    "zero": 0,
    "float": 1.5,
    "1e300": Raw("1e300"),
    "1e999": Raw("1e999"),
    "-1e999": Raw("-1e999"),
    "NaN": Raw("NaN"),
    "Infinity": Raw("Infinity"),
    "true": True,
    "null": None,
    "empty string": "",
    "long string": "x" * (LIMIT_CHARS + 1),
    "NUL": "a\u0000b",
    "lone surrogate": Raw('"\\udc00"'),
    "year 1 east of UTC": "0001-01-01T00:00:00+14:00",
    "year 9999 west of UTC": "9999-12-31T23:59:59-05:00",
    "not a date": "yesterday",
    "a date": "2024-02-30T10:00:00",
}
# Refusals of the file as a whole (not of one field): they cannot name a field.
FILE_LEVEL = (
    "not valid JSON",
    "number too long",
    "neither a chatsite export",
    "holds no conversations",  # a ChatGPT tree left with no user or assistant text
)

CHATSITE = {
    "format": "chatsite",
    "version": 1,
    "exported_at": "2024-05-01T10:00:00+00:00",
    "conversations": [
        {
            "title": "Tides",
            "title_source": "user",
            "model": "m1",
            "system_prompt": "Be brief.",
            "pinned": True,
            "archived": False,
            "created_at": "2024-05-01T09:00:00+00:00",
            "updated_at": "2024-05-01T09:05:00+00:00",
            "current_message": 2,
            "messages": [
                {
                    "id": 1,
                    "parent": None,
                    "role": "user",
                    "content": "Why tides?",
                    "hidden": False,
                    "status": "complete",
                    "finish_reason": "",
                    "error": "",
                    "model": "",
                    "usage": {"prompt_tokens": None, "completion_tokens": None},
                    "created_at": "2024-05-01T09:00:00+00:00",
                    "completed_at": None,
                },
                {
                    "id": 2,
                    "parent": 1,
                    "role": "assistant",
                    "content": "The moon.",
                    "hidden": False,
                    "status": "stopped",
                    "finish_reason": "stop",
                    "error": "",
                    "model": "m1",
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                    "created_at": 1714554000,
                    "completed_at": "2024-05-01T09:00:02",
                },
            ],
        }
    ],
}

Path = tuple[str | int, ...]


def _paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """Every key of every object and every item of every list, at any depth."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*path, key)
            yield from _paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*path, index)
            yield from _paths(inner, (*path, index))


def _replaced(document: Any, path: Path, value: Any) -> bytes:
    changed = copy.deepcopy(document)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "@@RAW@@" if isinstance(value, Raw) else value
    text = json.dumps(changed)
    if isinstance(value, Raw):
        text = text.replace('"@@RAW@@"', value.text)
    return text.encode()


def _variants() -> Iterator[tuple[str, Path, str, bytes]]:
    for name, document in (("chatsite", CHATSITE), ("chatgpt", CHATGPT)):
        for path in _paths(document):
            for label, value in HOSTILE.items():
                yield name, path, label, _replaced(document, path, value)


def _outcome(data: bytes) -> str | None:
    """None when the file imports, else the sentence that refuses it; any other
    exception fails the test."""
    try:
        drafts = list(parsing.import_drafts(io.BytesIO(data)))
    except reading.ImportRefused as exc:
        message = str(exc)
        assert message.endswith("."), message
        return message
    assert drafts
    return None


def _names_the_field(message: str, path: Path) -> bool:
    if any(phrase in message for phrase in FILE_LEVEL):
        return True
    keys = [step for step in path if isinstance(step, str)]
    if not keys:  # a ChatGPT conversation replaced whole
        return "Conversation 1" in message
    key = keys[-1]
    if key == "id" and "parent" in message:  # the next message's parent no longer exists
        return True
    if key == "mapping" and "node" in message:  # a node of the mapping, named
        return True
    return key.rstrip("s").lower() in message.lower()


@pytest.fixture(autouse=True)
def _small_text_limit(settings: Any) -> None:
    settings.CHATSITE_IMPORT_MAX_MESSAGE_CHARS = LIMIT_CHARS


def test_the_valid_files_import() -> None:
    assert _outcome(json.dumps(CHATSITE).encode()) is None
    assert _outcome(json.dumps(CHATGPT).encode()) is None


def test_every_field_with_every_hostile_value_is_accepted_or_refused_clearly() -> None:
    refused = accepted = 0
    for name, path, label, data in _variants():
        message = _outcome(data)
        if message is None:
            accepted += 1
            continue
        refused += 1
        assert _names_the_field(message, path), (name, path, label, message)
        # Inside a conversation, the sentence says which one.
        if len(path) > 2 and not any(phrase in message for phrase in FILE_LEVEL):
            assert "Conversation 1" in message, (name, path, label, message)
    # Both outcomes were exercised, many times.
    assert refused > 1000
    assert accepted > 50


def test_uploads_of_hostile_files_are_refused_with_the_sentence_and_change_nothing() -> None:
    """The same files through the view: a refusal is a 400 carrying the parser's
    sentence, and writes nothing; an accepted one imports (never a 500). Two values per
    field, rotating, keep this quick while every field and every value is uploaded."""
    alice = make_user("alice")
    client = Client()
    client.force_login(alice)
    labels = list(HOSTILE)
    uploads = 0
    for n, (name, path, label, data) in enumerate(_variants()):
        if (n + labels.index(label)) % 13:  # two values per field, a different two each time
            continue
        uploads += 1
        expected = _outcome(data)
        before = (Conversation.objects.count(), Message.objects.count())
        throttle_forget()  # hundreds of uploads from one user: past the site's rate
        response = client.post(
            "/settings/import/", {"file": SimpleUploadedFile("hostile.json", data)}
        )
        page = response.content.decode()
        where = (name, path, label)
        if expected is None:
            assert response.status_code == 200, where
            assert "Imported 1 conversation" in page, where
            continue
        assert response.status_code == 400, (where, response.status_code)
        assert "Nothing was imported" in page, where
        first_words = expected.split(":")[0].replace('"', "&quot;")
        assert first_words in page, (where, expected)
        assert (Conversation.objects.count(), Message.objects.count()) == before, where
    assert uploads > 200
    assert not ImportJob.objects.filter(status=ImportJob.Status.RUNNING).exists()


CHATSITE_MESSAGE = ("conversations", 0, "messages", 1)
CHATGPT_NODE = (0, "mapping", "a2")

REFUSED = [
    ("a parent that is a list", CHATSITE, (*CHATSITE_MESSAGE, "parent"), [1], "parent must be"),
    ("a parent that is an object", CHATSITE, (*CHATSITE_MESSAGE, "parent"), {}, "parent must be"),
    ("an id that is a float", CHATSITE, (*CHATSITE_MESSAGE, "id"), 2.5, "id must be an id"),
    ("an id that is true", CHATSITE, (*CHATSITE_MESSAGE, "id"), True, "id must be an id"),
    (
        "a date in year 0 once in UTC",
        CHATSITE,
        (*CHATSITE_MESSAGE, "created_at"),
        "0001-01-01T00:00:00+14:00",
        "created_at is out of range",
    ),
    (
        "a date past year 9999 once in UTC",
        CHATSITE,
        ("conversations", 0, "updated_at"),
        "9999-12-31T23:59:59-05:00",
        "updated_at is out of range",
    ),
    (
        "a timestamp of 1e300",
        CHATSITE,
        (*CHATSITE_MESSAGE, "created_at"),
        Raw("1e300"),
        "created_at is out of range",
    ),
    ("a date that is not one", CHATSITE, (*CHATSITE_MESSAGE, "completed_at"), "soon", "not a date"),
    ("NaN", CHATSITE, (*CHATSITE_MESSAGE, "created_at"), Raw("NaN"), "not valid JSON"),
    ("Infinity", CHATGPT, (0, "create_time"), Raw("Infinity"), "not valid JSON"),
    (
        "tokens as text",
        CHATSITE,
        (*CHATSITE_MESSAGE, "usage", "prompt_tokens"),
        "5",
        "usage.prompt_tokens must be a whole number",
    ),
    (
        "tokens past a 32-bit column",
        CHATSITE,
        (*CHATSITE_MESSAGE, "usage", "total_tokens"),
        2**31,
        "usage.total_tokens must be a whole number",
    ),
    ("usage as a list", CHATSITE, (*CHATSITE_MESSAGE, "usage"), [5], "usage must be an object"),
    ("pinned as text", CHATSITE, ("conversations", 0, "pinned"), "yes", "pinned must be true"),
    ("a ChatGPT parent list", CHATGPT, (*CHATGPT_NODE, "parent"), ["u1"], "parent must be"),
    ("ChatGPT children of numbers", CHATGPT, (*CHATGPT_NODE, "children"), [1], "children must"),
    (
        "a ChatGPT time in the far future",
        CHATGPT,
        (*CHATGPT_NODE, "message", "create_time"),
        Raw("1e300"),
        "message.create_time is out of range",
    ),
    (
        "ChatGPT parts that are no list",
        CHATGPT,
        (*CHATGPT_NODE, "message", "content", "parts"),
        "text",
        "message.content.parts must be a list",
    ),
]


@pytest.mark.parametrize(
    ("label", "document", "path", "value", "message"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_malformed_fields_are_refused_with_a_sentence_naming_them(
    label: str, document: Any, path: Path, value: Any, message: str
) -> None:
    refusal = _outcome(_replaced(document, path, value))
    assert refusal is not None
    assert message in refusal
    if "not valid JSON" not in message:
        assert refusal.startswith("Conversation 1")


ACCEPTED = [
    ("a null title", CHATSITE, ("conversations", 0, "title"), None),
    ("no dates", CHATSITE, (*CHATSITE_MESSAGE, "created_at"), None),
    ("null usage", CHATSITE, (*CHATSITE_MESSAGE, "usage"), None),
    ("a null parent", CHATSITE, (*CHATSITE_MESSAGE, "parent"), None),
    ("a text id", CHATSITE, ("conversations", 0, "messages", 0, "id"), "1"),
    ("a null ChatGPT message", CHATGPT, (0, "mapping", "sys", "message"), None),
    ("null ChatGPT children", CHATGPT, (*CHATGPT_NODE, "children"), None),
    ("a null ChatGPT create_time", CHATGPT, (0, "create_time"), None),
]


@pytest.mark.parametrize(
    ("label", "document", "path", "value"), ACCEPTED, ids=[a[0] for a in ACCEPTED]
)
def test_null_and_missing_optional_fields_are_allowed(
    label: str, document: Any, path: Path, value: Any
) -> None:
    assert _outcome(_replaced(document, path, value)) is None


def test_keys_of_a_chatsite_export_may_come_in_any_order() -> None:
    reordered = {
        "conversations": CHATSITE["conversations"],
        "version": 1,
        "exported_at": "x",
        "format": "chatsite",
    }
    assert _outcome(json.dumps(reordered).encode()) is None
    wrong = {**reordered, "version": 2}
    assert "unknown version" in (_outcome(json.dumps(wrong).encode()) or "")
    other = {**reordered, "format": "something"}
    assert "neither a chatsite export" in (_outcome(json.dumps(other).encode()) or "")


def _mutations(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    """Damaged copies: bytes overwritten, the end cut off, junk inserted."""
    rng = random.Random(seed)
    for n in range(count):
        damaged = bytearray(data)
        if n % 3 == 0:
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif n % 3 == 1:
            damaged = damaged[: rng.randrange(1, len(damaged))]
        else:
            at = rng.randrange(len(damaged))
            damaged[at:at] = rng.randbytes(rng.randint(1, 20))
        yield bytes(damaged)


@pytest.mark.parametrize("kind", ["json", "zip", "chatgpt"])
def test_damaged_files_are_accepted_or_refused_clearly_never_anything_else(kind: str) -> None:
    data = {
        "json": json.dumps(CHATSITE).encode(),
        "zip": import_files.zipped("conversations/a.json", json.dumps(CHATSITE).encode()),
        "chatgpt": json.dumps(CHATGPT).encode(),
    }[kind]
    outcomes = {_outcome(damaged) is None for damaged in _mutations(data, 1500, seed=7)}
    assert outcomes == {True, False}  # some still import, most are refused: none crash
