from __future__ import annotations

from datetime import datetime
from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import selectors
from .models import SignupRecord, Suspension


def suspension_permitted(*, user: Any, moderator: Any) -> None:
    """Who may suspend whom: nobody themselves, never a superuser, staff only by a
    superuser (else moderators could lock each other, or their superiors, out)."""
    if moderator is not None and user.pk == moderator.pk:
        raise ValidationError("You cannot suspend yourself.")
    if getattr(user, "is_superuser", False):
        raise ValidationError("A superuser cannot be suspended.")
    if getattr(user, "is_staff", False) and not getattr(moderator, "is_superuser", False):
        raise ValidationError("Only a superuser can suspend a member of staff.")


def suspension_validate(*, user: Any, until: datetime | None, reason: str, moderator: Any) -> None:
    """Every check user_suspend makes, for forms to show before anything is saved."""
    suspension_permitted(user=user, moderator=moderator)
    if not reason or not reason.strip():
        raise ValidationError("Give a reason: the user will see it.")
    if until is not None and until <= timezone.now():
        raise ValidationError("The end of a suspension must be in the future.")


def user_suspend(*, user: Any, until: datetime | None, reason: str, moderator: Any) -> Suspension:
    """Suspend a user. The caller then ends their sockets and answers (generation)."""
    suspension_validate(user=user, until=until, reason=reason, moderator=moderator)
    return Suspension.objects.create(
        user=user, until=until, reason=reason.strip(), created_by=moderator
    )


def suspension_lift(*, suspension: Suspension, moderator: Any) -> None:
    Suspension.objects.filter(pk=suspension.pk, lifted_at=None).update(
        lifted_at=timezone.now(), lifted_by=moderator
    )


class SignupLimitReached(Exception):
    """This address created as many accounts in the last hour as the site allows."""

    def __init__(self, lockout: selectors.Lockout) -> None:
        super().__init__(f"sign-ups refused until {lockout.until:%H:%M}")
        self.lockout = lockout


def signup_record(*, address: str | None) -> None:
    """Count a new account against its address, or SignupLimitReached (nothing written).

    Call it just before creating the account. An unknown address is not limited.
    """
    if address is None or settings.CHATSITE_SIGNUPS_PER_ADDRESS_PER_HOUR <= 0:
        return
    now = timezone.now()
    with transaction.atomic():
        # Lock this address's rows, then count in a new query: a sign-up racing in another
        # process waits here and then sees this one (SQLite's IMMEDIATE transactions
        # already serialise writers).
        list(
            SignupRecord.objects.select_for_update()
            .filter(address=address, at__gt=now - selectors.SIGNUP_WINDOW)
            .values_list("pk", flat=True)
        )
        lockout = selectors.signup_lockout(address=address, now=now)
        if lockout is not None:
            raise SignupLimitReached(lockout)
        # An address is kept only as long as it counts.
        SignupRecord.objects.filter(at__lte=now - selectors.SIGNUP_WINDOW).delete()
        SignupRecord.objects.create(address=address, at=now)


def signin_failures_forget(*, username: str | None) -> int:
    """Forget an account's failed sign-ins (after it signed in); other accounts' failures
    from the same addresses still count against those addresses."""
    if username is None:
        return 0
    deleted, _ = AccessAttempt.objects.filter(username=username).delete()
    return deleted
