"""Files attached to messages: uploaded as chips, checked by content, sent to the model
(text fenced, images as image_url parts to vision models only), kept with the message,
scoped to their owner, limited, and deleted with everything they belong to."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils.functional import empty

from accounts import services as account_services
from conversations import services
from conversations.models import ATTACHMENT_STORAGE, Attachment, Conversation, Message
from tests import attachment_files as files
from tests.conftest import make_user, open_socket
from tests.fake_openai import FakeUpstream, Stream

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_stray_generations"),
]

CHIP = re.compile(r'data-attachment="([0-9a-f-]{36})"')


@pytest.fixture(autouse=True)
def stored(tmp_path: Path, settings: Any) -> Iterator[Path]:
    """Attachments kept in a directory of this test's own (the storage API's files)."""
    root = tmp_path / "attachments"
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    reset = ATTACHMENT_STORAGE.__dict__
    reset["_wrapped"] = empty  # looked up again, under these settings
    yield root
    reset["_wrapped"] = empty


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(client: Client, name: str, data: bytes) -> Any:
    return client.post(
        "/attachments/", {"file": SimpleUploadedFile(name, data)}, HTTP_HX_REQUEST="true"
    )


def uploaded_id(response: Any) -> str:
    assert response.status_code == 200, response.content.decode()
    found = CHIP.findall(response.content.decode())
    assert len(found) == 1, response.content.decode()
    return found[0]


def final_frame(frame: str) -> bool:
    return bool(re.search(r'data-role="assistant" data-status="(?!streaming)', frame))


def error_frame(frame: str) -> bool:
    return 'class="feedback error"' in frame


async def send(conversation: Conversation, user: Any, text: str, ids: Any) -> Any:
    _, socket = await open_socket(conversation, user)
    await socket.send_json({"action": "send", "message": text, "attachments": ids})
    return socket


# --- text and code ----------------------------------------------------------------------
async def test_a_code_file_is_a_chip_then_its_text_goes_to_the_model_before_the_words(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["Looks fine."]))
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    source = "def add(a, b):\n    return a + b  # ```tricky fence```\n"
    response = await sync_to_async(upload)(client, "calc.py", source.encode())
    html = response.content.decode()
    assert "calc.py" in html  # the chip: name and kind
    assert "Text" in html
    chip = uploaded_id(response)
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")

    socket = await send(conversation, user, "Review this", chip)
    final = await socket.receive_until(final_frame)
    content = fake.completions()[-1].body["messages"][-1]["content"]
    assert isinstance(content, str)
    assert content.startswith("File: calc.py\n````\n" + source)  # a fence the file cannot close
    assert content.endswith("\n````\n\nReview this")
    # The sent message shows the file as a chip that opens the owner's download.
    assert f"/attachments/{chip}/" in final or f"/attachments/{chip}/" in "".join(socket.frames)
    row = await sync_to_async(Attachment.objects.get)(public_id=chip)
    assert row.message_id is not None
    await socket.close()


async def test_the_chip_stays_on_the_sent_message_after_a_reload(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["Ok."]))
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    chip = uploaded_id(await sync_to_async(upload)(client, "notes.md", b"# Notes\n<b>hi</b>"))
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "Summarise", [chip])
    await socket.receive_until(final_frame)
    await socket.close()
    page = await sync_to_async(client.get)(f"/conversations/{conversation.public_id}/")
    html = page.content.decode()
    assert f'href="/attachments/{chip}/"' in html
    assert "notes.md" in html
    # A download for the owner, never rendered as a page.
    download = await sync_to_async(client.get)(f"/attachments/{chip}/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"# Notes\n<b>hi</b>"  # type: ignore[attr-defined]
    assert download["Content-Disposition"].startswith("attachment;")
    assert download["X-Content-Type-Options"] == "nosniff"


def test_a_file_name_is_shown_as_text_never_as_html() -> None:
    user = make_user()
    response = upload(client_for(user), "<img src=x onerror=alert(1)>.txt", b"hello")
    html = response.content.decode()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in html


def test_binary_behind_a_txt_name_and_text_behind_a_png_name_are_refused(stored: Path) -> None:
    client = client_for(make_user())
    binary = upload(client, "notes.txt", b"\x00\x01\x02ELF\xff\xfe" * 50)
    assert binary.status_code == 422
    assert "notes.txt is neither text (UTF-8) nor a PDF" in binary.content.decode()
    fake_image = upload(client, "photo.png", b"just some text")
    assert fake_image.status_code == 422
    assert "photo.png is not a PNG, JPEG, WebP or GIF image" in fake_image.content.decode()
    fake_pdf = upload(client, "paper.pdf", b"plain text")
    assert "paper.pdf is not a PDF" in fake_pdf.content.decode()
    assert Attachment.objects.count() == 0
    assert stored_files(stored) == []


# --- PDFs -------------------------------------------------------------------------------
async def test_a_pdf_is_sent_to_the_model_as_its_extracted_text(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["Read it."]))
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    document = files.pdf(["Quarterly revenue grew by 12 percent", "Costs fell in March"])
    response = await sync_to_async(upload)(client, "report.pdf", document)
    assert "PDF" in response.content.decode()
    chip = uploaded_id(response)
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "What happened?", [chip])
    await socket.receive_until(final_frame)
    content = fake.completions()[-1].body["messages"][-1]["content"]
    assert content.startswith("PDF: report.pdf\n```\n")
    assert "Quarterly revenue grew by 12 percent" in content
    assert "Costs fell in March" in content
    assert content.endswith("What happened?")
    row = await sync_to_async(Attachment.objects.get)(public_id=chip)
    assert row.pages == 2
    await socket.close()


@pytest.mark.parametrize(
    ("name", "document", "says"),
    [
        ("bomb.pdf", files.pdf(["x"], bomb_bytes=60_000_000), "compression bomb"),
        ("locked.pdf", files.encrypted_pdf(), "encrypted"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj <<", "damaged PDF"),
        ("empty.pdf", files.pdf([""]), "no text to read"),
    ],
)
def test_hostile_pdfs_get_a_clear_error_and_nothing_is_stored(
    stored: Path, name: str, document: bytes, says: str
) -> None:
    response = upload(client_for(make_user()), name, document)
    assert response.status_code == 422
    assert says in response.content.decode()
    assert name in response.content.decode()
    assert Attachment.objects.count() == 0
    assert stored_files(stored) == []


def test_a_pdf_past_the_page_limit_is_refused(settings: Any, stored: Path) -> None:
    settings.CHATSITE_ATTACHMENT_PDF_PAGES = 2
    response = upload(client_for(make_user()), "long.pdf", files.pdf(["a", "b", "c"]))
    assert response.status_code == 422
    assert "long.pdf has 3 pages; the limit is 2." in response.content.decode()
    assert Attachment.objects.count() == 0


# --- images -----------------------------------------------------------------------------
async def test_an_image_reaches_a_vision_model_as_an_image_url_part(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_VISION_MODELS = ["fake-model*"]
    fake.enqueue(Stream(["A red square."]))
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    chip = uploaded_id(await sync_to_async(upload)(client, "square.png", files.png()))
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "What is this?", chip)
    await socket.receive_until(final_frame)
    content = fake.completions()[-1].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
    await socket.close()


async def test_an_image_to_a_model_that_cannot_read_images_is_refused_before_anything_is_sent(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_VISION_MODELS = ["some-vision-model"]
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    chip = uploaded_id(await sync_to_async(upload)(client, "square.png", files.png()))
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "What is this?", [chip])
    frame = await socket.receive_until(error_frame)
    assert "fake-model cannot read images, so nothing was sent" in frame
    assert fake.completions() == []  # the upstream received nothing
    assert await sync_to_async(Message.objects.count)() == 0
    row = await sync_to_async(Attachment.objects.get)(public_id=chip)
    assert row.message_id is None  # still waiting: the user may pick another model
    await socket.close()


def test_a_pixel_bomb_is_refused_from_its_header(stored: Path) -> None:
    response = upload(client_for(make_user()), "huge.png", files.png_claiming(60_000, 60_000))
    assert response.status_code == 422
    assert "huge.png" in response.content.decode()
    assert "pixels" in response.content.decode()
    assert Attachment.objects.count() == 0
    assert stored_files(stored) == []


def test_an_image_is_re_encoded_and_its_real_type_comes_from_its_content() -> None:
    client = client_for(make_user())
    chip = uploaded_id(upload(client, "photo.gif", files.jpeg() + b"trailing payload"))
    row = Attachment.objects.get(public_id=chip)
    assert (row.kind, row.content_type, row.width, row.height) == ("image", "image/jpeg", 4, 3)
    with row.file.open("rb") as handle:
        assert b"trailing payload" not in handle.read()


# --- owners -----------------------------------------------------------------------------
async def test_another_user_can_neither_attach_nor_download_nor_remove_my_file(
    fake: FakeUpstream,
) -> None:
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    alice_client = await sync_to_async(client_for)(alice)
    bob_client = await sync_to_async(client_for)(bob)
    chip = uploaded_id(await sync_to_async(upload)(alice_client, "secret.txt", b"mine"))
    for response in (
        await sync_to_async(bob_client.get)(f"/attachments/{chip}/"),
        await sync_to_async(bob_client.post)(f"/attachments/{chip}/remove/"),
    ):
        assert response.status_code == 404
    conversation = await sync_to_async(services.conversation_create)(owner=bob, model="fake-model")
    socket = await send(conversation, bob, "Read it", [chip])
    frame = await socket.receive_until(error_frame)
    assert "no longer there" in frame
    assert fake.completions() == []
    assert await sync_to_async(Attachment.objects.filter(message__isnull=True).count)() == 1
    await socket.close()


async def test_a_file_is_sent_once_only(fake: FakeUpstream) -> None:
    fake.enqueue(Stream(["One."]))
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    chip = uploaded_id(await sync_to_async(upload)(client, "a.txt", b"text"))
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "first", [chip])
    await socket.receive_until(final_frame)
    socket.frames.clear()
    await socket.send_json({"action": "send", "message": "again", "attachments": [chip]})
    assert "no longer there" in await socket.receive_until(error_frame)
    assert len(fake.completions()) == 1
    await socket.close()


def test_removing_a_chip_deletes_the_pending_file(stored: Path) -> None:
    client = client_for(make_user())
    chip = uploaded_id(upload(client, "a.txt", b"text"))
    assert len(stored_files(stored)) == 1
    assert client.post(f"/attachments/{chip}/remove/").status_code == 200
    assert Attachment.objects.count() == 0
    assert stored_files(stored) == []


# --- limits -----------------------------------------------------------------------------
def test_the_size_and_total_limits_refuse_with_a_clear_message(settings: Any) -> None:
    client = client_for(make_user())
    settings.CHATSITE_ATTACHMENT_MAX_BYTES = 10
    big = upload(client, "big.txt", b"x" * 11)
    assert big.status_code == 422
    assert "big.txt is 11\xa0bytes; a file may be 10\xa0bytes at most." in big.content.decode()
    settings.CHATSITE_ATTACHMENT_MAX_BYTES = 1000
    settings.CHATSITE_ATTACHMENT_USER_BYTES = 15
    uploaded_id(upload(client, "a.txt", b"x" * 10))
    full = upload(client, "b.txt", b"y" * 10)
    assert full.status_code == 422
    assert "you may keep 15\xa0bytes of attached files" in full.content.decode()
    assert Attachment.objects.count() == 1


async def test_a_message_carries_at_most_the_configured_number_of_files(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_ATTACHMENTS_PER_MESSAGE = 2
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    chips = [uploaded_id(await sync_to_async(upload)(client, f"{n}.txt", b"t")) for n in range(3)]
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "three", chips)
    assert "A message may carry 2 files at most." in await socket.receive_until(error_frame)
    assert fake.completions() == []
    await socket.close()


# --- versions -----------------------------------------------------------------------------
async def test_an_edited_message_keeps_its_files_and_a_regenerate_sends_them_again(
    fake: FakeUpstream,
) -> None:
    fake.enqueue(Stream(["One."]), Stream(["Two."]), Stream(["Three."]))
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    chip = uploaded_id(await sync_to_async(upload)(client, "data.csv", b"a,b\n1,2\n"))
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "Sum it", [chip])
    await socket.receive_until(final_frame)
    first = await sync_to_async(lambda: conversation.messages.get(role="user"))()
    answer = await sync_to_async(lambda: conversation.messages.get(role="assistant"))()
    socket.frames.clear()
    await socket.send_json({"action": "retry", "message_id": answer.pk})
    await socket.receive_until(final_frame)
    assert "a,b\n1,2" in fake.completions()[-1].body["messages"][-1]["content"]
    socket.frames.clear()
    await socket.send_json({"action": "edit", "message_id": first.pk, "message": "Average it"})
    await socket.receive_until(final_frame)
    content = fake.completions()[-1].body["messages"][-1]["content"]
    assert "File: data.csv" in content
    assert content.endswith("Average it")
    assert await sync_to_async(Attachment.objects.count)() == 2  # one row per version
    await socket.close()


def turn_with_files(user: Any, text: str, chips: list[str]) -> Any:
    """The first turn of a new conversation, its message carrying these files."""
    from conversations import turn_services

    return turn_services.conversation_start(
        owner=user,
        model="fake-model",
        system_prompt="",
        text=text,
        generation_channel="",
        attachment_ids=chips,
    )


# --- deletion -------------------------------------------------------------------------------
def sent_attachment(user: Any, name: str = "a.txt") -> Conversation:
    """A conversation whose first message carries a file (saved as a turn would)."""

    chip = uploaded_id(upload(client_for(user), name, b"kept"))
    turn = turn_with_files(user, "hello", [chip])
    Message.objects.filter(pk=turn.answer.pk).update(status="complete")
    return turn.user_message.conversation


def test_deleting_a_conversation_deletes_its_stored_files(stored: Path) -> None:
    user = make_user()
    conversation = sent_attachment(user)
    assert len(stored_files(stored)) == 1
    services.conversation_delete(conversation=conversation)
    assert Attachment.objects.count() == 0
    assert stored_files(stored) == []


def test_deleting_an_account_deletes_its_stored_files_sent_or_pending(stored: Path) -> None:
    user = make_user()
    sent_attachment(user)
    uploaded_id(upload(client_for(user), "pending.txt", b"waiting"))
    assert len(stored_files(stored)) == 2
    account_services.user_delete(user=user)
    assert stored_files(stored) == []


def test_deleting_a_users_data_in_admin_deletes_their_stored_files(stored: Path) -> None:
    user = make_user()
    sent_attachment(user)
    uploaded_id(upload(client_for(user), "pending.txt", b"waiting"))
    assert account_services.user_history_delete(user=user) == 1
    assert Attachment.objects.count() == 0
    assert stored_files(stored) == []


def test_retention_deletes_stored_files_and_files_never_sent(stored: Path, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    user = make_user()
    old = sent_attachment(user)
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=40))
    chip = uploaded_id(upload(client_for(user), "forgotten.txt", b"never sent"))
    Attachment.objects.filter(public_id=chip).update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    fresh = uploaded_id(upload(client_for(user), "fresh.txt", b"just now"))
    call_command("purge_conversations", "--days", "30")
    assert list(Attachment.objects.values_list("public_id", flat=True)) == [
        __import__("uuid").UUID(fresh)
    ]
    assert len(stored_files(stored)) == 1


# --- export and import --------------------------------------------------------------------
def _collect(response: Any) -> bytes:
    from asgiref.sync import async_to_sync

    async def read() -> bytes:
        return b"".join([bytes(chunk) async for chunk in response.streaming_content])

    return async_to_sync(read)()


def test_files_go_out_with_the_export_and_come_back_with_the_import(
    settings: Any, stored: Path
) -> None:
    import io
    import zipfile

    settings.CHATSITE_VISION_MODELS = ["*"]
    alice = make_user("alice")
    client = client_for(alice)
    chips = [
        uploaded_id(upload(client, "notes.txt", b"Tide tables, by hand")),
        uploaded_id(upload(client, "report.pdf", files.pdf(["Spring tides are higher"]))),
        uploaded_id(upload(client, "chart.png", files.png(5, 2))),
    ]
    turn = turn_with_files(alice, "Look at these", chips)
    Message.objects.filter(pk=turn.answer.pk).update(status="complete", content="Seen.")
    original = turn.user_message.conversation
    exported = client.get(f"/conversations/{original.public_id}/export.json").content
    markdown = client.get(f"/conversations/{original.public_id}/export.md").content.decode()
    assert "*(Attached: notes.txt)*" in markdown
    archive = zipfile.ZipFile(io.BytesIO(_collect(client.get("/settings/export.zip"))))
    assert b"Spring tides are higher" in b"".join(archive.read(n) for n in archive.namelist())

    bob = make_user("bob")
    imported = client_for(bob).post(
        "/settings/import/", {"file": SimpleUploadedFile("tides.json", exported)}
    )
    assert "Imported 1 conversation" in imported.content.decode()
    copy = Conversation.objects.get(owner=bob)
    rows = list(Attachment.objects.filter(owner=bob).order_by("id"))
    assert [(r.name, r.kind) for r in rows] == [
        ("notes.txt", "text"),
        ("report.pdf.txt", "pdf"),  # its text came back, not the PDF: named so
        ("chart.png", "image"),
    ]
    assert rows[1].content_type.startswith("text/plain")
    assert {r.message.conversation_id for r in rows if r.message is not None} == {copy.pk}
    assert all(r.message_id is not None for r in rows)
    assert "Spring tides are higher" in rows[1].text
    assert (rows[2].width, rows[2].height) == (5, 2)
    with rows[0].file.open("rb") as handle:
        assert handle.read() == b"Tide tables, by hand"
    assert len(stored_files(stored)) == 6  # alice's three and bob's three
    # What the model is sent for the imported message is what it was sent for the original.
    from conversations import message_selectors

    question = copy.messages.get(role="user")
    answer = copy.messages.get(role="assistant")
    assert question.content == "Look at these"
    from conversations.attachment_selectors import images_inline

    history = images_inline(message_selectors.message_history_for_upstream(answer_id=answer.pk))
    original_history = message_selectors.message_history_for_upstream(answer_id=turn.answer.pk)
    original_history = images_inline(original_history)
    original_history[-1]["content"][0]["text"] = original_history[-1]["content"][0]["text"].replace(
        "PDF: report.pdf\n", "PDF: report.pdf.txt\n"
    )
    assert history == original_history
    assert history[-1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_an_import_with_a_hostile_image_is_refused_and_writes_nothing(stored: Path) -> None:
    import base64
    import json

    document = {
        "format": "chatsite",
        "version": 1,
        "conversations": [
            {
                "title": "Bomb",
                "model": "m",
                "messages": [
                    {
                        "id": 1,
                        "role": "user",
                        "content": "see",
                        "attachments": [
                            {
                                "name": "huge.png",
                                "kind": "image",
                                "data": base64.b64encode(
                                    files.png_claiming(60_000, 60_000)
                                ).decode(),
                            }
                        ],
                    }
                ],
            }
        ],
    }
    response = client_for(make_user()).post(
        "/settings/import/",
        {"file": SimpleUploadedFile("bomb.json", json.dumps(document).encode())},
    )
    assert "huge.png" in response.content.decode()
    assert "pixels" in response.content.decode()
    assert Conversation.objects.count() == 0
    assert Attachment.objects.count() == 0
    assert stored_files(stored) == []


def test_an_import_past_the_owner_file_bytes_is_refused_and_leaves_no_file(
    settings: Any, stored: Path
) -> None:
    import json

    settings.CHATSITE_ATTACHMENT_USER_BYTES = 10
    settings.CHATSITE_IMPORT_BACKGROUND_ROWS = 100_000  # written during the request
    message = {
        "id": 1,
        "role": "user",
        "content": "see",
        "attachments": [{"name": "long.txt", "kind": "text", "text": "x" * 50}],
    }
    document = {
        "format": "chatsite",
        "version": 1,
        "conversations": [{"title": "Big", "model": "m", "messages": [message]}],
    }
    response = client_for(make_user()).post(
        "/settings/import/",
        {"file": SimpleUploadedFile("big.json", json.dumps(document).encode())},
    )
    assert "you may keep 10\xa0bytes of attached files" in response.content.decode()
    assert Conversation.objects.count() == 0
    assert stored_files(stored) == []


# --- staff ----------------------------------------------------------------------------------
def test_staff_open_a_file_only_after_giving_a_reason_and_each_opening_is_logged() -> None:
    from moderation.models import AccessLog

    boss = make_user("boss")  # the first account: a superuser
    owner = make_user("owner")
    conversation = sent_attachment(owner, "<b>diary.txt")
    message = conversation.messages.get(role="user")
    row = Attachment.objects.get(message=message)
    staff = client_for(boss)
    change = f"/admin/conversations/message/{message.pk}/change/"
    url = f"/admin/conversations/message/{message.pk}/attachments/{row.public_id}/"
    refused = staff.get(url)
    assert refused.status_code == 302  # to the page that asks why
    assert refused["Location"] == change
    assert not AccessLog.objects.exists()
    staff.post(change.replace("/change/", "/reason/"), {"access_reason": "Ticket 12"})
    page = staff.get(change).content.decode()
    assert "&lt;b&gt;diary.txt" in page  # a file name is never live HTML
    assert "<b>diary" not in page
    opened = staff.get(url)
    assert opened.status_code == 200
    assert b"".join(opened.streaming_content) == b"kept"  # type: ignore[attr-defined]
    entry = AccessLog.objects.order_by("-pk").first()
    assert entry is not None
    assert f"of message #{message.pk} opened" in entry.reason
    assert entry.conversation_id == conversation.pk


async def test_regenerating_with_a_model_that_cannot_read_images_is_refused(
    fake: FakeUpstream, settings: Any
) -> None:
    settings.CHATSITE_VISION_MODELS = ["fake-model"]
    fake.enqueue(Stream(["A square."]))
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    chip = uploaded_id(await sync_to_async(upload)(client, "square.png", files.png()))
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "What is it?", [chip])
    await socket.receive_until(final_frame)
    answer = await sync_to_async(lambda: conversation.messages.get(role="assistant"))()
    socket.frames.clear()
    await socket.send_json({"action": "retry", "message_id": answer.pk, "model": "fake-model-mini"})
    frame = await socket.receive_until(error_frame)
    assert "fake-model-mini cannot read images, so nothing was sent" in frame
    assert len(fake.completions()) == 1
    await socket.close()


async def test_a_file_is_screened_with_its_message_and_is_no_way_round_the_rules(
    fake: FakeUpstream,
) -> None:
    from moderation.models import Policy, Rule

    await Rule.objects.acreate(pattern="bomb", category="weapons")
    await Policy.objects.acreate(category="weapons", action="block")
    user = await sync_to_async(make_user)()
    client = await sync_to_async(client_for)(user)
    chip = uploaded_id(await sync_to_async(upload)(client, "plan.txt", b"How to build a BOMB"))
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "Summarise this file", [chip])
    final = await socket.receive_until(final_frame)
    assert "not sent to the model" in final
    assert fake.completions() == []  # nothing went upstream
    await socket.close()


def test_a_file_waiting_to_be_sent_keeps_its_chip_across_pages_of_its_owner_only() -> None:
    alice = make_user("alice")
    client = client_for(alice)
    chip = uploaded_id(upload(client, "draft.txt", b"later"))
    conversation = services.conversation_create(owner=alice, model="fake-model")
    for url in ("/", f"/conversations/{conversation.public_id}/"):
        html = client.get(url).content.decode()
        assert f'data-attachment="{chip}"' in html  # a reload loses nothing attached
        assert f'name="attachments" value="{chip}"' in html
    assert chip not in client_for(make_user("bob")).get("/").content.decode()


@pytest.mark.parametrize(
    ("ids", "says"),
    [
        ({"not": "a list"}, "no longer there"),
        (12345, "no longer there"),
        (["not-a-uuid"], "no longer there"),
        ([str(n) for n in range(10_000)], "at most"),
    ],
)
async def test_hostile_attachment_ids_in_a_frame_get_a_clear_error_and_send_nothing(
    fake: FakeUpstream, ids: Any, says: str
) -> None:
    user = await sync_to_async(make_user)()
    conversation = await sync_to_async(services.conversation_create)(owner=user, model="fake-model")
    socket = await send(conversation, user, "hello", ids)
    assert says in await socket.receive_until(error_frame)
    assert fake.completions() == []
    assert await sync_to_async(Message.objects.count)() == 0
    await socket.close()


def test_more_files_in_one_upload_than_a_message_carries_are_refused(settings: Any) -> None:
    settings.CHATSITE_ATTACHMENTS_PER_MESSAGE = 2
    response = client_for(make_user()).post(
        "/attachments/",
        {"file": [SimpleUploadedFile(f"{n}.txt", b"t") for n in range(3)]},
    )
    assert response.status_code == 422
    assert "A message may carry 2 files at most" in response.content.decode()
    assert Attachment.objects.count() == 0


# --- review fixes: bounded work, names, requests ------------------------------------------
def test_a_pdf_that_costs_minutes_of_cpu_is_refused_within_the_time_limit(
    settings: Any, stored: Path
) -> None:
    import time

    settings.CHATSITE_ATTACHMENT_INSPECT_SECONDS = 2
    bomb = files.operator_bomb_pdf()
    assert len(bomb) < 30_000  # a few KB, minutes of text extraction
    started = time.monotonic()
    response = upload(client_for(make_user()), "slow.pdf", bomb)
    assert time.monotonic() - started < 6
    assert response.status_code == 422
    assert "This PDF takes too long to read" in response.content.decode()
    assert "slow.pdf" in response.content.decode()
    assert Attachment.objects.count() == 0
    assert stored_files(stored) == []
    # The next, ordinary files are read as before.
    client = client_for(make_user("next"))
    assert uploaded_id(upload(client, "fine.pdf", files.pdf(["Calm seas"])))
    assert uploaded_id(upload(client, "fine.png", files.png()))


def test_a_big_image_is_kept_scaled_down_to_the_useful_size(settings: Any) -> None:
    import io

    from PIL import Image

    settings.CHATSITE_ATTACHMENT_IMAGE_MAX_SIDE = 256
    out = io.BytesIO()
    Image.new("RGBA", (3000, 1500), (20, 40, 60, 255)).save(out, "PNG")
    client = client_for(make_user())
    row = Attachment.objects.get(public_id=uploaded_id(upload(client, "wide.png", out.getvalue())))
    assert (row.width, row.height) == (256, 128)
    with row.file.open("rb") as handle, Image.open(handle) as kept:
        assert kept.size == (256, 128)
    # A JPEG stays a JPEG, scaled down too, and no larger than it came.
    photo = files.jpeg(2400, 1800)
    row = Attachment.objects.get(public_id=uploaded_id(upload(client, "photo.jpg", photo)))
    assert (row.content_type, row.width, row.height) == ("image/jpeg", 256, 192)
    assert row.size < len(photo)


def test_a_phone_cameras_jpeg_mpo_is_read_as_a_jpeg() -> None:
    client = client_for(make_user())
    row = Attachment.objects.get(public_id=uploaded_id(upload(client, "IMG_0001.jpg", files.mpo())))
    assert (row.kind, row.content_type, row.width, row.height) == ("image", "image/jpeg", 40, 30)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("a\r\nSet-Cookie: x=1.txt", "a Set-Cookie: x=1.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("zero\u200bwidth\ufeff.md", "zerowidth.md"),
        ("tab\tand   spaces\u2028.txt", "tab and spaces .txt"),
    ],
)
def test_a_file_name_keeps_no_line_breaks_nor_invisible_characters(given: str, shown: str) -> None:
    from conversations import attachments

    assert attachments.name_clean(given) == shown
    if "\u202e" in given:  # (the test client's multipart mangles control characters itself)
        row_id = uploaded_id(upload(client_for(make_user()), given, b"hello"))
        assert Attachment.objects.get(public_id=row_id).name == shown


def test_only_the_most_recent_images_go_with_a_request(settings: Any) -> None:
    from conversations import message_selectors

    settings.CHATSITE_VISION_MODELS = ["*"]
    settings.CHATSITE_ATTACHMENT_IMAGES_PER_REQUEST = 2
    alice = make_user("alice")
    client = client_for(alice)
    chips = [uploaded_id(upload(client, f"{n}.png", files.png(3 + n, 2))) for n in (1, 2, 3)]
    turn = turn_with_files(alice, "Compare them", chips)
    content = message_selectors.message_history_for_upstream(answer_id=turn.answer.pk)[-1][
        "content"
    ]
    assert content[0]["text"] == (
        "[Image 1.png left out: only the 2 most recent images are sent.]\n\nCompare them"
    )
    assert [p["type"] for p in content] == ["text", "image_url", "image_url"]


def test_a_sideways_photo_is_kept_upright_without_its_exif() -> None:
    import io

    from PIL import Image

    picture = Image.new("RGB", (40, 20), (10, 120, 200))
    exif = picture.getexif()
    exif[0x0112] = 6  # "turn 90° to show": what a phone held upright writes
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif.tobytes())
    client = client_for(make_user())
    row = Attachment.objects.get(public_id=uploaded_id(upload(client, "up.jpg", out.getvalue())))
    assert (row.width, row.height) == (20, 40)
    with row.file.open("rb") as handle, Image.open(handle) as kept:
        assert kept.size == (20, 40)
        assert dict(kept.getexif()) == {}
