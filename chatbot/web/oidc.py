"""AUTH=oidc: sign in with any OpenID Connect provider (Hugging Face, Google, Keycloak, Authelia, GitHub through
a broker) by its issuer URL, client id and secret. Authlib does the protocol: the authorization code flow with
PKCE (S256), the state and nonce checked, the ID token's signature checked against the provider's keys (JWKS).
Who may enter: OIDC_ALLOWED_EMAILS and OIDC_ALLOWED_DOMAINS, on an e-mail address the provider says is verified
(`email_verified` true, from the ID token or else from the UserInfo endpoint)."""

from __future__ import annotations

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, render_template, url_for
from joserfc.errors import JoseError

PROVIDER = "provider"


def init_app(app: Flask) -> None:
    """Register the provider from OIDC_ISSUER (its discovery document is read on the first sign-in)."""
    if app.config["AUTH"] != "oidc":
        return
    oauth = OAuth(app)
    oauth.register(
        PROVIDER,
        client_id=app.config["OIDC_CLIENT_ID"],
        client_secret=app.config["OIDC_CLIENT_SECRET"],
        server_metadata_url=app.config["OIDC_ISSUER"] + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256", "timeout": 10},
    )
    app.extensions["oidc"] = oauth


def _client():
    return getattr(current_app.extensions["oidc"], PROVIDER)


def start_sign_in():
    """Off to the provider; it comes back to the callback with a code. A provider that does not answer is said
    so on the sign-in page."""
    try:
        return _client().authorize_redirect(url_for("auth.oidc_callback", _external=True))
    except (requests.RequestException, OAuthError, ValueError) as error:
        current_app.logger.warning("the OpenID Connect provider did not answer: %s", type(error).__name__)
        name, issuer = current_app.config["OIDC_NAME"], current_app.config["OIDC_ISSUER"]
        problem = (
            f"{name} does not answer ({type(error).__name__}), so nobody can sign in right now. Try again in a "
            f"moment; if it lasts, whoever runs the chat should check OIDC_ISSUER ({issuer})."
        )
        return sign_in_page(problem, 503)


def verified_email() -> tuple[str | None, str]:
    """The signed-in person's e-mail, from the checked ID token; (None, why) when the sign-in did not succeed or
    the address may not enter."""
    try:
        token = _client().authorize_access_token()
    except (OAuthError, JoseError, requests.RequestException, ValueError, KeyError) as error:
        current_app.logger.warning("an OpenID Connect sign-in failed: %s", type(error).__name__)
        return None, f"The sign-in with {current_app.config['OIDC_NAME']} did not succeed ({type(error).__name__})."
    claims = token.get("userinfo") or {}
    if not claims.get("email"):
        claims = _claims_from_userinfo(token, claims.get("sub"))
    email = str(claims.get("email") or "").strip().lower()
    if not email or not _verified(claims.get("email_verified")):
        return None, f"{current_app.config['OIDC_NAME']} did not give a verified e-mail address."
    domain = email.rsplit("@", 1)[-1]
    if (
        email not in current_app.config["OIDC_ALLOWED_EMAILS"]
        and domain not in current_app.config["OIDC_ALLOWED_DOMAINS"]
    ):
        return None, f"{email} may not use this chat: ask its admin to allow your address or your domain."
    return email, ""


def _claims_from_userinfo(token: dict, subject: str | None) -> dict:
    """The person's claims from the UserInfo endpoint, where a provider may give them alone (OIDC Core 5.4);
    none when they are about another person than the ID token names (5.3.4), or the endpoint fails."""
    try:
        claims = _client().userinfo(token=token)
    except (OAuthError, requests.RequestException, ValueError, KeyError) as error:
        current_app.logger.warning("the OpenID Connect UserInfo endpoint failed: %s", type(error).__name__)
        return {}
    return claims if subject and claims.get("sub") == subject else {}


def _verified(said: object) -> bool:
    """Only a boolean true verifies an address; OIDC_TRUST_UNVERIFIED_EMAIL (for providers that verify every
    address) takes any answer but a no."""
    trusted = current_app.config["OIDC_TRUST_UNVERIFIED_EMAIL"] and str(said).lower() != "false"
    return said is True or trusted


def sign_in_page(problem: str = "", status: int = 200):
    return render_template("auth/sign_in.html", problem=problem), status
