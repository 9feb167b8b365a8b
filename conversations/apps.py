from typing import Any

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_out


def _signed_out(request: Any = None, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        from asgiref.sync import async_to_sync

        from .streaming.broadcast import session_close

        async_to_sync(session_close)(session_key=session_key)


def _attachment_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Storage bookkeeping, not business logic: a row's file goes with it, however the
    # row went (a conversation's cascade, an account's, retention, the admin).
    from .attachment_services import attachment_file_forget

    attachment_file_forget(name=instance.file.name)


class ConversationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"

    def ready(self) -> None:
        # Signing out (the site's or admin's logout) closes that session's open sockets.
        user_logged_out.connect(_signed_out, dispatch_uid="conversations.signed_out")
        from django.db.models.signals import post_delete

        post_delete.connect(
            _attachment_deleted,
            sender="conversations.Attachment",
            dispatch_uid="conversations.attachment_deleted",
        )
