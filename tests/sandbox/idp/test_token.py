"""The token endpoint: the code flow with authlib's own client, and every refusal it owes."""

from __future__ import annotations

import httpx
import pytest
from authlib.common.security import generate_token
from joserfc.jwt import JWTClaimsRegistry

from sandbox.idp import AWS_TAGS_CLAIM, SandboxIdP
from tests.sandbox.idp.flow import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    OTHER_SECRET,
    REDIRECT_URI,
    SCOPE,
    Clock,
    error_of,
    fetch_tokens,
    link,
    redeem,
    refresh,
    sign_in,
    start_login,
    userinfo,
    verified_claims,
)


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
