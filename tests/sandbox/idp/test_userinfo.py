"""The userinfo endpoint."""

from __future__ import annotations

import base64

import httpx

from sandbox.idp import SandboxIdP
from tests.sandbox.idp.flow import (
    CLIENT_ID,
    CLIENT_SECRET,
    Clock,
    link,
    userinfo,
)


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
