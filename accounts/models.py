"""Suspensions (and, later, quotas) of user accounts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


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
