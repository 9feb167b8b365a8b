"""Single sign-on providers read from the environment (README, Single sign-on).

    CHATSITE_OIDC_PROVIDERS=corp,google
    CHATSITE_OIDC_CORP_ISSUER=https://sso.example.com/realms/staff
    CHATSITE_OIDC_CORP_CLIENT_ID=chatsite
    CHATSITE_OIDC_CORP_SECRET=...
    CHATSITE_OIDC_CORP_NAME=Example staff      (optional: the button's label)

and plain OAuth 2 providers that are not OpenID Connect, through allauth's own provider
for each (the provider's id is its kind: one of OAUTH_KINDS):

    CHATSITE_OAUTH_PROVIDERS=github
    CHATSITE_OAUTH_GITHUB_CLIENT_ID=Iv1.0123456789abcdef
    CHATSITE_OAUTH_GITHUB_SECRET=...
    CHATSITE_OAUTH_GITHUB_URL=https://github.example.com   (optional: GitHub Enterprise)
    CHATSITE_OAUTH_GITHUB_NAME=GitHub                      (optional: the button's label)

Settings import this module: it uses nothing but the standard library, and a malformed
configuration raises ImproperlyConfigured, so the site refuses to start and says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
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


# allauth's plain OAuth 2 providers the site offers: the kind, its button label and its
# public web URL (where its authorisation page is).
OAUTH_KINDS = {"github": ("GitHub", "https://github.com")}


@dataclass(frozen=True)
class OAuthProvider:
    id: str  # the kind: allauth's provider id ("github")
    name: str
    url: str  # the web URL (GitHub Enterprise: its own; the API is under /api/v3)
    client_id: str
    # Never shown, never logged: it goes to the provider's token endpoint and nowhere else.
    secret: str

    def __repr__(self) -> str:
        return f"OAuthProvider(id={self.id!r}, name={self.name!r}, url={self.url!r})"


def _variable(provider_id: str, field: str) -> str:
    return f"CHATSITE_OIDC_{provider_id.upper()}_{field}"


def _oauth_variable(provider_id: str, field: str) -> str:
    return f"CHATSITE_OAUTH_{provider_id.upper()}_{field}"


def _listed(environ: Mapping[str, str], listing: str, check: Callable[[str], None]) -> list[str]:
    """The provider ids `listing` names, each checked by `check`, and each once."""
    ids: list[str] = []
    for provider_id in filter(None, (item.strip() for item in environ.get(listing, "").split(","))):
        check(provider_id)
        if provider_id in ids:
            raise ImproperlyConfigured(f"{listing} lists {provider_id!r} twice.")
        ids.append(provider_id)
    return ids


def _required(
    environ: Mapping[str, str],
    variable: Callable[[str, str], str],
    provider_id: str,
    fields: Sequence[str],
    *,
    listing: str,
) -> dict[str, str]:
    """A listed provider's variables, every one of them set, or the one missing named."""
    values = {}
    for field in fields:
        value = environ.get(variable(provider_id, field), "").strip()
        if not value:
            raise ImproperlyConfigured(
                f"{variable(provider_id, field)} must be set: {listing} lists {provider_id!r}."
            )
        values[field] = value
    return values


def _oidc_id(provider_id: str) -> None:
    if not PROVIDER_ID.match(provider_id):
        raise ImproperlyConfigured(
            f"CHATSITE_OIDC_PROVIDERS: {provider_id!r} is not a provider id "
            "(lower-case letters and digits, starting with a letter, at most 30)."
        )


def _oauth_kind(provider_id: str) -> None:
    if provider_id not in OAUTH_KINDS:
        raise ImproperlyConfigured(
            f"CHATSITE_OAUTH_PROVIDERS: {provider_id!r} is not an OAuth provider the site "
            f"offers ({', '.join(OAUTH_KINDS)}); an OpenID Connect provider goes in "
            "CHATSITE_OIDC_PROVIDERS."
        )


def providers_from_env(environ: Mapping[str, str], *, debug: bool) -> list[OidcProvider]:
    """The providers CHATSITE_OIDC_PROVIDERS lists, each from its own variables."""
    listing = "CHATSITE_OIDC_PROVIDERS"
    providers: list[OidcProvider] = []
    for provider_id in _listed(environ, listing, _oidc_id):
        values = _required(
            environ, _variable, provider_id, ("ISSUER", "CLIENT_ID", "SECRET"), listing=listing
        )
        if provider_id in OAUTH_KINDS:
            # allauth knows "github" as its own provider: an OpenID Connect app of that id
            # would be taken for it.
            raise ImproperlyConfigured(
                f"CHATSITE_OIDC_PROVIDERS: {provider_id!r} is the id of an OAuth provider: "
                "list it in CHATSITE_OAUTH_PROVIDERS, or give this one another id."
            )
        issuer = _checked_url(
            values["ISSUER"],
            variable=_variable(provider_id, "ISSUER"),
            what="(its issuer, without /.well-known/openid-configuration)",
            debug=debug,
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


def _checked_url(value: str, *, variable: str, what: str, debug: bool) -> str:
    url = value.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ImproperlyConfigured(f"{variable} must be the provider's https:// URL {what}.")
    if parts.scheme == "http" and not debug and parts.hostname not in LOOPBACK:
        # Codes, tokens and the client secret would cross the network in clear text.
        raise ImproperlyConfigured(f"{variable} must be https:// when DJANGO_DEBUG is off.")
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{variable} must be the provider's https:// URL {what}.")
    return url


def oauth_providers_from_env(environ: Mapping[str, str], *, debug: bool) -> list[OAuthProvider]:
    """The plain OAuth 2 providers CHATSITE_OAUTH_PROVIDERS lists, each from its variables."""
    listing = "CHATSITE_OAUTH_PROVIDERS"
    providers: list[OAuthProvider] = []
    for provider_id in _listed(environ, listing, _oauth_kind):
        values = _required(
            environ, _oauth_variable, provider_id, ("CLIENT_ID", "SECRET"), listing=listing
        )
        default_name, default_url = OAUTH_KINDS[provider_id]
        url = _checked_url(
            environ.get(_oauth_variable(provider_id, "URL"), "").strip() or default_url,
            variable=_oauth_variable(provider_id, "URL"),
            what="(its web address, such as https://github.example.com)",
            debug=debug,
        )
        name = environ.get(_oauth_variable(provider_id, "NAME"), "").strip() or default_name
        providers.append(
            OAuthProvider(
                id=provider_id,
                name=name,
                url=url,
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


def socialaccount_providers(
    providers: list[OidcProvider], oauth: Sequence[OAuthProvider] = ()
) -> dict[str, Any]:
    """django-allauth's SOCIALACCOUNT_PROVIDERS for these providers: one app each."""
    github = next((p for p in oauth if p.id == "github"), None)
    return {
        "github": {
            # allauth's GitHub provider with an adapter that reads GITHUB_URL when it is
            # used, not once at import (accounts/sso.py). Always set: allauth picks the
            # class once, when it first loads its providers.
            "provider_class": "accounts.sso.GitHubProvider",
            "GITHUB_URL": github.url if github else OAUTH_KINDS["github"][1],
            # PKCE (S256), as for OpenID Connect (GitHub and GitHub Enterprise take it).
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [{"client_id": github.client_id, "secret": github.secret, "name": github.name}]
            if github
            else [],
        },
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
        },
    }
