"""The sandbox IdP's discovery document and published keys."""

from __future__ import annotations

import httpx
import pytest

from sandbox.directory import sample_directory
from sandbox.idp import AWS_TAGS_CLAIM, SandboxIdP


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
