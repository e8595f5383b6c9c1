"""The authorization endpoint: the sign-in page, and requests refused with an error page or a redirect."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from sandbox.idp import SandboxIdP
from tests.sandbox.idp.flow import (
    REDIRECT_URI,
    authorize_params,
    fetch_tokens,
    read_forms,
    redirect_params,
    sign_in,
    start_login,
)


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
