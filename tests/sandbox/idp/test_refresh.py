"""Refresh-token rotation with reuse detection, and revocation."""

from __future__ import annotations

import httpx

from sandbox.idp import AWS_TAGS_CLAIM, SandboxIdP
from tests.sandbox.idp.flow import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    OTHER_SECRET,
    SCOPE,
    Clock,
    error_of,
    link,
    oauth_client,
    refresh,
    userinfo,
    verified_claims,
)


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
