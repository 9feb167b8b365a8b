"""Attached files count against quotas: a user's own quota, else her groups', else the
settings' defaults decide the largest file and the bytes she may keep (0: unlimited), for
an upload and for an import alike; the settings page shows what she keeps against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Quota
from conversations.models import Attachment, Conversation
from tests.conftest import make_user
from tests.test_attachments import (
    client_for,
    stored,  # noqa: F401  # autouse: files kept apart per test
    stored_files,
    upload,
    uploaded_id,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def small_defaults(settings: Any) -> None:
    settings.CHATSITE_ATTACHMENT_MAX_BYTES = 10
    settings.CHATSITE_ATTACHMENT_USER_BYTES = 25


def test_a_users_own_file_quota_above_the_default_takes_a_larger_file() -> None:
    roomy = make_user("roomy")
    Quota.objects.create(user=roomy, attachment_file_bytes=20)
    uploaded_id(upload(client_for(roomy), "big.txt", b"x" * 15))
    refused = upload(client_for(make_user("plain")), "big.txt", b"x" * 15)
    assert refused.status_code == 422
    assert "big.txt is 15\xa0bytes; a file may be 10\xa0bytes at most." in refused.content.decode()


def test_a_users_own_file_quota_below_the_default_refuses_a_file_the_default_takes() -> None:
    tight = make_user("tight")
    Quota.objects.create(user=tight, attachment_file_bytes=5)
    refused = upload(client_for(tight), "eight.txt", b"x" * 8)
    assert refused.status_code == 422
    assert "eight.txt is 8\xa0bytes; a file may be 5\xa0bytes at most." in refused.content.decode()
    assert Attachment.objects.count() == 0
    uploaded_id(upload(client_for(make_user("plain")), "eight.txt", b"x" * 8))


def test_a_users_own_total_quota_decides_how_much_she_keeps() -> None:
    roomy, tight = make_user("roomy"), make_user("tight")
    Quota.objects.create(user=roomy, attachment_bytes=100)
    Quota.objects.create(user=tight, attachment_bytes=12)
    for n in range(4):  # 40 bytes: past the default's 25
        uploaded_id(upload(client_for(roomy), f"{n}.txt", b"x" * 10))
    client = client_for(tight)
    uploaded_id(upload(client, "a.txt", b"x" * 10))
    full = upload(client, "b.txt", b"x" * 10)
    assert full.status_code == 422
    assert "you may keep 12\xa0bytes of attached files" in full.content.decode()


def test_a_group_quota_applies_to_its_members_and_their_own_quota_wins() -> None:
    group = Group.objects.create(name="archivists")
    Quota.objects.create(group=group, attachment_bytes=1000, attachment_file_bytes=50)
    member, own = make_user("member"), make_user("own")
    member.groups.add(group)
    own.groups.add(group)
    Quota.objects.create(user=own, attachment_file_bytes=30)
    uploaded_id(upload(client_for(member), "forty.txt", b"x" * 40))
    refused = upload(client_for(own), "forty.txt", b"x" * 40)
    assert "a file may be 30\xa0bytes at most" in refused.content.decode()


def test_zero_means_unlimited_for_one_file_and_for_all_of_them() -> None:
    free = make_user("free")
    Quota.objects.create(user=free, attachment_bytes=0, attachment_file_bytes=0)
    client = client_for(free)
    for name in ("a.txt", "b.txt"):  # 30 bytes each: past both defaults
        uploaded_id(upload(client, name, b"x" * 30))
    assert Attachment.objects.filter(owner=free).count() == 2


def _import(user: Any, text: str, settings: Any) -> str:
    settings.CHATSITE_IMPORT_BACKGROUND_ROWS = 100_000  # written during the request
    message = {
        "id": 1,
        "role": "user",
        "content": "see",
        "attachments": [{"name": "notes.txt", "kind": "text", "text": text}],
    }
    document = {
        "format": "chatsite",
        "version": 1,
        "conversations": [{"title": "Notes", "model": "m", "messages": [message]}],
    }
    response = client_for(user).post(
        "/settings/import/",
        {"file": SimpleUploadedFile("notes.json", json.dumps(document).encode())},
    )
    return response.content.decode()


def test_an_import_is_held_to_the_owners_file_quota_not_the_default(settings: Any) -> None:
    roomy, tight = make_user("roomy"), make_user("tight")
    Quota.objects.create(user=roomy, attachment_file_bytes=20)
    Quota.objects.create(user=tight, attachment_file_bytes=5)
    assert "Imported 1 conversation" in _import(roomy, "x" * 15, settings)
    refused = _import(tight, "x" * 8, settings)
    assert "notes.txt is 8\xa0bytes; a file may be 5\xa0bytes at most." in refused
    assert list(Conversation.objects.values_list("owner__username", flat=True)) == ["roomy"]
    root = Path(settings.STORAGES["attachments"]["OPTIONS"]["location"])  # `stored`'s
    assert len(stored_files(root)) == 1


def test_how_many_files_a_user_keeps_counts_against_her_quota(settings: Any) -> None:
    settings.CHATSITE_ATTACHMENT_USER_FILES = 3
    counted, roomy = make_user("counted"), make_user("roomy")
    Quota.objects.create(user=roomy, attachment_files=0)  # 0: no limit
    client = client_for(counted)
    for n in range(3):
        uploaded_id(upload(client, f"{n}.txt", b"x"))
    refused = upload(client, "3.txt", b"x")
    assert refused.status_code == 422
    assert "You keep 3 attached files; you may keep 3." in refused.content.decode()
    assert Attachment.objects.filter(owner=counted).count() == 3
    for n in range(4):
        uploaded_id(upload(client_for(roomy), f"{n}.txt", b"x"))
    page = client.get("/settings/").content.decode()
    assert "3 of 3 files" in page


def test_the_settings_page_shows_the_files_kept_against_the_quota() -> None:
    user = make_user()
    Quota.objects.create(user=user, attachment_bytes=200 * 1024 * 1024)
    client = client_for(user)
    uploaded_id(upload(client, "a.txt", b"x" * 7))
    page = client.get("/settings/").content.decode()
    assert "Files: 7\xa0bytes of 200.0\xa0MB" in page
    assert "One file may be 10\xa0bytes at most." in page


def test_the_settings_page_says_when_files_have_no_limit() -> None:
    group = Group.objects.create(name="unlimited")
    Quota.objects.create(group=group, attachment_bytes=0)
    user = make_user()
    user.groups.add(group)
    page = client_for(user).get("/settings/").content.decode()
    assert "Files: 0\xa0bytes (no limit)" in page


def test_an_administrator_sets_a_users_file_quotas_in_admin() -> None:
    admin = make_user("first")  # the first account is a superuser
    user = make_user("reader")
    client = client_for(admin)
    form = client.get("/admin/accounts/quota/add/").content.decode()
    assert 'name="attachment_bytes"' in form
    assert 'name="attachment_file_bytes"' in form
    saved = client.post(
        "/admin/accounts/quota/add/",
        {"user": user.pk, "attachment_bytes": "500", "attachment_file_bytes": "40"},
    )
    assert saved.status_code == 302, saved.content.decode()
    uploaded_id(upload(client_for(user), "thirty.txt", b"x" * 30))  # past the default's 10
    listing = client.get("/admin/accounts/quota/").content.decode()
    assert "Attachment file bytes" in listing
