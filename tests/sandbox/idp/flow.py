"""Driving the sandbox IdP the way its clients do: authlib's own OAuth2 client, and a person at the sign-in page."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from sandbox.idp import SandboxIdP

CLIENT_ID = "qbot"
CLIENT_SECRET = "qbot-test-secret"
REDIRECT_URI = "http://127.0.0.1:3978/auth/callback"
OTHER_CLIENT_ID = "other-app"
OTHER_SECRET = "other-secret"
SCOPE = "openid email profile offline_access"
# Everything here is plain loopback HTTP; one shared TLS context spares each httpx client ~30 ms of set-up.
TLS = ssl.create_default_context()


class Clock:
    """Time the test moves forward, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Login:
    url: str
    state: str
    verifier: str
    nonce: str


@dataclass
class SignedIn:
    login: Login
    location: str

    @property
    def code(self) -> str:
        return parse_qs(urlsplit(self.location).query)["code"][0]


class FormReader(HTMLParser):
    """The inputs of each form on a page, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self.buttons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({})
        elif tag == "input" and attr.get("type") == "hidden":
            self.forms[-1][attr["name"]] = attr["value"]
        elif tag == "button" and attr.get("name") == "username":
            self.buttons.append(attr["value"])


def read_forms(page: str) -> FormReader:
    reader = FormReader()
    reader.feed(page)
    return reader


def oauth_client(idp: SandboxIdP, **kwargs: Any) -> OAuth2Client:
    return OAuth2Client(
        CLIENT_ID,
        CLIENT_SECRET,
        scope=kwargs.pop("scope", SCOPE),
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint=idp.issuer + "/token",
        verify=TLS,
        **kwargs,
    )


def start_login(idp: SandboxIdP, **params: str) -> Login:
    verifier, nonce = generate_token(48), generate_token(16)
    with oauth_client(idp, scope=params.pop("scope", SCOPE)) as client:
        url, state = client.create_authorization_url(
            idp.issuer + "/authorize", code_verifier=verifier, nonce=nonce, **params
        )
    return Login(url, state, verifier, nonce)


def sign_in(http: httpx.Client, login: Login, username: str = "alice") -> SignedIn:
    """What a person (or headless browser) does: open the page, pick a user, follow the redirect."""
    page = http.get(login.url)
    assert page.status_code == 200, page.text
    fields = read_forms(page.text).forms[0]
    answer = http.post("/authorize", data={**fields, "username": username})
    assert answer.status_code == 302, answer.text
    return SignedIn(login, answer.headers["location"])


def fetch_tokens(idp: SandboxIdP, signed_in: SignedIn, **kwargs: Any) -> dict[str, Any]:
    with oauth_client(idp, **kwargs) as client:
        token = client.fetch_token(
            authorization_response=signed_in.location,
            state=signed_in.login.state,
            code_verifier=signed_in.login.verifier,
        )
    return dict(token)


def link(idp: SandboxIdP, http: httpx.Client, username: str = "alice") -> dict[str, Any]:
    return fetch_tokens(idp, sign_in(http, start_login(idp), username))


def redeem(http: httpx.Client, signed_in: SignedIn, **overrides: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": signed_in.code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": signed_in.login.verifier,
        **overrides,
    }
    return http.post("/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return http.post("/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))


def userinfo(http: httpx.Client, access_token: str) -> httpx.Response:
    return http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def verified_claims(http: httpx.Client, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(http.get("/jwks").json())
    return dict(jwt.decode(id_token, keys, algorithms=["RS256"]).claims)


def error_of(response: httpx.Response) -> str:
    return str(response.json()["error"])


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def authorize_params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": create_s256_code_challenge(generate_token(48)),
        "code_challenge_method": "S256",
        **overrides,
    }
    return {key: value for key, value in params.items() if value is not None}
