from typing import Any

from django.conf import settings
from django.http import HttpRequest


def chatsite(request: HttpRequest) -> dict[str, Any]:
    return {
        "chatsite_demo_mode": settings.CHATSITE_DEMO_MODE,
        "max_chars": settings.CHATSITE_MAX_MESSAGE_CHARS,
        "signup_enabled": settings.CHATSITE_SIGNUP_ENABLED,
    }
