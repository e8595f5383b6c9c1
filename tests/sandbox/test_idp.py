"""The sandbox IdP over real HTTP: the happy path with authlib's own client, and every refusal it owes."""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from sandbox.directory import sample_directory
from sandbox.idp import AWS_TAGS_CLAIM, SandboxIdP
from sandbox.serving import Served, bind, url_of
from tests.conftest import LoopThread

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


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def idp(servers: LoopThread, clock: Clock, signing_key: RSAKey) -> Iterator[SandboxIdP]:
    sock = bind("127.0.0.1", 0)
    provider = SandboxIdP(
        issuer=url_of(sock),
        directory=sample_directory(),
        clock=clock,
        signing_key=signing_key,
        id_token_ttl=120,
        code_ttl=60,
        access_token_ttl=300,
        refresh_token_ttl=3600,
    )
    provider.add_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    provider.add_client(OTHER_CLIENT_ID, OTHER_SECRET, ["http://127.0.0.1:9999/cb"])
    served = Served(provider.app(), sock)
    servers.run(served.start())
    yield provider
    servers.run(served.stop())


@pytest.fixture
def http(idp: SandboxIdP) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=idp.issuer, follow_redirects=False, timeout=5, verify=TLS) as client:
        yield client


# --- driving the flow --------------------------------------------------------------------------------------


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


# --- discovery and keys ------------------------------------------------------------------------------------


def test_discovery_document_points_at_this_issuer(idp: SandboxIdP, http: httpx.Client) -> None:
    meta = http.get("/.well-known/openid-configuration").json()
    assert meta["issuer"] == idp.issuer
    for name, path in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("userinfo_endpoint", "/userinfo"),
        ("revocation_endpoint", "/revoke"),
    ]:
        assert meta[name] == idp.issuer + path
    assert meta["response_types_supported"] == ["code"]
    assert meta["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post"}
    assert {"openid", "email", "profile", "offline_access", "groups"} <= set(meta["scopes_supported"])
    assert {"email", "groups", AWS_TAGS_CLAIM} <= set(meta["claims_supported"])


def test_jwks_publishes_only_the_public_key(http: httpx.Client) -> None:
    keys = http.get("/jwks").json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "RSA" and keys[0]["kid"] and keys[0]["alg"] == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])


def test_issuer_over_plain_http_off_loopback_is_refused() -> None:
    with pytest.raises(ValueError, match="https or loopback"):
        SandboxIdP(issuer="http://idp.example.com", directory=sample_directory())


# --- the happy path ----------------------------------------------------------------------------------------


def test_code_flow_issues_a_verifiable_id_token_with_the_email_tag(idp: SandboxIdP, http: httpx.Client) -> None:
    login = start_login(idp)
    token = fetch_tokens(idp, sign_in(http, login, "alice"))

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 300
    assert token["refresh_token"] and token["access_token"]
    assert set(token["scope"].split()) == set(SCOPE.split())

    claims = verified_claims(http, token["id_token"])
    JWTClaimsRegistry(
        iss={"essential": True, "value": idp.issuer},
        aud={"essential": True, "value": CLIENT_ID},
        nonce={"essential": True, "value": login.nonce},
        sub={"essential": True},
        exp={"essential": True},
    ).validate(claims)
    assert claims["sub"] == idp.subject("alice") and "@" not in claims["sub"]
    assert claims["exp"] - claims["iat"] == 120
    assert claims["auth_time"] <= claims["iat"]
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    assert claims["name"] == "Alice Anders"
    assert claims["groups"] == ["core-team", "engineering"]
    assert claims[AWS_TAGS_CLAIM] == {
        "principal_tags": {"Email": ["alice@example.com"]},
        "transitive_tag_keys": ["Email"],
    }
    assert idp.stats.codes_issued == 1
    assert idp.stats.tokens_issued == 1
    assert idp.stats.tokens_by_grant["authorization_code"] == 1


def test_subject_is_per_user_and_stable(idp: SandboxIdP, http: httpx.Client) -> None:
    first = verified_claims(http, link(idp, http, "bob")["id_token"])
    second = verified_claims(http, link(idp, http, "bob")["id_token"])
    carol = verified_claims(http, link(idp, http, "carol")["id_token"])
    assert first["sub"] == second["sub"] != carol["sub"]


