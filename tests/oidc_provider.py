"""A real OpenID Connect provider for the single sign-on tests: oidc-provider-mock (Flask and
authlib) served by werkzeug on 127.0.0.1, on a free port, in a thread of the test process.

It speaks the whole protocol over HTTP (discovery, an authorisation page with a form, the
token endpoint with signed ID tokens, userinfo, JWKS); a person's claims (email,
email_verified, preferred_username, …) are set beforehand with set_user."""

from __future__ import annotations

import threading
import urllib.parse
from types import TracebackType

import httpx
import oidc_provider_mock
import werkzeug.serving

CLIENT_ID = "chatsite-test-client"
CLIENT_SECRET = "oidc-client-secret-that-must-never-show-7f3a"


class OidcProvider:
    def __init__(self) -> None:
        app = oidc_provider_mock.app(require_nonce=False)
        self.server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> OidcProvider:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def env(self, provider_id: str = "corp", name: str = "Example SSO") -> dict[str, str]:
        """The environment that configures chatsite for this provider."""
        prefix = f"CHATSITE_OIDC_{provider_id.upper()}_"
        return {
            "CHATSITE_OIDC_PROVIDERS": provider_id,
            prefix + "ISSUER": self.issuer,
            prefix + "CLIENT_ID": CLIENT_ID,
            prefix + "SECRET": CLIENT_SECRET,
            prefix + "NAME": name,
        }

    def set_user(self, sub: str, **claims: object) -> None:
        """The claims the provider will give for the subject `sub`."""
        response = httpx.put(f"{self.issuer}/users/{urllib.parse.quote(sub, safe='')}", json=claims)
        assert response.status_code == 204, response.text

    def authorize(self, authorize_url: str, sub: str) -> str:
        """What a person does on the provider's page: sign in as `sub` and authorise. Returns
        the URL the provider sends the browser back to (the site's callback)."""
        assert authorize_url.startswith(self.issuer + "/"), authorize_url
        response = httpx.post(authorize_url, data={"sub": sub})
        assert response.status_code == 302, response.text
        return response.headers["location"]
