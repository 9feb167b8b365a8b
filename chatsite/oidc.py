"""Single sign-on providers read from the environment (README, Single sign-on).

    CHATSITE_OIDC_PROVIDERS=corp,google
    CHATSITE_OIDC_CORP_ISSUER=https://sso.example.com/realms/staff
    CHATSITE_OIDC_CORP_CLIENT_ID=chatsite
    CHATSITE_OIDC_CORP_SECRET=...
    CHATSITE_OIDC_CORP_NAME=Example staff      (optional: the button's label)

Settings import this module: it uses nothing but the standard library, and a malformed
configuration raises ImproperlyConfigured, so the site refuses to start and says why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

PROVIDER_ID = re.compile(r"^[a-z][a-z0-9]{0,29}$")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class OidcProvider:
    id: str
    name: str
    issuer: str
    client_id: str
    # Never shown, never logged: it goes to the provider's token endpoint and nowhere else.
    secret: str

    def __repr__(self) -> str:
        return f"OidcProvider(id={self.id!r}, name={self.name!r}, issuer={self.issuer!r})"


def _variable(provider_id: str, field: str) -> str:
    return f"CHATSITE_OIDC_{provider_id.upper()}_{field}"


def providers_from_env(environ: Mapping[str, str], *, debug: bool) -> list[OidcProvider]:
    """The providers CHATSITE_OIDC_PROVIDERS lists, each from its own variables."""
    listed = [item.strip() for item in environ.get("CHATSITE_OIDC_PROVIDERS", "").split(",")]
    providers: list[OidcProvider] = []
    for provider_id in filter(None, listed):
        if not PROVIDER_ID.match(provider_id):
            raise ImproperlyConfigured(
                f"CHATSITE_OIDC_PROVIDERS: {provider_id!r} is not a provider id "
                "(lower-case letters and digits, starting with a letter, at most 30)."
            )
        if any(p.id == provider_id for p in providers):
            raise ImproperlyConfigured(f"CHATSITE_OIDC_PROVIDERS lists {provider_id!r} twice.")
        values = {}
        for field in ("ISSUER", "CLIENT_ID", "SECRET"):
            value = environ.get(_variable(provider_id, field), "").strip()
            if not value:
                raise ImproperlyConfigured(
                    f"{_variable(provider_id, field)} must be set: CHATSITE_OIDC_PROVIDERS "
                    f"lists {provider_id!r}."
                )
            values[field] = value
        issuer = values["ISSUER"].rstrip("/")
        parts = urlsplit(issuer)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ImproperlyConfigured(
                f"{_variable(provider_id, 'ISSUER')} must be the provider's https:// URL "
                "(its issuer, without /.well-known/openid-configuration)."
            )
        if parts.scheme == "http" and not debug and parts.hostname not in LOOPBACK:
            # Codes, tokens and the client secret would cross the network in clear text.
            raise ImproperlyConfigured(
                f"{_variable(provider_id, 'ISSUER')} must be https:// when DJANGO_DEBUG is off."
            )
        name = environ.get(_variable(provider_id, "NAME"), "").strip() or provider_id
        providers.append(
            OidcProvider(
                id=provider_id,
                name=name,
                issuer=issuer,
                client_id=values["CLIENT_ID"],
                secret=values["SECRET"],
            )
        )
    return providers


def email_domains_from_env(environ: Mapping[str, str]) -> list[str]:
    """CHATSITE_SSO_EMAIL_DOMAINS: lower-cased domains, checked for shape."""
    domains = []
    for item in environ.get("CHATSITE_SSO_EMAIL_DOMAINS", "").split(","):
        domain = item.strip().lower().lstrip("@")
        if not domain:
            continue
        if not re.match(
            r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", domain
        ):
            raise ImproperlyConfigured(
                f"CHATSITE_SSO_EMAIL_DOMAINS: {item.strip()!r} is not a domain (example.com)."
            )
        domains.append(domain)
    return domains


def socialaccount_providers(providers: list[OidcProvider]) -> dict[str, Any]:
    """django-allauth's SOCIALACCOUNT_PROVIDERS for these providers: one app each."""
    return {
        "openid_connect": {
            # PKCE (S256) on every provider: a stolen authorisation code is useless alone.
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                {
                    "provider_id": provider.id,
                    "name": provider.name,
                    "client_id": provider.client_id,
                    "secret": provider.secret,
                    "settings": {"server_url": provider.issuer, "oauth_pkce_enabled": True},
                }
                for provider in providers
            ],
        }
    }
