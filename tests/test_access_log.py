"""Staff read a user's messages only after giving a reason, which is posted (never put in
a URL), recorded, and cannot be edited or deleted; the owner can see it. Message text is
searched only on its own page, which asks for a reason and records what it reveals."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client

from conversations import services, turn_services
from conversations.models import Conversation, Message
from moderation import access
from moderation.models import AccessLog, Flag
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

CONVERSATIONS = "/admin/conversations/conversation/"
TEXT_SEARCH = "/admin/conversations/conversation/text-search/"
ASKED = "Why do you need to read this conversation?"


@pytest.fixture
def boss() -> Client:
    client = Client()
    client.force_login(make_user("boss"))  # the first account: a superuser
    return client


def _chat(owner: Any, title: str, text: str) -> Conversation:
    conversation = services.conversation_create(owner=owner, model="m", title=title)
    turn = turn_services.turn_start(conversation=conversation, text=text, generation_channel="c")
    services.message_finalize(message_id=turn.answer.pk, content="noted", status="complete")
    return conversation


@pytest.fixture
def private() -> Conversation:
    return _chat(make_user("owner"), "Diary", "my private words")


def _page_url(private: Conversation, page: str) -> str:
    target = private.pk if page == "conversation" else private.messages.first().pk  # type: ignore[union-attr]
    return f"/admin/conversations/{page}/{target}/change/"


def _give_reason(client: Client, change_url: str, reason: str) -> Any:
    """What the reason form sends: a POST to the endpoint beside the change page."""
    return client.post(change_url.replace("/change/", "/reason/"), {"access_reason": reason})


def _urls(html: str) -> list[str]:
    return re.findall(r'(?:href|src|action)="([^"]*)"', html)


@pytest.mark.parametrize("page", ["conversation", "message"])
def test_reading_a_users_messages_asks_for_a_posted_reason_and_records_it(
    boss: Client, private: Conversation, page: str
) -> None:
    url = _page_url(private, page)
    asked = boss.get(url).content.decode()
    assert ASKED in asked
    assert "my private words" not in asked
    assert 'method="post"' in asked
    assert f'action="{url.replace("/change/", "/reason/")}"' in asked
    assert "csrfmiddlewaretoken" in asked
    assert not AccessLog.objects.exists()
    given = _give_reason(boss, url, "Support ticket 42")
    assert (given.status_code, given["Location"]) == (303, url)
    entry = AccessLog.objects.get()
    assert (entry.staff_username, entry.owner_id, entry.conversation_id, entry.reason) == (
        "boss",
        private.owner_id,
        private.pk,
        "Support ticket 42",
    )
    assert entry.path == url
    shown = boss.get(url).content.decode()
    assert "my private words" in shown
    assert AccessLog.objects.count() == 1  # a reload within the grant is the same look


@pytest.mark.parametrize("page", ["conversation", "message"])
def test_a_reason_in_the_query_string_opens_nothing_and_records_nothing(
    boss: Client, private: Conversation, page: str
) -> None:
    url = _page_url(private, page)
    response = boss.get(url, {"access_reason": "Support ticket 42"})
    assert ASKED in response.content.decode()
    assert "my private words" not in response.content.decode()
    endpoint = boss.get(url.replace("/change/", "/reason/"), {"access_reason": "Support"})
    assert endpoint.status_code == 405
    assert not AccessLog.objects.exists()
    assert "my private words" not in boss.get(url).content.decode()


def test_the_reason_is_in_no_url_of_the_flow(boss: Client, private: Conversation) -> None:
    reason = "Ticket SECRET-REASON-77"
    url = _page_url(private, "conversation")
    seen = _urls(boss.get(url).content.decode())
    given = _give_reason(boss, url, reason)
    seen.append(given["Location"])
    shown = boss.get(given["Location"]).content.decode()
    seen += _urls(shown)
    message_url = _page_url(private, "message")
    assert message_url in seen  # the inline's link to a message, opened by the same grant
    seen += _urls(boss.get(message_url).content.decode())
    for found in seen:
        assert "SECRET" not in found
        assert "access_reason" not in found
    assert "SECRET" not in AccessLog.objects.get().path


def test_a_grant_opens_that_conversation_and_its_messages_for_that_session_only(
    boss: Client, private: Conversation
) -> None:
    other = _chat(private.owner, "Other diary", "other private words")
    _give_reason(boss, _page_url(private, "conversation"), "Ticket 1")
    assert "my private words" in boss.get(_page_url(private, "message")).content.decode()
    elsewhere = boss.get(_page_url(other, "conversation")).content.decode()
    assert ASKED in elsewhere
    assert "other private words" not in elsewhere
    colleague = make_user("colleague")
    colleague.is_staff = colleague.is_superuser = True
    colleague.save()
    client = Client()
    client.force_login(colleague)
    assert ASKED in client.get(_page_url(private, "conversation")).content.decode()
    assert AccessLog.objects.count() == 1


def _later(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock the grants read moves past GRANT_SECONDS."""
    now = time.time() + access.GRANT_SECONDS + 1
    monkeypatch.setattr(access, "time", SimpleNamespace(time=lambda: now))


