from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse


def sign_in(request: HttpRequest) -> dict[str, Any]:
    """What the sign-in page offers: the password form, and a button per identity provider."""
    return {
        "local_signin_enabled": settings.CHATSITE_LOCAL_SIGNIN_ENABLED,
        "sso_providers": [
            {
                "name": provider.name,
                "url": reverse("openid_connect_login", kwargs={"provider_id": provider.id}),
            }
            for provider in settings.CHATSITE_OIDC_PROVIDERS
        ]
        + [
            {"name": provider.name, "url": reverse(f"{provider.id}_login")}
            for provider in settings.CHATSITE_OAUTH_PROVIDERS
        ],
    }
