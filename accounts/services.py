from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from .models import Suspension


def user_suspend(*, user: Any, until: datetime | None, reason: str, moderator: Any) -> Suspension:
    """Suspend a user. The caller then ends their sockets and answers (generation)."""
    if not reason or not reason.strip():
        raise ValidationError("Give a reason: the user will see it.")
    if until is not None and until <= timezone.now():
        raise ValidationError("The end of a suspension must be in the future.")
    if getattr(user, "is_superuser", False):
        raise ValidationError("A superuser cannot be suspended.")
    return Suspension.objects.create(
        user=user, until=until, reason=reason.strip(), created_by=moderator
    )


def suspension_lift(*, suspension: Suspension, moderator: Any) -> None:
    Suspension.objects.filter(pk=suspension.pk, lifted_at=None).update(
        lifted_at=timezone.now(), lifted_by=moderator
    )
