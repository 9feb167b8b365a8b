"""Screening rules, what each category does, and flags (the moderators' queue)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from conversations.models import Conversation, Message


class Action(models.TextChoices):
    FLAG = "flag", "Flag only"
    BLOCK = "block", "Block the user's message"
    STOP = "stop", "Stop the answer and hide it"


class Rule(models.Model):
    """A local screening rule: a word (whole word, any case) or a regular expression."""

    pattern = models.CharField(max_length=500)
    is_regex = models.BooleanField(default=False, help_text="A Python regular expression.")
    category = models.CharField(max_length=64)
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["category", "pattern"]

    def __str__(self) -> str:
        return f"{self.category}: {self.pattern}"


class Policy(models.Model):
    """What a flagged category does. Categories without a policy are flagged only."""

    category = models.CharField(max_length=64, unique=True)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.FLAG)

    class Meta:
        ordering = ["category"]
        verbose_name_plural = "policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=["flag", "block", "stop"]), name="policy_action_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.category} → {self.get_action_display()}"


class Flag(models.Model):
    class Source(models.TextChoices):
        REPORT = "report", "User report"
        RULE = "rule", "Local rule"
        ENDPOINT = "endpoint", "Moderation endpoint"
        ERROR = "error", "Screening failed"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DISMISSED = "dismissed", "Dismissed"
        HIDDEN = "hidden", "Message hidden"
        SUSPENDED = "suspended", "User suspended"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="flags")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="flags"
    )
    # Whose words or whose conversation: the user a moderator may act on.
    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="flags_about"
    )
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="flags_reported",
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    category = models.CharField(max_length=64)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.FLAG)
    scores = models.JSONField(default=dict, blank=True)
    excerpt = models.TextField(blank=True, help_text="The text that matched.")
    comment = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="flags_resolved",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_note = models.TextField(blank=True)

    class Meta:
        # Open flags first, newest first.
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "-created_at"], name="flag_status_recent")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "dismissed", "hidden", "suspended"]),
                name="flag_status_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()}: {self.category} ({self.status})"


class AccessLog(models.Model):
    """A member of staff looked at a user's messages: who, when, which conversation, why.

    Written once, never changed: admin offers no way to add, edit or delete an entry, for
    anyone; superusers (and whoever is given view_accesslog) can read it.
    """

    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    staff_username = models.CharField(max_length=150)  # kept if the account goes
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.CASCADE,
        related_name="accesses_to_my_data",
    )
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    conversation_title = models.CharField(max_length=200, blank=True)
    reason = models.TextField()
    path = models.CharField(max_length=500)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return (
            f"{self.staff_username} opened {self.conversation_title!r} at {self.at:%Y-%m-%d %H:%M}"
        )
