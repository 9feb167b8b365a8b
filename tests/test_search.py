"""Search over titles and message text, scoped to the owner, on SQLite (FTS5) and, under
scripts/with-postgres.sh, on PostgreSQL (GIN): the same tests run on both."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from conversations import selectors, services, turn_services
from conversations.models import Conversation
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _chat(owner, title: str, *texts: str) -> Conversation:
    conversation = services.conversation_create(owner=owner, model="m", title=title)
    for text in texts:
        turn = turn_services.turn_start(
            conversation=conversation, text=text, generation_channel="c"
        )
        services.message_finalize(
            message_id=turn.answer.pk, content=f"Answer about {text}", status="complete"
        )
    return conversation


def _titles(user, query: str) -> list[str]:
    return [r.title for r in selectors.conversation_search(user=user, query=query)]


def test_search_finds_message_text_and_titles_of_the_owner_only() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    _chat(alice, "Holiday plans", "Where should we go in Portugal?")
    _chat(alice, "Sourdough", "My starter smells of acetone")
    _chat(bob, "Bob's Portugal notes", "Portugal secrets of bob")
    assert _titles(alice, "portugal") == ["Holiday plans"]
    assert _titles(alice, "sourdough") == ["Sourdough"]  # by title
    assert _titles(alice, "acet") == ["Sourdough"]  # a prefix while typing
    assert _titles(alice, "starter acetone") == ["Sourdough"]  # every word
    assert _titles(alice, "starter portugal") == []
    assert _titles(bob, "sourdough") == []
    assert _titles(bob, "portugal") == ["Bob's Portugal notes"]


def test_snippets_mark_the_words_and_escape_everything_else() -> None:
    alice = make_user("alice")
    hostile = "A kiwi <script>alert(1)</script> \x01evil\x02 <img src=x onerror=alert(2)> kiwi"
    _chat(alice, "t", hostile)
    [result] = selectors.conversation_search(user=alice, query="kiwi")
    html = str(result.snippet)
    assert "<mark>kiwi</mark>" in html
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text
    assert html.count("<mark>") == html.count("</mark>")


def _answered(owner, question: str, answer: str) -> Conversation:
    conversation = services.conversation_create(owner=owner, model="m", title="t")
    turn = turn_services.turn_start(
        conversation=conversation, text=question, generation_channel="c"
    )
    services.message_finalize(message_id=turn.answer.pk, content=answer, status="complete")
    return conversation


def test_snippets_of_answers_are_plain_text_without_markdown() -> None:
    alice = make_user("alice")
    _answered(
        alice,
        "what helps?",
        "## Tips\n\nTry these **immune boosters**! A little *rest* helps, see "
        "[the guide](https://example.com/a_b).\n\n- `vitamin_c()` daily\n> ~~never~~ quoted",
    )
    [result] = selectors.conversation_search(user=alice, query="boosters")
    assert str(result.snippet) == (
        "Tips Try these immune <mark>boosters</mark>! A little rest helps, see the guide. "
        "vitamin_c() daily never quoted"
    )


def test_a_snippet_cut_from_the_middle_of_an_answer_loses_its_markers_too() -> None:
    alice = make_user("alice")
    # The window starts well inside the text, after the bold opened: "…boosters**!" was shown.
    _answered(alice, "q", "filler " * 300 + "Some **immune boosters**! A little `code` and _more_.")
    [result] = selectors.conversation_search(user=alice, query="boosters")
    html = str(result.snippet)
    assert html.startswith("…filler")
    assert html.endswith("immune <mark>boosters</mark>! A little code and more.")
    assert not set("*_`") & set(html)


def test_markdown_free_snippets_are_still_escaped_text() -> None:
    alice = make_user("alice")
    _answered(alice, "q", "# <script>alert(1)</script> **kiwi** <img src=x onerror=alert(2)>")
    [result] = selectors.conversation_search(user=alice, query="kiwi")
    html = str(result.snippet)
    assert html == (
        "&lt;script&gt;alert(1)&lt;/script&gt; <mark>kiwi</mark> &lt;img src=x onerror=alert(2)&gt;"
    )


def test_code_and_arithmetic_keep_their_characters() -> None:
    alice = make_user("alice")
    _answered(
        alice, "q", "Use `*args` with snake_case_name and 2*3*4:\n\n```py\nf(**kw)  # kiwi\n```"
    )
    [result] = selectors.conversation_search(user=alice, query="kiwi")
    snippet = str(result.snippet)
    assert snippet == "…with snake_case_name and 2*3*4: f(**kw) # <mark>kiwi</mark>"


def test_a_users_own_message_is_shown_as_typed() -> None:
    alice = make_user("alice")
    _answered(alice, "is **this** bold?", "No.")  # the site shows user text as plain text
    [result] = selectors.conversation_search(user=alice, query="this")
    assert str(result.snippet) == "is **<mark>this</mark>** bold?"


def test_better_matches_rank_first() -> None:
    alice = make_user("alice")
    _chat(alice, "Mentions it once", "a long text that names rhubarb once " + "filler " * 50)
    _chat(alice, "Mostly it", "rhubarb rhubarb rhubarb crumble")
    assert _titles(alice, "rhubarb") == ["Mostly it", "Mentions it once"]


@pytest.mark.parametrize(
    "query", ['"', "*", "NEAR(", "a OR", "-x", "col:val", "'); DROP TABLE x; --", "^", "  "]
)
def test_query_syntax_is_never_interpreted(query: str) -> None:
    alice = make_user("alice")
    _chat(alice, "t", "some text")
    assert isinstance(selectors.conversation_search(user=alice, query=query), list)


def test_the_index_follows_every_write() -> None:
    alice = make_user("alice")
    conversation = services.conversation_create(owner=alice, model="m")
    turn = turn_services.turn_start(conversation=conversation, text="hello", generation_channel="c")
    # The question at once; the answer's words when it ends, not at each checkpoint.
    assert _titles(alice, "hello") == ["hello"]
    services.message_checkpoint(message_id=turn.answer.pk, content="half a pomegranate")
    assert _titles(alice, "pomegranate") == []
    services.message_finalize(
        message_id=turn.answer.pk, content="half a pomegranate, a quince", status="complete"
    )
    assert _titles(alice, "pomegranate") == ["hello"]
    assert _titles(alice, "quince") == ["hello"]
    # An answer its process left streaming (a crash) is indexed when it is marked so.
    later = turn_services.turn_start(conversation=conversation, text="more", generation_channel="c")
    services.message_checkpoint(message_id=later.answer.pk, content="a medlar, half")
    assert _titles(alice, "medlar") == []
    assert services.message_interrupt_stale(older_than=-1)
    assert _titles(alice, "medlar") == ["hello"]
    services.conversation_rename(conversation=conversation, title="Fruit talk")
    assert _titles(alice, "fruit") == ["Fruit talk"]
    services.conversation_delete(conversation=conversation)
    assert _titles(alice, "quince") == []


def test_archived_conversations_are_found_and_marked() -> None:
    alice = make_user("alice")
    conversation = _chat(alice, "Old", "ancient history")
    services.conversation_set_flags(conversation=conversation, archived=True)
    [result] = selectors.conversation_search(user=alice, query="ancient")
    assert result.archived


def test_the_search_page_and_fragment(client: Client) -> None:
    alice = make_user("alice")
    mine = _chat(alice, "Mine", "the word zebra")
    _chat(make_user("bob"), "Theirs", "zebra too")
    assert client.get("/search/?q=zebra").status_code == 302  # sign in first
    client.force_login(alice)
    page = client.get("/search/?q=zebra")
    assert page.status_code == 200
    body = page.content.decode()
    assert f"/conversations/{mine.public_id}/#message-" in body
    assert "Theirs" not in body
    assert "<mark>zebra</mark>" in body
    fragment = client.get("/search/?q=zebra", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment
    assert "<mark>zebra</mark>" in fragment
    assert client.get("/search/?q=", HTTP_HX_REQUEST="true").content == b""


def test_the_database_index_is_used() -> None:
    # The search must not fall back to scanning every message as data grows.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'conversations_message_fts'"
            )
            assert cursor.fetchone()[0] == 1
        else:
            cursor.execute("SET enable_seqscan = off")
            cursor.execute(
                "EXPLAIN SELECT id FROM conversations_message WHERE "
                "search_vector @@ to_tsquery('simple', 'x:*')"
            )
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "conversations_message_fts" in plan
