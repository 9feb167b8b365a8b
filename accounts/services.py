from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from chatsite.errors import ActionRefused
from chatsite.types import Account
from conversations import attachment_services
from conversations import services as conversation_services
from conversations.streaming import broadcast

from . import selectors
from .models import SignupRecord, SiteBootstrap, Suspension


def suspension_permitted(*, user: Account, moderator: Account) -> None:
    """Who may suspend whom: nobody themselves, never a superuser, staff only by a
    superuser (else moderators could lock each other, or their superiors, out)."""
    if moderator is not None and user.pk == moderator.pk:
        raise ValidationError("You cannot suspend yourself.")
    if getattr(user, "is_superuser", False):
        raise ValidationError("A superuser cannot be suspended.")
    if getattr(user, "is_staff", False) and not getattr(moderator, "is_superuser", False):
        raise ValidationError("Only a superuser can suspend a member of staff.")


def suspension_validate(
    *, user: Account, until: datetime | None, reason: str, moderator: Account
) -> None:
    """Every check user_suspend makes, for forms to show before anything is saved."""
    suspension_permitted(user=user, moderator=moderator)
    if not reason or not reason.strip():
        raise ValidationError("Give a reason: the user will see it.")
    if until is not None and until <= timezone.now():
        raise ValidationError("The end of a suspension must be in the future.")


def user_suspend(
    *, user: Account, until: datetime | None, reason: str, moderator: Account
) -> Suspension:
    """Suspend a user. Once it is saved their answers stop and every open page of theirs,
    in every process, is told and closed: within seconds, not at their next click."""
    suspension_validate(user=user, until=until, reason=reason, moderator=moderator)
    suspension = Suspension.objects.create(
        user=user, until=until, reason=reason.strip(), created_by=moderator
    )
    user_id = user.pk
    transaction.on_commit(lambda: async_to_sync(broadcast.user_kick)(user_id=user_id))
    return suspension


def suspension_lift(*, suspension: Suspension, moderator: Account) -> None:
    Suspension.objects.filter(pk=suspension.pk, lifted_at=None).update(
        lifted_at=timezone.now(), lifted_by=moderator
    )


class SignupLimitReached(ActionRefused):
    """This address created as many accounts in the last hour as the site allows."""

    def __init__(self, lockout: selectors.Lockout) -> None:
        super().__init__(
            selectors.lockout_notice(lockout), retry_after=float(lockout.seconds_left())
        )
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


def user_create(*, username: str, password: str | None, email: str = "") -> AbstractBaseUser:
    """Create an account; the very first account of the site becomes its superuser.
    No password (an account from single sign-on): one that no password matches."""
    User = get_user_model()
    with transaction.atomic():
        if not SiteBootstrap.objects.exists():
            first = not User.objects.exists()
            try:
                with transaction.atomic():  # a savepoint: losing the race undoes only this
                    SiteBootstrap.objects.create()
            except IntegrityError:
                first = False  # another first account, made at the same moment, won
            if first:
                return User.objects.create_superuser(
                    username=username, email=email, password=password
                )
        return User.objects.create_user(username=username, email=email, password=password)


def user_create_from_sso(
    *,
    username_hint: str,
    email: str,
    address: str | None,
    link: Callable[[AbstractBaseUser], None],
) -> AbstractBaseUser:
    """An account for someone an identity provider signed in, counted against the
    sign-up limit like a local one (SignupLimitReached: nothing written), created by
    user_create (so the very first account is the superuser), and linked to the
    provider's identity by `link` in the same transaction."""
    with transaction.atomic():
        signup_record(address=address)
        user = user_create(
            username=selectors.username_free(wanted=username_from_hint(username_hint)),
            password=None,
            email=email,
        )
        link(user)
        return user


def username_from_hint(hint: str) -> str:
    """A username Django accepts (letters, digits and @.+-_) from what a provider said."""
    cleaned = re.sub(r"[^\w.@+-]", "", hint.strip().replace(" ", "."), flags=re.ASCII)
    return cleaned[:140] or "user"


def user_password_confirm(*, user: Account, password: Any) -> None:
    """ValidationError unless this is the user's password (before anything irreversible)."""
    if not isinstance(password, str) or not password or not user.check_password(password):
        raise ValidationError("That password is not right. Nothing was deleted.")


def user_deletion_confirm(*, user: Account, password: Any, username: Any) -> None:
    """ValidationError unless the user confirmed: their password, or, for an account from
    single sign-on (it has no password here), their username typed out."""
    if user.has_usable_password():
        user_password_confirm(user=user, password=password)
    elif not isinstance(username, str) or username.strip() != user.get_username():
        raise ValidationError("Type your username exactly as shown. Nothing was deleted.")


def user_delete(*, user: Account) -> None:
    """Delete an account and everything in it (conversations, messages, settings). The
    caller has confirmed the password and stopped its streaming answers. The history goes
    first, in short transactions; then the account and what is left of it, at once."""
    conversation_services.conversation_delete_owned(owner_id=user.pk)
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).delete()


def user_history_delete(*, user: Account) -> int:
    """Delete all of a user's conversations (the account stays), except one whose answer
    is still being written, and the files they uploaded and never sent. Returns how many
    conversations were deleted."""
    count = conversation_services.conversation_delete_owned(owner_id=user.pk, keep_streaming=True)
    attachment_services.attachments_pending_delete(owner_id=user.pk)
    return count