def test_claims_do_not_depend_on_the_scope(idp: SandboxIdP, http: httpx.Client) -> None:
    token = fetch_tokens(idp, sign_in(http, start_login(idp, scope="openid")), scope="openid")
    claims = verified_claims(http, token["id_token"])
    assert claims["email"] == "alice@example.com"
    assert claims["groups"] == ["core-team", "engineering"]
    assert AWS_TAGS_CLAIM in claims


def test_no_refresh_token_without_offline_access(idp: SandboxIdP, http: httpx.Client) -> None:
    scope = "openid email profile"
    token = fetch_tokens(idp, sign_in(http, start_login(idp, scope=scope)), scope=scope)
    assert "refresh_token" not in token
    assert token["id_token"]


def test_client_secret_post_is_accepted(idp: SandboxIdP, http: httpx.Client) -> None:
    token = fetch_tokens(idp, sign_in(http, start_login(idp)), token_endpoint_auth_method="client_secret_post")
    assert token["id_token"]


# --- the sign-in page --------------------------------------------------------------------------------------


def test_login_page_lists_people_and_carries_the_request(idp: SandboxIdP, http: httpx.Client) -> None:
    login = start_login(idp, state="the-state")
    page = http.get(login.url)
    assert page.headers["content-type"].startswith("text/html")
    forms = read_forms(page.text)
    assert forms.buttons == ["alice", "bob", "carol", "dave"]
    for text in ["Alice Anders", "alice@example.com", "core-team, engineering", 'name="username"']:
        assert text in page.text
    carried = forms.forms[0]
    assert carried == forms.forms[1]
    assert carried["state"] == "the-state"
    assert carried["nonce"] == login.nonce
    assert carried["code_challenge"] == create_s256_code_challenge(login.verifier)
    assert carried["redirect_uri"] == REDIRECT_URI


def test_unknown_username_shows_the_page_again(idp: SandboxIdP, http: httpx.Client) -> None:
    fields = read_forms(http.get(start_login(idp).url).text).forms[0]
    answer = http.post("/authorize", data={**fields, "username": "mallory"})
    assert answer.status_code == 200
    assert "mallory" in answer.text and 'role="alert"' in answer.text
    assert "location" not in answer.headers
    assert idp.stats.codes_issued == 0


def test_sign_in_redirects_with_code_and_state(idp: SandboxIdP, http: httpx.Client) -> None:
    login = start_login(idp, state="xyz")
    signed_in = sign_in(http, login, "dave")
    params = parse_qs(urlsplit(signed_in.location).query)
    assert signed_in.location.startswith(REDIRECT_URI + "?")
    assert params["state"] == ["xyz"] and params["code"][0]


@pytest.mark.parametrize("prompt", ["consent", "login", "login consent"])
def test_interactive_prompts_lead_to_the_sign_in_page(idp: SandboxIdP, http: httpx.Client, prompt: str) -> None:
    token = fetch_tokens(idp, sign_in(http, start_login(idp, prompt=prompt)))
    assert token["refresh_token"]


