from __future__ import annotations

from chatsite.types import Visitor, visitor_id

from .models import AccessLog, Flag


def access_log_for_owner(*, user: Visitor, limit: int = 50) -> list[AccessLog]:
    """When staff opened this user's conversations, and why (newest first)."""
    return list(AccessLog.objects.filter(owner_id=visitor_id(user)).order_by("-at")[:limit])


def flags_open_count() -> int:
    """Flags waiting for a moderator (the operator's overview)."""
    return Flag.objects.filter(status=Flag.Status.OPEN).count()
