"""A small GitHub for the single sign-on tests: a real HTTP server on 127.0.0.1 (a free port,
a thread of the test process) that speaks GitHub's OAuth web flow and the two API calls
django-allauth's GitHub provider makes, at GitHub Enterprise's addresses (the site is
pointed at it with CHATSITE_OAUTH_GITHUB_URL, allauth's GITHUB_URL):

- GET  /login/oauth/authorize       a page with the person's login and an "Authorize" button
- POST /login/oauth/authorize       back to the redirect_uri with ?code=…&state=…
                                    (action=deny: ?error=access_denied&state=…)
- POST /login/oauth/access_token    the code (once, within its client, redirect_uri and PKCE
                                    verifier) and the client secret for an access token
- GET  /api/v3/user                 the person (id, login, name, public email)
- GET  /api/v3/user/emails          their addresses, each primary or not, verified or not

GitHub's own servers cannot be reached from the test machine; this one checks what GitHub
checks in that flow and answers in its shapes."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

CLIENT_ID = "Iv1.chatsite-test-github"
CLIENT_SECRET = "github-client-secret-that-must-never-show-5c1e"


@dataclass
class GitHubUser:
    id: int
    login: str
    name: str = ""
    email: str | None = None  # the public address on the profile (often none)
    emails: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Grant:
    login: str
    redirect_uri: str
    code_challenge: str


class GitHub:
    def __init__(self) -> None:
        self.users: dict[str, GitHubUser] = {}
        self.grants: dict[str, _Grant] = {}
        self.tokens: dict[str, str] = {}  # access token -> login
        self.requests: list[tuple[str, str, str]] = []  # method, path with query, body
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> GitHub:
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

    def env(self, name: str = "GitHub") -> dict[str, str]:
        """The environment that configures chatsite for this GitHub (as for an Enterprise
        server: its own URL)."""
        return {
            "CHATSITE_OAUTH_PROVIDERS": "github",
            "CHATSITE_OAUTH_GITHUB_CLIENT_ID": CLIENT_ID,
            "CHATSITE_OAUTH_GITHUB_SECRET": CLIENT_SECRET,
            "CHATSITE_OAUTH_GITHUB_URL": self.url,
            "CHATSITE_OAUTH_GITHUB_NAME": name,
        }

    def set_user(
        self,
        login: str,
        *,
        id: int,
        name: str = "",
        email: str | None = None,
        emails: list[tuple[str, bool, bool]] = (),  # type: ignore[assignment]
    ) -> None:
        """A person at this GitHub; `emails`: (address, primary, verified) each."""
        with self.lock:
            self.users[login] = GitHubUser(
                id=id,
                login=login,
                name=name,
                email=email,
                emails=[
                    {"email": a, "primary": p, "verified": v, "visibility": None}
                    for a, p, v in emails
                ],
            )

    def authorize(self, authorize_url: str, login: str, action: str = "authorize") -> str:
        """What a person does on the authorisation page: signed in as `login`, press
        Authorize (or Cancel). Returns where GitHub sends the browser back."""
        assert authorize_url.startswith(self.url + "/login/oauth/authorize?"), authorize_url
        response = httpx.post(authorize_url, data={"login": login, "action": action})
        assert response.status_code == HTTPStatus.FOUND, response.text
        return response.headers["location"]

    def _grant(self, query: dict[str, str], login: str) -> str:
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.grants[code] = _Grant(
                login=login,
                redirect_uri=query["redirect_uri"],
                code_challenge=query.get("code_challenge", ""),
            )
        return code

    def _token(self, form: dict[str, str]) -> dict[str, str] | None:
        with self.lock:
            grant = self.grants.pop(form.get("code", ""), None)  # a code is good once
        if (
            grant is None
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
            or form.get("redirect_uri") != grant.redirect_uri
        ):
            return None
        if grant.code_challenge:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.code_challenge:
                return None
        token = "gho_" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = grant.login
        return {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}


def _handler(github: GitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

        def _record(self, body: str = "") -> tuple[str, dict[str, str]]:
            github.requests.append((self.command, self.path, body))
            path, _, query = self.path.partition("?")
            return path, dict(urllib.parse.parse_qsl(query))

        def do_GET(self) -> None:
            path, query = self._record()
            if path == "/login/oauth/authorize":
                if query.get("client_id") != CLIENT_ID or not query.get("redirect_uri"):
                    self._send(400, b"unknown client", "text/plain")
                    return
                page = (
                    "<!doctype html><title>Authorize application</title>"
                    "<h1>Authorize chatsite</h1>"
                    f"<p>Scopes: {html.escape(query.get('scope', ''))}</p>"
                    '<form method="post">'
                    '<label>Signed in as <input name="login" placeholder="login"></label>'
                    '<button name="action" value="authorize">Authorize</button>'
                    '<button name="action" value="deny">Cancel</button></form>'
                )
                self._send(200, page.encode(), "text/html; charset=utf-8")
                return
            if path in ("/api/v3/user", "/api/v3/user/emails"):
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                login = github.tokens.get(token) if scheme.lower() == "token" else None
                user = github.users.get(login or "")
                if user is None:
                    self._json(401, {"message": "Bad credentials"})
                elif path == "/api/v3/user":
                    self._json(
                        200,
                        {
                            "id": user.id,
                            "login": user.login,
                            "name": user.name,
                            "email": user.email,
                        },
                    )
                else:
                    self._json(200, user.emails)
                return
            self._json(404, {"message": "Not Found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            path, query = self._record(body)
            form = dict(urllib.parse.parse_qsl(body))
            if path == "/login/oauth/authorize":
                back = query.get("redirect_uri", "")
                if form.get("action") == "deny":
                    params = {"error": "access_denied", "state": query.get("state", "")}
                else:
                    code = github._grant(query, form.get("login", ""))
                    params = {"code": code, "state": query.get("state", "")}
                self._send(
                    302, b"", "text/plain", Location=f"{back}?{urllib.parse.urlencode(params)}"
                )
                return
            if path == "/login/oauth/access_token":
                token = github._token(form)
                if token is None:
                    # GitHub answers a bad code with 200 and an error, as here.
                    self._json(200, {"error": "bad_verification_code"})
                else:
                    self._json(200, token)
                return
            self._json(404, {"message": "Not Found"})

    return Handler
