"""Export (Markdown, JSON, a streamed zip of everything), import (chatsite, ChatGPT) and
account deletion. Bad or hostile files change nothing."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from conversations import message_selectors, services, turn_services
from conversations.models import Conversation, Message
from conversations.portability import exports
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-password"


def _finish(answer: Message, text: str, **extra: Any) -> Message:
    done = services.message_finalize(message_id=answer.pk, content=text, **extra)
    assert done is not None
    return done


def _rich_conversation(owner: Any) -> Conversation:
    """Versions, statuses, usage, instructions: everything an export must carry."""
    conversation = services.conversation_create(
        owner=owner, model="m1", title="Tides", system_prompt="Be brief."
    )
    first = turn_services.turn_start(
        conversation=conversation, text="Why tides?", generation_channel="c"
    )
    _finish(first.answer, "The **moon**.", status="stopped")
    again = turn_services.answer_retry(
        conversation=conversation, message_id=first.answer.pk, generation_channel="c"
    )
    _finish(
        again, "Gravity.", status="complete", prompt_tokens=5, completion_tokens=2, total_tokens=7
    )
    services.conversation_show_version(conversation=conversation, message_id=first.answer.pk)
    second = turn_services.turn_start(
        conversation=conversation, text="<b>more</b>", generation_channel="c"
    )
    _finish(second.answer, "", status="error", error="The service is down.")
    services.conversation_set_flags(conversation=conversation, pinned=True)
    return Conversation.objects.get(pk=conversation.pk)


def _document(conversation: Conversation) -> dict[str, Any]:
    conversation = Conversation.objects.get(pk=conversation.pk)
    return exports.conversation_document(
        conversation, message_selectors.message_all(conversation=conversation)
    )


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _collect(response: Any) -> list[bytes]:
    async def read() -> list[bytes]:
        return [bytes(chunk) async for chunk in response.streaming_content]

    return async_to_sync(read)()


def _upload(client: Client, name: str, data: bytes) -> Any:
    return client.post("/settings/import/", {"file": SimpleUploadedFile(name, data)})


def test_json_export_round_trips_to_the_same_conversation() -> None:
    alice = make_user("alice")
    original = _rich_conversation(alice)
    client = _client(alice)
    response = client.get(f"/conversations/{original.public_id}/export.json")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="')
    exported = response.content
    bob = make_user("bob")
    imported = _upload(_client(bob), "tides.json", exported)
    assert imported.status_code == 200
    assert "Imported 1 conversation" in imported.content.decode()
    [copy] = Conversation.objects.filter(owner=bob)
    assert copy.public_id != original.public_id  # new ids: a file never touches old rows
    assert _document(copy) == _document(original)
    # The path shown is the same too (the remembered version survives the trip).
    assert [m.message.content for m in message_selectors.message_list(conversation=copy)] == [
        m.message.content for m in message_selectors.message_list(conversation=original)
    ]


def test_markdown_export_is_the_conversation_as_shown() -> None:
    alice = make_user("alice")
    conversation = _rich_conversation(alice)
    text = _client(alice).get(f"/conversations/{conversation.public_id}/export.md").content.decode()
    assert text.startswith("# Tides\n")
    assert "> Instructions: Be brief." in text
    assert "---\n\n**You**\n\nWhy tides?" in text
    assert "---\n\n**Assistant** (m1)\n\nThe **moon**." in text  # the version being shown
    assert "Gravity." not in text
    assert "*(Stopped)*" in text
    assert "*(Error)*" in text
    assert "other version(s)" in text


def test_markdown_turns_cannot_be_taken_for_an_answers_own_headings() -> None:
    """Each turn is a rule and a bold speaker; the answers' headings stay theirs, and an
    answer that stopped inside a code fence does not swallow the turns after it."""
    from markdown_it import MarkdownIt

    alice = make_user("alice")
    conversation = services.conversation_create(owner=alice, model="m1", title="Plans")
    first = turn_services.turn_start(
        conversation=conversation, text="Plan?", generation_channel="c"
    )
    _finish(first.answer, "# Plan\n\n## You\n\nStep one.\n\n```python\nprint(1)", status="stopped")
    second = turn_services.turn_start(
        conversation=conversation, text="More", generation_channel="c"
    )
    _finish(second.answer, "## Assistant\n\nDone.", status="complete")
    text = _client(alice).get(f"/conversations/{conversation.public_id}/export.md").content.decode()
    tokens = MarkdownIt("commonmark").parse(text)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["Plans", "Plan", "You", "Assistant"]  # the title, then the answers'
    turns = [
        tokens[i + 2].content for i, t in enumerate(tokens[:-2]) if t.type == "hr"
    ]  # after each rule: a paragraph whose text is the speaker
    assert turns == ["**You**", "**Assistant** (m1)", "**You**", "**Assistant** (m1)"]
    assert [t.content for t in tokens if t.type == "fence"] == ["print(1)\n"]
    assert "## You\n\nStep one." in text  # the answer's text as written


def test_the_zip_of_everything_streams_every_conversation_of_the_owner_only() -> None:
    alice = make_user("alice")
    for n in range(45):  # more than one batch
        services.conversation_create(owner=alice, model="m", title=f"Chat {n}")
    _rich_conversation(alice)
    services.conversation_create(owner=make_user("bob"), model="m", title="Bob's secret")
    response = _client(alice).get("/settings/export.zip")
    assert response.status_code == 200
    assert response.streaming
    chunks = _collect(response)
    assert len(chunks) > 2  # sent as it is made, not built whole first
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    names = archive.namelist()
    assert len([n for n in names if n.endswith(".json")]) == 46
    assert len([n for n in names if n.endswith(".md")]) == 46
    everything = b"".join(archive.read(n) for n in names)
    assert b"Bob's secret" not in everything
    # Each JSON file in the zip imports as it is (the archive itself imports too).
    carol = make_user("carol")
    assert _upload(_client(carol), "all.zip", b"".join(chunks)).status_code == 200
    assert Conversation.objects.filter(owner=carol).count() == 46


CHATGPT = [
    {
        "title": "Packing list",
        "create_time": 1700000000.0,
        "update_time": 1700000500.0,
        "current_node": "a2",
        "mapping": {
            "root": {"id": "root", "message": None, "parent": None, "children": ["sys"]},
            "sys": {
                "id": "sys",
                "message": {
                    "author": {"role": "system"},
                    "content": {"content_type": "text", "parts": [""]},
                    "metadata": {"is_visually_hidden_from_conversation": True},
                },
                "parent": "root",
                "children": ["u1"],
            },
            "u1": {
                "id": "u1",
                "message": {
                    "author": {"role": "user"},
                    "create_time": 1700000001.0,
                    "content": {"content_type": "text", "parts": ["What to pack?"]},
                    "metadata": {},
                },
                "parent": "sys",
                "children": ["a1", "a2"],
            },
            "a1": {
                "id": "a1",
                "message": {
                    "author": {"role": "assistant"},
                    "content": {"content_type": "text", "parts": ["Socks."]},
                    "metadata": {"model_slug": "gpt-4o"},
                },
                "parent": "u1",
                "children": [],
            },
            "a2": {
                "id": "a2",
                "message": {
                    "author": {"role": "assistant"},
                    "content": {"content_type": "text", "parts": ["A <script>x</script> hat."]},
                    "metadata": {"model_slug": "gpt-4o"},
                },
                "parent": "u1",
                "children": ["t1"],
            },
            "t1": {
                "id": "t1",
                "message": {
                    "author": {"role": "tool"},
                    "content": {"content_type": "text", "parts": ["tool output"]},
                    "metadata": {},
                },
                "parent": "a2",
                "children": [],
            },
        },
    }
]


def test_a_chatgpt_export_imports_with_its_branches() -> None:
    alice = make_user("alice")
    response = _upload(_client(alice), "conversations.json", json.dumps(CHATGPT).encode())
    assert response.status_code == 200
    [conversation] = Conversation.objects.filter(owner=alice)
    assert (conversation.title, conversation.model) == ("Packing list", "gpt-4o")
    path = message_selectors.message_list(conversation=conversation)
    assert [(m.message.role, m.message.content) for m in path] == [
        ("user", "What to pack?"),
        ("assistant", "A <script>x</script> hat."),  # kept as text; rendered sanitised
    ]
    shown = path[1]
    assert (shown.versions.number, shown.versions.count) == (2, 2)
    assert "tool output" not in json.dumps(_document(conversation))
    page = _client(alice).get(f"/conversations/{conversation.public_id}/").content.decode()
    assert "<script>x</script>" not in page


HOSTILE = [
    ("not json", b"{nope", "not valid JSON"),
    ("deep", b"[" * 200_000 + b"]" * 200_000, "not valid JSON"),
    ("other", json.dumps({"hello": "world"}).encode(), "neither a chatsite export"),
    ("version", json.dumps({"format": "chatsite", "version": 99}).encode(), "unknown version"),
    (
        "forward parent",
        json.dumps(
            {
                "format": "chatsite",
                "version": 1,
                "conversations": [
                    {
                        "title": "t",
                        "messages": [
                            {"id": 1, "parent": 2, "role": "user", "content": "a"},
                            {"id": 2, "parent": 1, "role": "assistant", "content": "b"},
                        ],
                    }
                ],
            }
        ).encode(),
        "parent that comes later",
    ),
    (
        "bad role",
        json.dumps(
            {
                "format": "chatsite",
                "version": 1,
                "conversations": [
                    {"title": "t", "messages": [{"id": 1, "role": "system", "content": "x"}]}
                ],
            }
        ).encode(),
        "unknown role",
    ),
    (
        "bad content",
        json.dumps(
            {
                "format": "chatsite",
                "version": 1,
                "conversations": [
                    {"title": "t", "messages": [{"id": 1, "role": "user", "content": {"a": 1}}]}
                ],
            }
        ).encode(),
        "must be text",
    ),
    ("bad zip", b"PK\x03\x04" + b"\x00" * 100, "not a readable zip"),
    ("empty", json.dumps([]).encode(), "no conversations"),
]


@pytest.mark.parametrize(("label", "data", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_bad_and_hostile_files_are_refused_clearly_and_change_nothing(
    label: str, data: bytes, message: str
) -> None:
    alice = make_user("alice")
    services.conversation_create(owner=alice, model="m", title="Existing")
    response = _upload(_client(alice), f"{label}.json", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "Nothing was imported" in response.content.decode()
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Existing"]
    assert Message.objects.count() == 0


def test_a_zip_bomb_and_oversized_files_are_refused(settings: Any) -> None:
    alice = make_user("alice")
    settings.CHATSITE_IMPORT_MAX_BYTES = 100_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.json", b" " * 5_000_000)  # tiny compressed, huge inflated
    bomb = _upload(_client(alice), "bomb.zip", buffer.getvalue())
    assert bomb.status_code == 400
    assert "unpacks to more" in bomb.content.decode()
    big = _upload(_client(alice), "big.json", b" " * 200_000)
    assert big.status_code == 400
    assert "larger than" in big.content.decode()
    assert Conversation.objects.count() == 0


def test_a_file_that_fails_half_way_imports_nothing() -> None:
    alice = make_user("alice")
    good = {"title": "good", "messages": [{"id": 1, "role": "user", "content": "hi"}]}
    bad = {"title": "bad", "messages": [{"id": 1, "role": "wizard", "content": "hi"}]}
    body = json.dumps({"format": "chatsite", "version": 1, "conversations": [good, bad]})
    assert _upload(_client(alice), "x.json", body.encode()).status_code == 400
    assert Conversation.objects.count() == 0


def test_other_users_conversations_cannot_be_exported() -> None:
    owner = services.conversation_create(owner=make_user("owner"), model="m", title="Private")
    mallory = _client(make_user("mallory"))
    for kind in ("json", "md"):
        assert mallory.get(f"/conversations/{owner.public_id}/export.{kind}").status_code == 404
    assert (
        _client(make_user("x")).get(f"/conversations/{owner.public_id}/export.exe").status_code
        == 404
    )
    assert Client().get("/settings/export.zip").status_code == 302  # sign in first


@pytest.mark.django_db(transaction=True)  # the view stops answers through Channels
def test_deleting_the_account_needs_the_password_and_removes_everything() -> None:
    alice = make_user("alice", PASSWORD)
    _rich_conversation(alice)
    services.user_settings_update(
        user=alice, choices=["m"], default_model="m", default_system_prompt="x"
    )
    bob = make_user("bob", PASSWORD)
    _rich_conversation(bob)
    client = _client(alice)
    wrong = client.post("/settings/delete-account/", {"password": "guess"})
    assert wrong.status_code == 400
    assert "Nothing was deleted" in wrong.content.decode()
    assert Conversation.objects.filter(owner=alice).exists()
    right = client.post("/settings/delete-account/", {"password": PASSWORD})
    assert right.status_code == 302
    assert not type(alice).objects.filter(pk=alice.pk).exists()
    assert not Conversation.objects.filter(owner_id=alice.pk).exists()
    assert Conversation.objects.filter(owner=bob).count() == 1  # nobody else's
    assert client.get("/").status_code == 302  # signed out