# --- authorization refusals --------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "nobody"},
        {"client_id": None},
        {"redirect_uri": "http://evil.example/auth/callback"},
        {"redirect_uri": REDIRECT_URI + "/"},
        {"redirect_uri": REDIRECT_URI + "?next=/x"},
        {"redirect_uri": None},
        {"client_id": "nobody", "response_type": "token"},
    ],
    ids=["unknown-client", "no-client", "foreign-uri", "trailing-slash", "extra-query", "no-uri", "both-bad"],
)
def test_unverifiable_request_gets_an_error_page_never_a_redirect(
    http: httpx.Client, overrides: dict[str, str | None]
) -> None:
    for send in (
        lambda p: http.get("/authorize?" + urlencode(p)),
        lambda p: http.post("/authorize", data={**p, "username": "alice"}),
    ):
        answer = send(authorize_params(**overrides))
        assert answer.status_code == 400
        assert "location" not in answer.headers
        assert answer.headers["content-type"].startswith("text/html")
        assert "Traceback" not in answer.text


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"nonce": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"scope": "email offline_access"}, "invalid_scope"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"prompt": "none"}, "login_required"),
    ],
    ids=[
        "no-pkce",
        "plain-pkce",
        "pkce-without-method",
        "method-without-challenge",
        "malformed-challenge",
        "no-nonce",
        "implicit",
        "hybrid",
        "no-openid",
        "unknown-scope",
        "fragment-mode",
        "prompt-none",
    ],
)
def test_invalid_request_is_sent_back_to_the_client(
    idp: SandboxIdP, http: httpx.Client, overrides: dict[str, str | None], error: str
) -> None:
    params = authorize_params(**overrides)
    for answer in (
        http.get("/authorize?" + urlencode(params)),
        http.post("/authorize", data={**params, "username": "alice"}),
    ):
        back = redirect_params(answer)
        assert back["error"] == error
        assert back["state"] == "st-1"
        assert "code" not in back
    assert idp.stats.codes_issued == 0


def test_a_nonce_is_accepted_once(http: httpx.Client) -> None:
    params = authorize_params(nonce="same-nonce")
    first = http.post("/authorize", data={**params, "username": "alice"})
    assert "code" in redirect_params(first)
    again = http.post("/authorize", data={**params, "username": "alice"})
    assert redirect_params(again)["error"] == "invalid_request"


# --- token endpoint refusals -------------------------------------------------------------------------------


def test_wrong_pkce_verifier_is_refused(idp: SandboxIdP, http: httpx.Client) -> None:
    answer = redeem(http, sign_in(http, start_login(idp)), code_verifier=generate_token(48))
    assert answer.status_code == 400 and error_of(answer) == "invalid_grant"
    assert idp.stats.tokens_issued == 0


