from __future__ import annotations

from typing import Any

from .models import AccessLog


def access_log_for_owner(*, user: Any, limit: int = 50) -> list[AccessLog]:
    """When staff opened this user's conversations, and why (newest first)."""
    return list(AccessLog.objects.filter(owner=user).order_by("-at")[:limit])
