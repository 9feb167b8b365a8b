"""Bodies past their limit are refused before Django reads them, and the production
profile passes Django's deployment checks."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.test import Client

from tests.conftest import make_user, session_cookie
from tests.live import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1_000_000


def http_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def post_chunks(
    path: str, chunks: int, chunk: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, int]:
    """Offer `chunks` pieces of a body to the site's ASGI application; the status it
    answered with, and how many pieces it read."""
    from chatsite.asgi import application

    communicator = ApplicationCommunicator(application, http_scope(path, headers))
    for n in range(chunks):
        await communicator.send_input(
            {"type": "http.request", "body": chunk, "more_body": n < chunks - 1}
        )
    start = await communicator.receive_output(10)
    assert start["type"] == "http.response.start"
    await communicator.wait(10)
    left = 0
    while not communicator.input_queue.empty():
        communicator.input_queue.get_nowait()
        left += 1
    return int(start["status"]), chunks - left


async def test_an_anonymous_100_mb_post_is_refused_without_reading_it() -> None:
    declared = [(b"content-length", str(100 * MB).encode())]
    status, read = await post_chunks("/accounts/login/", 100, b"x" * MB, declared)
    assert status == 413
    assert read == 0  # not a byte of it


async def test_a_body_of_unknown_length_is_cut_off_at_the_limit(settings: Any) -> None:
    settings.CHATSITE_MAX_REQUEST_BYTES = 3 * MB
    status, read = await post_chunks("/accounts/login/", 100, b"x" * MB, [])
    assert status == 413
    assert read <= 4  # it stopped reading as soon as the limit was passed


async def test_the_import_form_takes_large_files_from_signed_in_users_only(
    settings: Any,
) -> None:
    settings.CHATSITE_MAX_REQUEST_BYTES = 1 * MB
    settings.CHATSITE_IMPORT_MAX_BYTES = 5 * MB
    declared = [(b"content-length", str(4 * MB).encode())]
    status, read = await post_chunks("/settings/import/", 4, b"x" * MB, declared)
    assert (status, read) == (413, 0)  # a stranger
    user = await sync_to_async(make_user)()
    cookie = await sync_to_async(session_cookie)(user)
    status, read = await post_chunks(
        "/settings/import/", 4, b"x" * MB, [*declared, (b"cookie", cookie)]
    )
    assert status != 413  # read whole, then refused by CSRF like any form
    assert read == 4


async def test_the_attachment_upload_takes_a_file_of_the_attachment_limit_from_users_only(
    settings: Any,
) -> None:
    settings.CHATSITE_MAX_REQUEST_BYTES = 1 * MB
    settings.CHATSITE_ATTACHMENT_MAX_BYTES = 3 * MB
    declared = [(b"content-length", str(3 * MB).encode())]
    status, read = await post_chunks("/attachments/", 3, b"x" * MB, declared)
    assert (status, read) == (413, 0)  # a stranger
    user = await sync_to_async(make_user)()
    cookie = await sync_to_async(session_cookie)(user)
    status, read = await post_chunks(
        "/attachments/", 3, b"x" * MB, [*declared, (b"cookie", cookie)]
    )
    assert status != 413  # read whole, then refused by CSRF like any form
    assert read == 3
    settings.CHATSITE_ATTACHMENTS_PER_MESSAGE = 1  # a message's worth: one file of 3 MB
    too_big = [(b"content-length", str(5 * MB).encode()), (b"cookie", cookie)]
    assert await post_chunks("/attachments/", 5, b"x" * MB, too_big) == (413, 0)


async def test_the_demo_model_takes_large_bodies_only_with_the_sites_own_key(
    settings: Any,
) -> None:
    settings.CHATSITE_MAX_REQUEST_BYTES = 1 * MB
    declared = [(b"content-length", str(3 * MB).encode())]
    path = "/demo/v1/chat/completions"
    assert await post_chunks(path, 3, b"x" * MB, declared) == (413, 0)
    wrong = [*declared, (b"authorization", b"Bearer sk-guess")]
    assert await post_chunks(path, 3, b"x" * MB, wrong) == (413, 0)
    key = f"Bearer {settings.CHATSITE_DEMO_API_KEY}".encode()
    status, read = await post_chunks(path, 3, b"x" * MB, [*declared, (b"authorization", key)])
    assert status != 413  # read whole (images travel in it), then answered
    assert read == 3


def test_ordinary_forms_still_work(settings: Any) -> None:
    client = Client()
    response = client.post("/accounts/login/", {"username": "nobody", "password": "x" * 100})
    assert response.status_code == 200


def test_the_production_profile_passes_the_deployment_checks() -> None:
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