def test_missing_pkce_verifier_is_refused(idp: SandboxIdP, http: httpx.Client) -> None:
    signed_in = sign_in(http, start_login(idp))
    form = {"grant_type": "authorization_code", "code": signed_in.code, "redirect_uri": REDIRECT_URI}
    answer = http.post("/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    assert error_of(answer) == "invalid_request"


def test_a_refused_attempt_spends_the_code(idp: SandboxIdP, http: httpx.Client) -> None:
    signed_in = sign_in(http, start_login(idp))
    assert error_of(redeem(http, signed_in, code_verifier=generate_token(48))) == "invalid_grant"
    assert error_of(redeem(http, signed_in)) == "invalid_grant"


@pytest.mark.parametrize(
    "redirect_uri", [REDIRECT_URI + "/", "http://127.0.0.1:3978/other", ""], ids=["slash", "other", "empty"]
)
def test_redirect_uri_must_match_the_authorization_request(
    idp: SandboxIdP, http: httpx.Client, redirect_uri: str
) -> None:
    answer = redeem(http, sign_in(http, start_login(idp)), redirect_uri=redirect_uri)
    assert error_of(answer) == "invalid_grant"


def test_reused_code_is_refused_and_revokes_what_it_bought(idp: SandboxIdP, http: httpx.Client) -> None:
    signed_in = sign_in(http, start_login(idp))
    first = redeem(http, signed_in)
    assert first.status_code == 200
    tokens = first.json()
    assert userinfo(http, tokens["access_token"]).status_code == 200

    again = redeem(http, signed_in)
    assert again.status_code == 400 and error_of(again) == "invalid_grant"
    assert userinfo(http, tokens["access_token"]).status_code == 401
    assert error_of(refresh(http, tokens["refresh_token"])) == "invalid_grant"


def test_expired_code_is_refused(idp: SandboxIdP, http: httpx.Client, clock: Clock) -> None:
    signed_in = sign_in(http, start_login(idp))
    clock.advance(61)
    assert error_of(redeem(http, signed_in)) == "invalid_grant"


def test_code_of_another_client_is_refused(idp: SandboxIdP, http: httpx.Client) -> None:
    signed_in = sign_in(http, start_login(idp))
    form = {
        "grant_type": "authorization_code",
        "code": signed_in.code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": signed_in.login.verifier,
    }
    answer = http.post("/token", data=form, auth=(OTHER_CLIENT_ID, OTHER_SECRET))
    assert error_of(answer) == "invalid_grant"
    assert redeem(http, signed_in).status_code == 200  # the other client's attempt did not burn it


@pytest.mark.parametrize(
    ("auth", "extra", "status"),
    [
        ((CLIENT_ID, "wrong"), {}, 401),
        (("nobody", CLIENT_SECRET), {}, 401),
        (None, {"client_id": CLIENT_ID, "client_secret": "wrong"}, 401),
        (None, {"client_id": CLIENT_ID}, 401),
        (None, {}, 401),
    ],
    ids=["basic-wrong-secret", "basic-unknown-client", "post-wrong-secret", "no-secret", "no-auth"],
)
def test_client_must_authenticate_at_the_token_endpoint(
    idp: SandboxIdP,
    http: httpx.Client,
    auth: tuple[str, str] | None,
    extra: dict[str, str],
    status: int,
) -> None:
    signed_in = sign_in(http, start_login(idp))
    form = {
        "grant_type": "authorization_code",
        "code": signed_in.code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": signed_in.login.verifier,
        **extra,
    }
    answer = http.post("/token", data=form, auth=auth)
    assert answer.status_code == status and error_of(answer) == "invalid_client"
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert redeem(http, signed_in).status_code == 200  # unauthenticated attempts do not burn the code


def test_two_client_authentications_are_refused(idp: SandboxIdP, http: httpx.Client) -> None:
    answer = redeem(http, sign_in(http, start_login(idp)), client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert error_of(answer) == "invalid_request"


def test_unknown_grant_type_is_refused(http: httpx.Client) -> None:
    form = {"grant_type": "password", "username": "alice", "password": "x"}
    answer = http.post("/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    assert error_of(answer) == "unsupported_grant_type"


# --- refresh -----------------------------------------------------------------------------------------------


def test_refresh_rotates_and_answers_a_fresh_id_token(idp: SandboxIdP, http: httpx.Client, clock: Clock) -> None:
    first = link(idp, http)
    first_claims = verified_claims(http, first["id_token"])
    clock.advance(30)

    answer = refresh(http, first["refresh_token"])
    assert answer.status_code == 200, answer.text
    second = answer.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    claims = verified_claims(http, second["id_token"])
    assert claims["iat"] == first_claims["iat"] + 30
    assert claims["exp"] == claims["iat"] + 120
    assert "nonce" not in claims
    assert claims["auth_time"] == first_claims["auth_time"]
    assert claims["sub"] == first_claims["sub"] and claims["aud"] == CLIENT_ID
    assert claims[AWS_TAGS_CLAIM]["principal_tags"] == {"Email": ["alice@example.com"]}
    assert idp.stats.refreshes == {"alice": 1}
    assert idp.stats.tokens_by_grant == {"authorization_code": 1, "refresh_token": 1}

    third = refresh(http, second["refresh_token"])
    assert third.status_code == 200
    assert idp.stats.refreshes["alice"] == 2


def test_refresh_with_authlib_client(idp: SandboxIdP, http: httpx.Client) -> None:
    first = link(idp, http)
    with oauth_client(idp) as client:
        second = client.refresh_token(idp.issuer + "/token", refresh_token=first["refresh_token"])
    assert second["id_token"] and second["refresh_token"] != first["refresh_token"]


def test_reused_refresh_token_revokes_the_whole_family(idp: SandboxIdP, http: httpx.Client) -> None:
    first = link(idp, http)
    second = refresh(http, first["refresh_token"]).json()
    unrelated = link(idp, http, "alice")

    reused = refresh(http, first["refresh_token"])
    assert reused.status_code == 400 and error_of(reused) == "invalid_grant"
    assert error_of(refresh(http, second["refresh_token"])) == "invalid_grant"
    assert userinfo(http, second["access_token"]).status_code == 401
    assert refresh(http, unrelated["refresh_token"]).status_code == 200  # another sign-in is untouched


def test_expired_refresh_token_is_refused(idp: SandboxIdP, http: httpx.Client, clock: Clock) -> None:
    token = link(idp, http)
    clock.advance(3601)
    assert error_of(refresh(http, token["refresh_token"])) == "invalid_grant"


def test_refresh_token_of_another_client_is_refused(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http)
    form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    answer = http.post("/token", data=form, auth=(OTHER_CLIENT_ID, OTHER_SECRET))
    assert error_of(answer) == "invalid_grant"
    assert refresh(http, token["refresh_token"]).status_code == 200


def test_refresh_needs_client_authentication(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http)
    form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": CLIENT_ID}
    assert error_of(http.post("/token", data=form)) == "invalid_client"
    answer = http.post("/token", data=form, auth=(CLIENT_ID, "wrong"))
    assert answer.status_code == 401
    assert refresh(http, token["refresh_token"]).status_code == 200


def test_refresh_cannot_widen_the_scope(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http)
    form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "scope": SCOPE + " groups"}
    answer = http.post("/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    assert error_of(answer) == "invalid_scope"


def test_user_removed_from_directory_cannot_refresh(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http, "carol")
    del idp.directory.users["carol"]
    assert error_of(refresh(http, token["refresh_token"])) == "invalid_grant"
    assert userinfo(http, token["access_token"]).status_code == 401


# --- revocation --------------------------------------------------------------------------------------------


def revoke(http: httpx.Client, token: str, auth: tuple[str, str] | None = (CLIENT_ID, CLIENT_SECRET), **form: str):
    return http.post("/revoke", data={"token": token, **form}, auth=auth)


def test_revoking_a_refresh_token_ends_the_sign_in(idp: SandboxIdP, http: httpx.Client) -> None:
    first = link(idp, http)
    second = refresh(http, first["refresh_token"]).json()
    answer = revoke(http, second["refresh_token"], token_type_hint="refresh_token")
    assert answer.status_code == 200
    assert error_of(refresh(http, second["refresh_token"])) == "invalid_grant"
    assert userinfo(http, second["access_token"]).status_code == 401
    assert userinfo(http, first["access_token"]).status_code == 401


def test_revoking_an_access_token_leaves_the_refresh_token(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http)
    assert revoke(http, token["access_token"]).status_code == 200
    assert userinfo(http, token["access_token"]).status_code == 401
    assert refresh(http, token["refresh_token"]).status_code == 200


def test_revocation_needs_the_owning_client(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http)
    assert revoke(http, token["refresh_token"], auth=None).status_code in (400, 401)
    assert revoke(http, token["refresh_token"], auth=(CLIENT_ID, "wrong")).status_code == 401
    assert error_of(revoke(http, token["refresh_token"], auth=(OTHER_CLIENT_ID, OTHER_SECRET))) == "invalid_grant"
    assert refresh(http, token["refresh_token"]).status_code == 200


def test_revoking_an_unknown_token_is_not_an_error(http: httpx.Client) -> None:
    assert revoke(http, "no-such-token").status_code == 200  # RFC 7009 §2.2


def test_revoke_user_ends_all_of_their_sessions(idp: SandboxIdP, http: httpx.Client) -> None:
    alice_1, alice_2, bob = link(idp, http, "alice"), link(idp, http, "alice"), link(idp, http, "bob")
    idp.revoke_user("alice")
    for token in (alice_1, alice_2):
        assert error_of(refresh(http, token["refresh_token"])) == "invalid_grant"
        assert userinfo(http, token["access_token"]).status_code == 401
    assert refresh(http, bob["refresh_token"]).status_code == 200
    assert link(idp, http, "alice")["refresh_token"]  # signing in again works


# --- userinfo ----------------------------------------------------------------------------------------------


def test_userinfo_answers_the_users_claims(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http, "bob")
    answer = userinfo(http, token["access_token"])
    assert answer.status_code == 200
    assert answer.json() == {
        "sub": idp.subject("bob"),
        "name": "Bob Brown",
        "email": "bob@example.com",
        "email_verified": True,
        "groups": ["sales"],
    }


def test_userinfo_refuses_missing_unknown_and_expired_tokens(idp: SandboxIdP, http: httpx.Client, clock: Clock) -> None:
    token = link(idp, http)
    assert http.get("/userinfo").status_code == 401
    assert userinfo(http, "not-a-token").status_code == 401
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert http.get("/userinfo", headers={"Authorization": f"Basic {basic}"}).status_code == 401
    clock.advance(301)
    answer = userinfo(http, token["access_token"])
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")


# --- fault switches ----------------------------------------------------------------------------------------


def test_fault_id_token_claims_are_merged_and_removed(idp: SandboxIdP, http: httpx.Client) -> None:
    idp.faults.id_token_claims = {"aud": "someone-else", "iss": "https://evil.example", "exp": 1, "sub": None}
    claims = verified_claims(http, link(idp, http)["id_token"])
    assert claims["aud"] == "someone-else" and claims["iss"] == "https://evil.example"
    assert claims["exp"] == 1 and "sub" not in claims


def test_fault_rogue_key_signs_with_a_key_not_in_the_jwks(idp: SandboxIdP, http: httpx.Client) -> None:
    honest = link(idp, http)["id_token"]
    idp.faults.sign_with_rogue_key = True
    rogue = link(idp, http)["id_token"]
    with pytest.raises(BadSignatureError):
        verified_claims(http, rogue)
    assert unverified_header(rogue)["kid"] == unverified_header(honest)["kid"]
    assert unverified_header(rogue)["kid"] == http.get("/jwks").json()["keys"][0]["kid"]


def unverified_header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))))


