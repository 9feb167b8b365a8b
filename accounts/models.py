"""Suspensions and quotas of user accounts, and the usage ledger the quotas count from."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Suspension(models.Model):
    """A user may not sign in or use the site until `until` (None: until lifted)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suspensions"
    )
    until = models.DateTimeField(null=True, blank=True, help_text="Empty: indefinitely.")
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="suspensions_made",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="suspensions_lifted",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user"], condition=Q(lifted_at=None), name="suspension_current")
        ]

    def __str__(self) -> str:
        return f"{self.user} until {self.until or 'lifted'}"


class Quota(models.Model):
    """Limits for one user or one group; empty fields fall back (user, then groups, then
    the settings' defaults). 0 means unlimited."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    group = models.OneToOneField("auth.Group", null=True, blank=True, on_delete=models.CASCADE)
    messages_per_day = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_month = models.PositiveIntegerField(null=True, blank=True)
    concurrent_answers = models.PositiveIntegerField(null=True, blank=True)
    # Attached files, in bytes (big integers: a quota may pass 2 GB).
    attachment_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes of attached files the user may keep in all."
    )
    attachment_file_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes one attached file may have."
    )
    attachment_files = models.PositiveIntegerField(
        null=True, blank=True, help_text="Attached files the user may keep in all."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True)
                | Q(user__isnull=True, group__isnull=False),
                name="quota_for_a_user_or_a_group",
            )
        ]

    def __str__(self) -> str:
        return f"Quota of {self.user or self.group}"


class UsageEvent(models.Model):
    """What a user spent: one row per message sent and per answer's tokens. A ledger apart
    from conversations, so deleting a conversation does not give the allowance back."""

    class Kind(models.TextChoices):
        MESSAGE = "message", "Message"
        TOKENS = "tokens", "Answer tokens"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    model = models.CharField(max_length=200, blank=True)
    tokens = models.PositiveIntegerField(default=0)
    # The upstream reported no usage: counted from the text's length, and said so.
    estimated = models.BooleanField(default=False)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "kind", "at"], name="usage_user_kind_at")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind} {self.tokens} at {self.at:%Y-%m-%d %H:%M}"


class SignupRecord(models.Model):
    """One account created from `address` (an IPv6 client: its /64), for the per-address
    sign-up limit. Rows older than the limit's hour are deleted at the next sign-up."""

    address = models.GenericIPAddressField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["address", "at"], name="signup_address_at")]

    def __str__(self) -> str:
        return f"Sign-up from {self.address} at {self.at:%Y-%m-%d %H:%M}"


class SiteBootstrap(models.Model):
    """The site's first account was made, and made its superuser. One row, ever: once it
    exists no later account is a superuser for being first, not even after every account
    was deleted (that would hand the site to whoever signs up next). The unique key makes
    two first sign-ups at once safe: one inserts the row, the other waits and fails."""

    key = models.PositiveSmallIntegerField(default=1, unique=True, editable=False)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(key=1), name="sitebootstrap_one_row")]

    def __str__(self) -> str:
        return f"First account made at {self.at:%Y-%m-%d %H:%M}"
