"""What the sandbox IdP supports and announces in its discovery document (OpenID Connect Discovery 1.0)."""

from __future__ import annotations

from typing import Any

ID_TOKEN_ALG = "RS256"
AWS_TAGS_CLAIM = "https://aws.amazon.com/tags"
SCOPES_SUPPORTED = ["openid", "email", "profile", "offline_access", "groups"]
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
GRANT_TYPES = ["authorization_code", "refresh_token"]
CLAIMS_SUPPORTED = [
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
    "email", "email_verified", "name", "groups", AWS_TAGS_CLAIM,
]  # fmt: skip


def discovery_document(issuer: str) -> dict[str, Any]:
    """The /.well-known/openid-configuration document: only what the IdP enforces, nothing aspirational."""
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/authorize",
        "token_endpoint": issuer + "/token",
        "jwks_uri": issuer + "/jwks",
        "userinfo_endpoint": issuer + "/userinfo",
        "revocation_endpoint": issuer + "/revoke",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": CLAIMS_SUPPORTED,
        "prompt_values_supported": ["none", "login", "consent"],
    }