def test_fault_omit_aws_tags(idp: SandboxIdP, http: httpx.Client) -> None:
    idp.faults.omit_aws_tags = True
    claims = verified_claims(http, link(idp, http)["id_token"])
    assert AWS_TAGS_CLAIM not in claims and claims["email"] == "alice@example.com"


def test_fault_omit_email(idp: SandboxIdP, http: httpx.Client) -> None:
    idp.faults.omit_email = True
    token = link(idp, http)
    claims = verified_claims(http, token["id_token"])
    assert "email" not in claims and "email_verified" not in claims
    assert "email" not in userinfo(http, token["access_token"]).json()


def test_fault_refresh_error(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http)
    idp.faults.refresh_error = "invalid_grant"
    assert error_of(refresh(http, token["refresh_token"])) == "invalid_grant"
    idp.faults.refresh_error = "temporarily_unavailable"
    assert error_of(refresh(http, token["refresh_token"])) == "temporarily_unavailable"
    assert idp.stats.refreshes["alice"] == 0
    idp.faults.reset()
    assert refresh(http, token["refresh_token"]).status_code == 200  # the refused attempts did not rotate it


def test_fault_authorize_error(idp: SandboxIdP, http: httpx.Client) -> None:
    idp.faults.authorize_error = "access_denied"
    login = start_login(idp, state="s-9")
    back = redirect_params(http.get(login.url))
    assert back == {"error": "access_denied", "error_description": back["error_description"], "state": "s-9"}
    params = authorize_params()
    back = redirect_params(http.post("/authorize", data={**params, "username": "alice"}))
    assert back["error"] == "access_denied" and "code" not in back
    assert idp.stats.codes_issued == 0


def test_faults_reset_restores_an_honest_idp(idp: SandboxIdP, http: httpx.Client) -> None:
    faults = idp.faults
    faults.id_token_claims["aud"] = "x"
    faults.sign_with_rogue_key = faults.omit_aws_tags = faults.omit_email = True
    faults.refresh_error = faults.authorize_error = "invalid_grant"
    faults.reset()
    token = link(idp, http)
    claims = verified_claims(http, token["id_token"])
    assert claims["aud"] == CLIENT_ID and claims["email"] and AWS_TAGS_CLAIM in claims
    assert refresh(http, token["refresh_token"]).status_code == 200


# --- failure hygiene ---------------------------------------------------------------------------------------


def test_internal_failure_answers_without_a_stack_trace(
    idp: SandboxIdP, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("secret internals")

    signed_in = sign_in(http, start_login(idp))
    monkeypatch.setattr(idp, "mint_id_token", broken)
    answer = redeem(http, signed_in)
    assert answer.status_code == 500
    assert answer.json() == {"error": "server_error"}
    assert "secret internals" not in answer.text and "Traceback" not in answer.text
