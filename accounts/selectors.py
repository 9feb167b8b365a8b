from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from .models import Suspension


def suspension_current(*, user_id: Any) -> Suspension | None:
    """The suspension in force for this user now, if any (it lifts itself when it ends)."""
    if user_id is None:
        return None
    now = timezone.now()
    return (
        Suspension.objects.filter(user_id=user_id, lifted_at=None)
        .filter(Q(until=None) | Q(until__gt=now))
        .order_by("-created_at")
        .first()
    )


def suspension_notice(suspension: Suspension) -> str:
    end = (
        f"until {timezone.localtime(suspension.until):%Y-%m-%d %H:%M}"
        if suspension.until
        else "until further notice"
    )
    return f"This account is suspended {end}. Reason: {suspension.reason}"