def _change_form_data(response: Any) -> dict[str, Any]:
    """The change form as the browser would post it back, unchanged."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, Any] = {}
    for form in forms:
        for field in form:
            value = field.value()
            if value is True:
                data[field.html_name] = "on"
            elif value not in (None, False):
                data[field.html_name] = value
    return data


def test_saving_the_change_form_needs_a_live_grant(
    boss: Client, private: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _page_url(private, "conversation")
    _give_reason(boss, url, "Rename on request")
    data = {**_change_form_data(boss.get(url)), "title": "Renamed"}
    saved = boss.post(url, data)
    assert saved.status_code == 302
    private.refresh_from_db()
    assert private.title == "Renamed"

    _later(monkeypatch)
    refused = boss.post(url, {**data, "title": "Renamed again"})
    assert refused.status_code == 403
    assert "Nothing was saved" in refused.content.decode()
    assert "my private words" not in refused.content.decode()
    private.refresh_from_db()
    assert private.title == "Renamed"
    assert ASKED in boss.get(url).content.decode()


def test_a_grant_ends_after_its_time_and_then_the_page_asks_again(
    boss: Client, private: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _page_url(private, "conversation")
    assert _give_reason(boss, url, "Ticket 3").status_code == 303
    assert "my private words" in boss.get(url).content.decode()
    _later(monkeypatch)
    asked = boss.get(url).content.decode()
    assert ASKED in asked
    assert "my private words" not in asked
    assert "my private words" not in boss.get(_page_url(private, "message")).content.decode()


def test_the_reason_endpoint_needs_a_reason(boss: Client, private: Conversation) -> None:
    url = _page_url(private, "conversation")
    empty = _give_reason(boss, url, "   ")
    assert empty.status_code == 400
    assert "Write why you need to read this conversation." in empty.content.decode()
    assert "my private words" not in empty.content.decode()
    assert not AccessLog.objects.exists()
    assert ASKED in boss.get(url).content.decode()


def test_the_reason_endpoint_needs_the_csrf_token(private: Conversation) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("boss"))
    url = _page_url(private, "conversation")
    assert _give_reason(client, url, "Ticket 5").status_code == 403
    assert not AccessLog.objects.exists()


def test_opening_a_flag_is_recorded_with_the_flag_as_reason(
    boss: Client, private: Conversation
) -> None:
    flag = Flag.objects.create(
        conversation=private, subject=private.owner, source="report", category="other"
    )
    assert boss.get(f"/admin/moderation/flag/{flag.pk}/change/").status_code == 200
    assert AccessLog.objects.get().reason == f"Flag #{flag.pk} (User report: other)"


def test_nobody_can_edit_or_delete_the_log(boss: Client, private: Conversation) -> None:
    _give_reason(boss, _page_url(private, "conversation"), "x")
    entry = AccessLog.objects.get()
    assert boss.get("/admin/moderation/accesslog/").status_code == 200  # superusers read it
    change = boss.post(f"/admin/moderation/accesslog/{entry.pk}/change/", {"reason": "nothing"})
    assert change.status_code in (200, 403)
    assert (
        boss.post(f"/admin/moderation/accesslog/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    bulk = boss.post(
        "/admin/moderation/accesslog/",
        {"action": "delete_selected", "_selected_action": [entry.pk]},
    )
    assert bulk.status_code in (200, 302)
    entry.refresh_from_db()
    assert entry.reason == "x"
    assert AccessLog.objects.count() == 1
    assert boss.get("/admin/moderation/accesslog/add/").status_code == 403


def test_the_owner_sees_when_and_why_unless_the_operator_turns_it_off(
    boss: Client, private: Conversation, settings: Any
) -> None:
    _give_reason(boss, _page_url(private, "conversation"), "Abuse report")
    owner = Client()
    owner.force_login(private.owner)
    page = owner.get("/settings/").content.decode()
    assert "When staff opened your conversations" in page
    assert "Abuse report" in page
    assert "Diary" in page
    other = Client()
    other.force_login(make_user("other"))
    assert "Abuse report" not in other.get("/settings/").content.decode()
    settings.CHATSITE_SHOW_ACCESS_LOG_TO_USERS = False
    assert "Abuse report" not in owner.get("/settings/").content.decode()


def test_staff_without_permission_get_neither_the_form_nor_the_messages(
    private: Conversation,
) -> None:
    make_user("boss")
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    url = _page_url(private, "conversation")
    assert client.get(url, {"access_reason": "curious"}).status_code == 403
    assert _give_reason(client, url, "curious").status_code == 403
    assert client.get(url).status_code == 403
    searched = client.post(TEXT_SEARCH, {"words": "private", "access_reason": "curious"})
    assert searched.status_code == 403
    assert "Diary" not in searched.content.decode()
    assert not AccessLog.objects.exists()


# --- searching message text ---------------------------------------------------------------


def _listed(html: str, title: str) -> bool:
    return f">{title}</a>" in html


def test_the_list_search_finds_titles_and_users_but_not_message_text(
    boss: Client, private: Conversation
) -> None:
    assert _listed(boss.get(CONVERSATIONS, {"q": "Diary"}).content.decode(), "Diary")
    assert _listed(boss.get(CONVERSATIONS, {"q": "owner"}).content.decode(), "Diary")
    assert not _listed(boss.get(CONVERSATIONS, {"q": "private"}).content.decode(), "Diary")
    messages = boss.get("/admin/conversations/message/", {"q": "private"}).content.decode()
    assert "0 results" in messages
    assert not AccessLog.objects.exists()


@pytest.mark.parametrize(
    "page",
    [
        "/admin/conversations/message/?content__icontains=private",
        "/admin/conversations/message/?content__contains=private",
        "/admin/conversations/conversation/?messages__content__icontains=private",
        "/admin/conversations/conversation/?system_prompt__icontains=be+kind",
        "/admin/moderation/flag/?excerpt__icontains=private",
    ],
)
def test_list_filters_on_users_text_are_refused(
    boss: Client, private: Conversation, page: str
) -> None:
    response = boss.get(page)
    assert response.status_code == 400
    assert "Diary" not in response.content.decode()


def test_the_flag_list_search_does_not_test_the_unshown_part_of_excerpts(boss: Client) -> None:
    owner = make_user("owner")
    conversation = services.conversation_create(owner=owner, model="m", title="t")
    Flag.objects.create(
        conversation=conversation,
        subject=owner,
        source="report",
        category="other",
        excerpt="x" * 100 + " tangerine",  # past the 80 characters the list shows
        comment="reporter says: rude",
    )

    def found(words: str) -> str:
        page = boss.get("/admin/moderation/flag/", {"q": words}).content.decode()
        return " ".join(re.search(r'class="paginator">(.*?)</p>', page, re.S)[1].split())  # type: ignore[index]

    assert found("tangerine") == "0 flags"
    assert found("rude") == "1 flag"  # the reporter's note to moderators


def test_the_text_search_page_is_linked_from_the_list_and_asks_for_words_and_a_reason(
    boss: Client, private: Conversation
) -> None:
    assert f'href="{TEXT_SEARCH}"' in boss.get(CONVERSATIONS).content.decode()
    form = boss.get(TEXT_SEARCH, {"words": "private", "access_reason": "Ticket"})
    assert form.status_code == 200
    assert 'method="post"' in form.content.decode()
    assert not _listed(form.content.decode(), "Diary")  # a GET searches nothing
    no_reason = boss.post(TEXT_SEARCH, {"words": "private", "access_reason": " "})
    assert no_reason.status_code == 400
    assert "Write why" in no_reason.content.decode()
    assert not _listed(no_reason.content.decode(), "Diary")
    no_words = boss.post(TEXT_SEARCH, {"words": "", "access_reason": "Ticket"})
    assert no_words.status_code == 400
    assert not AccessLog.objects.exists()


def test_the_text_search_records_each_conversation_it_reveals_and_shows_no_text(
    boss: Client, private: Conversation
) -> None:
    other = _chat(make_user("someone"), "Shopping", "private beach towels")
    _chat(private.owner, "Unrelated", "nothing to see")
    response = boss.post(TEXT_SEARCH, {"words": "private", "access_reason": "Abuse report 9"})
    page = response.content.decode()
    assert response.status_code == 200
    assert _listed(page, "Diary")
    assert _listed(page, "Shopping")
    assert not _listed(page, "Unrelated")
    assert "owner" in page
    assert "someone" in page
    for text in ("my private words", "private beach towels", "noted"):
        assert text not in page
    entries = AccessLog.objects.order_by("conversation_id")
    assert [(e.conversation_id, e.owner_id, e.reason) for e in entries] == [
        (private.pk, private.owner_id, 'Text search "private": Abuse report 9'),
        (other.pk, other.owner_id, 'Text search "private": Abuse report 9'),
    ]
    urls = _urls(page)
    assert _page_url(private, "conversation") in urls
    for found in [*urls, *(e.path for e in entries)]:
        assert "Abuse" not in found
    # A result still asks for its own reason before it opens.
    assert ASKED in boss.get(_page_url(private, "conversation")).content.decode()


def test_the_text_search_shows_and_records_a_bounded_number_of_conversations(
    boss: Client,
) -> None:
    owner = make_user("owner")
    for n in range(access.TEXT_SEARCH_RESULTS + 5):
        conversation = services.conversation_create(owner=owner, model="m", title=f"Chat {n}")
        Message.objects.create(conversation=conversation, role="user", content=f"zebras {n}")
    page = boss.post(TEXT_SEARCH, {"words": "zebra", "access_reason": "Ticket"}).content.decode()
    shown = [n for n in range(access.TEXT_SEARCH_RESULTS + 5) if _listed(page, f"Chat {n}")]
    assert shown == list(range(5, access.TEXT_SEARCH_RESULTS + 5))  # the newest
    assert AccessLog.objects.count() == access.TEXT_SEARCH_RESULTS
