"""Sidebar sections by recency: Pinned, Today, Yesterday, Previous 7 days, Previous 30 days,
then one per month. A pure function of the conversations and the current time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateformat import format as date_format


def sidebar_sections(
    conversations: Iterable[Any], *, now: datetime | None = None
) -> list[tuple[str, list[Any]]]:
    now = timezone.localtime(now or timezone.now())
    today = now.date()
    sections: dict[str, list[Any]] = {}
    for conversation in conversations:
        if conversation.pinned:
            label = "Pinned"
        else:
            day = timezone.localtime(conversation.updated_at).date()
            age = (today - day).days
            if age <= 0:
                label = "Today"
            elif age == 1:
                label = "Yesterday"
            elif age < 7:
                label = "Previous 7 days"
            elif age < 30:
                label = "Previous 30 days"
            else:
                label = date_format(conversation.updated_at, "F Y")
        sections.setdefault(label, []).append(conversation)
    return list(sections.items())
