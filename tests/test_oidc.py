"""AUTH=oidc against an OpenID Connect provider on 127.0.0.1 (tests/fakes/oidc_provider.py): the code flow with
PKCE, state and nonce, the ID token's signature, who may enter, and what an attacker's tampering gets."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chatbot.local_model.server import free_port
from chatbot.web import create_app
from config import ConfigError, load_config
from tests.fakes.hf_server import TOKEN
from tests.fakes.oidc_provider import CLIENT_ID, CLIENT_SECRET, OpenIDProvider


@pytest.fixture
def provider():
    with OpenIDProvider() as running:
        yield running


@pytest.fixture
def app(tmp_path, fake, provider):
    return create_app(
        {
            "SECRET_KEY": "t",
            "CHAT_STORE_URL": f"sqlite:///{tmp_path}/chat.sqlite3",
            "API_URL": fake.task_url(),
            "HF_API_TOKEN": TOKEN,
            "AUTH": "oidc",
            "OIDC_ISSUER": provider.issuer,
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_NAME": "Example ID",
            "OIDC_ALLOWED_DOMAINS": ("example.org",),
            "OIDC_ALLOWED_EMAILS": ("eve@elsewhere.net",),
        }
    )


def sign_in(client, state: str | None = None):
    """Press "Sign in with ...", let the provider sign the person in, and come back; the callback's answer."""
    start = client.get("/sign-in/oidc")
    assert start.status_code == 302 and start.location.startswith("http://127.0.0.1")
    back = requests.get(start.location, allow_redirects=False, timeout=10).headers["Location"]
    parts = urlsplit(back)
    query = parts.query if state is None else parts.query.split("&state=")[0] + f"&state={state}"
    return client.get(f"{parts.path}?{query}")


def test_sign_in_with_the_provider_makes_the_account_and_the_first_is_the_admin(app, provider):
    client = app.test_client()
    assert client.get("/").location == "/sign-in"
    assert "Sign in with Example ID" in client.get("/sign-in").text
    assert sign_in(client).status_code == 302
    page = client.get("/", follow_redirects=True).text
    assert "Signed in as <strong>ada@example.org</strong>" in page and "Admin</a>" in page
    asked = provider.authorizations[-1]
    assert asked["code_challenge_method"] == "S256" and asked["code_challenge"] and asked["nonce"]
    assert asked["scope"] == "openid email profile" and asked["client_id"] == CLIENT_ID

    provider.next_person = {"sub": "2", "email": "Eve@Elsewhere.net", "email_verified": True}  # allowed by name
    other = app.test_client()
    sign_in(other)
    assert "Signed in as <strong>eve@elsewhere.net</strong>" in other.get("/", follow_redirects=True).text
    assert other.get("/admin/").status_code == 403


@pytest.mark.parametrize(
    ("person", "said"),
    [
        ({"sub": "3", "email": "mallory@evil.example", "email_verified": True}, "may not use this chat"),
        ({"sub": "4", "email": "bob@example.org", "email_verified": False}, "did not give a verified e-mail"),
        ({"sub": "5"}, "did not give a verified e-mail"),
        ({"sub": "6", "email": "bob@example.org"}, "did not give a verified e-mail"),  # no email_verified claim
        ({"sub": "7", "email": "bob@example.org", "email_verified": "false"}, "did not give a verified e-mail"),
        ({"sub": "8", "email": "bob@example.org", "email_verified": "true"}, "did not give a verified e-mail"),
    ],
)
def test_only_allowed_verified_addresses_enter(app, provider, person, said):
    provider.next_person = person
    client = app.test_client()
    refused = sign_in(client)
    assert refused.status_code == 403 and said in refused.text
    assert client.get("/").location == "/sign-in"


@pytest.mark.parametrize("forged", ["signature", "nonce", "audience"])
def test_a_tampered_id_token_signs_nobody_in(app, provider, forged):
    provider.forge = forged
    client = app.test_client()
    refused = sign_in(client)
    assert refused.status_code == 403 and "The sign-in with Example ID did not succeed" in refused.text
    assert client.get("/").location == "/sign-in"


