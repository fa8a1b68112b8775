"""The browser session's owner id, CSRF tokens for forms, security headers, and what a proxy is believed."""

from __future__ import annotations

import hmac
import os
import secrets
from typing import Any, Literal, overload

from flask import Flask, abort, g, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from config import bound_to_loopback

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1"]


def trusted_hosts(config: dict) -> list[str] | None:
    """The Host names requests may carry (others get 400, so a DNS-rebound name cannot reach a chat bound to
    127.0.0.1): the loopback ones and ALLOWED_HOSTS; None (any) for a chat bound to another address with no
    ALLOWED_HOSTS, which every name reaches anyway."""
    if config["ALLOWED_HOSTS"]:
        return [*LOOPBACK_HOSTS, *config["ALLOWED_HOSTS"]]
    return LOOPBACK_HOSTS if bound_to_loopback(config["CHAT_BIND"]) else None


@overload
def owner_id(create: Literal[True] = True) -> str: ...
@overload
def owner_id(create: Literal[False]) -> str | None: ...
def owner_id(create: bool = True) -> str | None:
    """Whom the store keeps this visitor's conversations under: the signed-in account, or else the random id of
    this browser session (made now unless `create` is False: then None when there is none yet)."""
    if g.get("account") is not None:
        return g.account.owner
    if "owner" not in session and create:
        session["owner"] = secrets.token_urlsafe(32)
        session.permanent = True
    return session.get("owner")


def csrf_token() -> str:
    """The session's CSRF token, for every form that posts (empty in fragments sent over the socket,
    whose forms send through the socket, which checks the origin instead)."""
    if not has_request_context():
        return ""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()) or not sent:
        abort(400, description="The form expired. Reload the page and try again.")


def _security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def secret_key(instance_path: str) -> str:
    """A key kept in the instance folder, so sessions outlive a restart; made once, atomically."""
    path = os.path.join(instance_path, "secret_key")
    if not os.path.exists(path):
        os.makedirs(instance_path, exist_ok=True)
        temporary = f"{path}.{os.getpid()}"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(temporary, path)  # fails if another worker won the race; then use theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    with open(path) as file:
        return file.read().strip()


class FromTrustedProxies:
    """ProxyFix for requests from TRUSTED_PROXY_ADDRESSES alone: a client that reaches gunicorn directly cannot
    name its own address (and dodge every limit per address), scheme or host."""

    def __init__(self, app: Any, hops: int, trusted: tuple[str, ...]) -> None:
        self.direct, self.trusted = app, trusted
        self.through_proxy = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    def __call__(self, environ: dict, start_response: Any) -> Any:
        believed = environ.get("REMOTE_ADDR") in self.trusted
        return (self.through_proxy if believed else self.direct)(environ, start_response)


class SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the page came over HTTPS (directly or through the proxy)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def init_app(app: Flask) -> None:
    app.config["TRUSTED_HOSTS"] = trusted_hosts(app.config)
    app.session_interface = SessionInterface()
    app.before_request(_check_csrf)
    app.after_request(_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
