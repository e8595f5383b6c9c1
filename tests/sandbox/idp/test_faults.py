"""The fault switches that make the IdP misbehave, and failures answered without internals."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from joserfc.errors import BadSignatureError

from sandbox.idp import AWS_TAGS_CLAIM, SandboxIdP
from tests.sandbox.idp.flow import (
    CLIENT_ID,
    authorize_params,
    error_of,
    link,
    redeem,
    redirect_params,
    refresh,
    sign_in,
    start_login,
    userinfo,
    verified_claims,
)


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


def test_fault_token_delay_holds_token_requests_until_switched_off(idp: SandboxIdP, http: httpx.Client) -> None:
    token = link(idp, http)
    idp.faults.token_delay_seconds = 60
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(refresh, http, token["refresh_token"])
        wait_until(lambda: idp.stats.token_requests_delayed == 1)
        assert not held.done() and idp.stats.refreshes["alice"] == 0  # arrived, not yet answered
        idp.faults.reset()  # the IdP recovers: the waiting request goes on
        assert held.result(10).status_code == 200
    assert idp.stats.refreshes["alice"] == 1
    assert refresh(http, held.result().json()["refresh_token"]).status_code == 200  # no delay any more
    assert idp.stats.token_requests_delayed == 1


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll (bounded) for a state another thread reaches."""
    for _ in range(1000):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition never held")


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
