"""Who is asking, as the apps' selectors and services take it.

`request.user` may be anonymous; every owner-scoped read takes a `Visitor` and finds
nothing for an anonymous one. Writes take an `Account`: a view behind login_required (or
admin) gets one from `account_of`.
"""

from __future__ import annotations

from typing import TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied

Visitor: TypeAlias = User | AnonymousUser
Account: TypeAlias = User  # the site uses Django's own user model


def account_of(user: Visitor) -> Account:
    """The signed-in account behind request.user (a view behind login_required, admin)."""
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied
    return user


def visitor_id(user: Visitor | None) -> int | None:
    """The id to scope a read by; None (which matches nothing) for an anonymous visitor."""
    if user is None or not user.is_authenticated:
        return None
    return user.pk
