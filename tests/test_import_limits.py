"""The cost of an import is bounded per byte of it: limits are enforced while the file is
read, so a small file that would amplify (600,000 empty conversations, 600,000 children
references, absurd nesting, a zip of any of these) is refused after reading a little of
it, building a little, and the walks over what is kept are linear.

No wall-clock assertions here: what is counted is the bytes the parser read and the
memory it held (bench/imports.py prints the timings)."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from bench import import_files
from conversations.models import Conversation
from conversations.portability import parsing, reading
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SIX_HUNDRED_THOUSAND = 600_000


class Counting(io.BytesIO):
    """A file that counts what was read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def _refusal(upload: io.BytesIO) -> str:
    with pytest.raises(reading.ImportRefused) as refused:
        for _draft in parsing.import_drafts(upload):
            pass
    return str(refused.value)


def _peak_bytes(upload: io.BytesIO) -> tuple[str, int]:
    tracemalloc.start()
    try:
        message = _refusal(upload)
        return message, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("chatgpt", [False, True], ids=["chatsite", "chatgpt"])
def test_600000_empty_conversations_are_refused_at_the_limit_having_read_a_sliver(
    chatgpt: bool,
) -> None:
    data = import_files.empty_conversations(SIX_HUNDRED_THOUSAND, chatgpt=chatgpt)
    assert len(data) > 8_000_000
    upload = Counting(data)
    message, peak = _peak_bytes(upload)
    assert "more than 5,000 conversations" in message
    # Stopped at conversation 5,001: about 80 KB of the file read (plus one read-ahead
    # chunk), none of the rest parsed, and no list of 600,000 built.
    assert upload.read_bytes < 300_000
    assert peak < 5_000_000


def test_the_same_inside_a_20_kb_zip_is_refused_without_inflating_it() -> None:
    data = import_files.empty_conversations(SIX_HUNDRED_THOUSAND)
    archive = import_files.zipped("conversations.json", data)
    assert len(archive) < 40_000
    upload = Counting(archive)
    message, peak = _peak_bytes(upload)
    assert "more than 5,000 conversations" in message
    assert upload.read_bytes < 100_000  # the whole zip is 20 KB; 10 MB were never inflated
    assert peak < 5_000_000


def test_a_zip_bomb_upload_is_refused_with_the_limit_and_imports_nothing() -> None:
    alice = make_user("alice")
    client = Client()
    client.force_login(alice)
    archive = import_files.zipped(
        "conversations.json", import_files.empty_conversations(SIX_HUNDRED_THOUSAND)
    )
    response = client.post("/settings/import/", {"file": SimpleUploadedFile("a.zip", archive)})
    assert response.status_code == 400
    assert "more than 5,000 conversations" in response.content.decode()
    assert Conversation.objects.count() == 0


def test_the_conversation_limit_counts_across_the_files_of_a_zip(settings: Any) -> None:
    settings.CHATSITE_IMPORT_MAX_CONVERSATIONS = 30
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(3):
            archive.writestr(f"part-{n}.json", import_files.empty_conversations(12))
    assert "more than 30 conversations" in _refusal(io.BytesIO(buffer.getvalue()))


def test_600000_children_references_are_refused_having_read_a_sliver() -> None:
    data = import_files.chatgpt_children(SIX_HUNDRED_THOUSAND)
    upload = Counting(data)
    message, peak = _peak_bytes(upload)
    assert "children lists name more messages than a conversation" in message
    assert upload.read_bytes < 300_000  # of 3.6 MB
    assert peak < 5_000_000


def test_children_beyond_what_a_tree_of_that_many_nodes_holds_are_refused() -> None:
    # Three nodes hold two links; a fourth reference can only be padding or a cycle.
    data = import_files.chatgpt_children(3, nodes=3)
    message = _refusal(io.BytesIO(data))
    assert "name 3 messages, more than a tree of 3 messages can hold" in message


