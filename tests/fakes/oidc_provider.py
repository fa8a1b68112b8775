"""An OpenID Connect provider on 127.0.0.1, for the sign-in tests (a real one needs the internet).

It speaks what a provider's docs promise: a discovery document, an authorization endpoint that signs in
`next_person` at once and sends the browser back with a code, a token endpoint that checks the client's secret,
the redirect URI and the PKCE verifier against the challenge (S256), ID tokens signed with RS256, the public key
at the JWKS endpoint, and a UserInfo endpoint for the access token. `claims_in_userinfo_only` gives the person's
claims from UserInfo alone, as OIDC Core 5.4 allows (the ID token then names only `sub`). `forge` makes it
misbehave as an attacker's would: a token signed with another key, the wrong nonce, the wrong audience, or a
UserInfo answer about someone else ("userinfo").
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID, CLIENT_SECRET = "chat-client", "chat-client-secret"


class OpenIDProvider:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "key-1"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "key-1"})  # the same kid: a forger's
        self.next_person: dict[str, Any] = {"sub": "1", "email": "ada@example.org", "email_verified": True}
        self.forge: str | None = None  # "signature", "nonce", "audience" or "userinfo"
        self.claims_in_userinfo_only = False
        self.userinfo_asked = 0
        self._access: dict[str, dict[str, Any]] = {}  # access token -> the person it was given for
        self.authorizations: list[dict[str, str]] = []  # the query of each authorization request
        self._codes: dict[str, dict[str, Any]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OpenIDProvider:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def authorize(self, query: dict[str, str]) -> str:
        """Where the browser goes next: back to the client with a code (the person is signed in at once)."""
        self.authorizations.append(query)
        code = secrets.token_urlsafe(16)
        self._codes[code] = {"query": query, "person": dict(self.next_person)}
        return query["redirect_uri"] + "?" + urlencode({"code": code, "state": query.get("state", "")})

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization.startswith("Basic "):
            client_id, client_secret = base64.b64decode(authorization[6:]).decode().split(":", 1)
        granted = self._codes.pop(form.get("code", ""), None)
        if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client"}
        if granted is None or form.get("redirect_uri") != granted["query"]["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if granted["query"].get("code_challenge_method") != "S256" or challenge != granted["query"].get(
            "code_challenge"
        ):
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        now = int(time.time())
        person = granted["person"]
        if self.claims_in_userinfo_only:
            person = {"sub": person.get("sub", "")}
        claims = {
            "iss": self.issuer,
            "aud": "someone-else" if self.forge == "audience" else CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": "not-the-nonce" if self.forge == "nonce" else granted["query"].get("nonce"),
            **person,
        }
        key = self.other_key if self.forge == "signature" else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "key-1"}, claims, key)
        access_token = secrets.token_urlsafe(16)
        self._access[access_token] = granted["person"]
        return 200, {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }

    def userinfo(self, authorization: str) -> tuple[int, dict[str, Any]]:
        """The claims about the person the access token was given for (OIDC Core 5.3)."""
        self.userinfo_asked += 1
        person = self._access.get(authorization.removeprefix("Bearer "))
        if person is None:
            return 401, {"error": "invalid_token"}
        return 200, {**person, "sub": "someone-else"} if self.forge == "userinfo" else person

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif parts.path == "/jwks":
                    self._json(200, {"keys": [provider.key.as_dict(private=False)]})
                elif parts.path == "/userinfo":
                    self._json(*provider.userinfo(self.headers.get("Authorization", "")))
                elif parts.path == "/authorize":
                    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                    self.send_response(302)
                    self.send_header("Location", provider.authorize(query))
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = {key: values[0] for key, values in parse_qs(body).items()}
                self._json(*provider.token(form, self.headers.get("Authorization", "")))

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
