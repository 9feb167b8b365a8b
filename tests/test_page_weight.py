"""A conversation page's first load stays small: no CDN, no fonts, at most 150 KB gzipped."""

from __future__ import annotations

import gzip
import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from conversations import services
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

BUDGET = 150 * 1024


def test_first_load_of_a_conversation_page_is_under_budget_and_self_hosted() -> None:
    user = make_user()
    conversation = services.conversation_create(owner=user, model="m")
    client = Client()
    client.force_login(user)
    page = client.get(f"/conversations/{conversation.public_id}/").content
    html = page.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    # Everything from this origin: no CDN, no external fonts.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
    total = len(gzip.compress(page, 9))
    for asset in assets:
        path = finders.find(asset.removeprefix("/static/"))
        assert path, asset
        with open(path, "rb") as fh:
            body = fh.read()
        assert b"@import" not in body
        assert b"fonts.googleapis" not in body
        total += len(gzip.compress(body, 9))
    assert total <= BUDGET, f"{total / 1024:.1f} KB"