def test_a_conversation_past_the_message_limit_stops_the_reading_there(settings: Any) -> None:
    settings.CHATSITE_IMPORT_MAX_MESSAGES = 100
    data = import_files.chatsite_export(1, 20_000, words=2)
    upload = Counting(data)
    message = _refusal(upload)
    assert "Conversation 1 has more than 100 messages" in message
    assert upload.read_bytes < len(data) // 10


@pytest.mark.parametrize("opener", [b"[", b'{"a":'], ids=["lists", "objects"])
def test_absurd_nesting_is_refused_at_the_depth_cap_having_read_a_sliver(opener: bytes) -> None:
    data = opener * 2_000_000
    upload = Counting(data)
    message = _refusal(upload)
    assert "nests more than 64 levels deep" in message
    assert upload.read_bytes < 200_000


def _chain(nodes: int, *, cycle: bool = False) -> bytes:
    mapping: dict[str, Any] = {}
    for n in range(nodes):
        mapping[f"n{n}"] = {
            "parent": f"n{n - 1}" if n else None,
            "children": [f"n{n + 1}"] if n + 1 < nodes else [],
            "message": {
                "author": {"role": "user" if n % 2 == 0 else "assistant"},
                "content": {"parts": [f"turn {n}"]},
            },
        }
    if cycle:  # the last node points back at the second: a loop the walk must not follow
        mapping[f"n{nodes - 1}"]["children"] = ["n1"]
        mapping["n0"]["children"] = ["n1"]
    return json.dumps(
        [{"title": "chain", "current_node": f"n{nodes - 1}", "mapping": mapping}]
    ).encode()


def test_a_deep_chatgpt_tree_imports_parents_first_and_a_cycle_cannot_loop() -> None:
    [draft] = list(parsing.import_drafts(io.BytesIO(_chain(10_000))))
    assert len(draft.messages) == 10_000
    assert draft.messages[0].parent is None
    assert all(m.parent == f"n{n}" for n, m in enumerate(draft.messages[1:]))
    assert draft.current == "n9999"
    # n9999 lists n1 as its child: one reference too many for a tree of 3 nodes.
    message = _refusal(io.BytesIO(_chain(3, cycle=True)))
    assert "more than a tree of 3 messages can hold" in message


def test_a_cycle_without_a_root_is_left_out_not_followed() -> None:
    mapping = {
        "a": {"parent": "b", "children": ["b"], "message": None},
        "b": {"parent": "a", "children": [], "message": None},
        "r": {"parent": None, "children": [], "message": None},
        "u": {
            "parent": None,
            "children": [],
            "message": {"author": {"role": "user"}, "content": {"parts": ["hello"]}},
        },
    }
    [draft] = list(parsing.import_drafts(io.BytesIO(json.dumps([{"mapping": mapping}]).encode())))
    assert [m.content for m in draft.messages] == ["hello"]


def test_a_wide_chatgpt_tree_keeps_every_branch_as_a_version() -> None:
    children = [f"a{n}" for n in range(5_000)]
    mapping: dict[str, Any] = {
        "q": {
            "parent": None,
            "children": children,
            "message": {"author": {"role": "user"}, "content": {"parts": ["Which?"]}},
        }
    }
    for child in children:
        mapping[child] = {
            "parent": "q",
            "children": [],
            "message": {"author": {"role": "assistant"}, "content": {"parts": [child]}},
        }
    [draft] = list(parsing.import_drafts(io.BytesIO(json.dumps([{"mapping": mapping}]).encode())))
    assert len(draft.messages) == 5_001
    assert {m.parent for m in draft.messages[1:]} == {"q"}


def test_memory_is_bounded_by_one_conversation_not_the_file() -> None:
    """Ten conversations of 2,000 messages: checking them holds about one at a time."""
    one = import_files.chatsite_export(1, 2_000)
    ten = import_files.chatsite_export(10, 2_000)

    def peak(data: bytes) -> int:
        tracemalloc.start()
        try:
            parsing.import_check(io.BytesIO(data))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(ten) < 2 * peak(one)  # ten times the file, not ten times the memory
