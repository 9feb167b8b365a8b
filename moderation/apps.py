from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _rules_changed(**kwargs: Any) -> None:
    from .screening import rules_forget

    rules_forget()  # a cache, not business logic: other processes re-read within seconds


class ModerationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "moderation"
    verbose_name = "Moderation"

    def ready(self) -> None:
        post_save.connect(_rules_changed, sender="moderation.Rule")
        post_delete.connect(_rules_changed, sender="moderation.Rule")