def test_a_callback_with_another_state_signs_nobody_in(app):
    """Login CSRF: an attacker's own code and state, or a state this browser never started, get nowhere."""
    client = app.test_client()
    refused = sign_in(client, state="an-attackers-state")
    assert refused.status_code == 403 and "MismatchingStateError" in refused.text
    assert client.get("/").location == "/sign-in"
    stranger = app.test_client()
    start = client.get("/sign-in/oidc").location
    back = requests.get(start, allow_redirects=False, timeout=10).headers["Location"]
    assert stranger.get(urlsplit(back).path + "?" + urlsplit(back).query).status_code == 403  # not its session
    assert parse_qs(urlsplit(back).query)["code"]


def test_oidc_needs_its_settings_and_someone_to_let_in(provider):
    with pytest.raises(ConfigError, match="AUTH=oidc needs OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET"):
        load_config({"AUTH": "oidc"})
    settings = {"AUTH": "oidc", "OIDC_ISSUER": provider.issuer, "OIDC_CLIENT_ID": "a", "OIDC_CLIENT_SECRET": "b"}
    with pytest.raises(ConfigError, match="needs OIDC_ALLOWED_EMAILS or OIDC_ALLOWED_DOMAINS"):
        load_config(settings)
    assert load_config({**settings, "OIDC_ALLOWED_DOMAINS": "Example.org"})["OIDC_ALLOWED_DOMAINS"] == ("example.org",)


def test_a_provider_that_does_not_answer_is_said_so(tmp_path, fake):
    closed = f"http://127.0.0.1:{free_port()}"
    settings = {"SECRET_KEY": "t", "CHAT_STORE_URL": f"sqlite:///{tmp_path}/c.db", "API_URL": fake.task_url()}
    settings |= {"AUTH": "oidc", "OIDC_ISSUER": closed, "OIDC_CLIENT_ID": "a", "OIDC_CLIENT_SECRET": "b"}
    app = create_app({**settings, "OIDC_ALLOWED_DOMAINS": ("example.org",), "OIDC_NAME": "Example ID"})
    answer = app.test_client().get("/sign-in/oidc")
    assert answer.status_code == 503
    assert "Example ID does not answer (ConnectionError), so nobody can sign in right now" in answer.text
    assert f"check OIDC_ISSUER ({closed})" in answer.text


def test_a_provider_known_to_verify_every_address_can_be_trusted_to(app, provider):
    """OIDC_TRUST_UNVERIFIED_EMAIL: for providers that verify every address and send no email_verified claim."""
    app.config["OIDC_TRUST_UNVERIFIED_EMAIL"] = True
    provider.next_person = {"sub": "6", "email": "bob@example.org"}
    assert sign_in(app.test_client()).status_code == 302
    provider.next_person = {"sub": "7", "email": "carol@example.org", "email_verified": False}  # said: not verified
    assert sign_in(app.test_client()).status_code == 403


def test_a_provider_that_gives_the_address_from_userinfo_alone_signs_people_in(app, provider):
    """OIDC Core 5.4: with the code flow the claims may come from the UserInfo endpoint only."""
    provider.claims_in_userinfo_only = True
    client = app.test_client()
    assert sign_in(client).status_code == 302
    assert provider.userinfo_asked == 1
    assert "Signed in as <strong>ada@example.org</strong>" in client.get("/", follow_redirects=True).text


def test_userinfo_about_someone_else_signs_nobody_in(app, provider):
    """OIDC Core 5.3.4: the UserInfo answer's sub must be the ID token's, or it may be about another person."""
    provider.claims_in_userinfo_only, provider.forge = True, "userinfo"
    client = app.test_client()
    refused = sign_in(client)
    assert refused.status_code == 403 and "did not give a verified e-mail" in refused.text
    assert client.get("/").location == "/sign-in"
