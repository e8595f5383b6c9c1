"""An STS stand-in deployed for a test, and the small OIDC issuer whose tokens it is asked to trust.

Tokens come from the issuer defined here (discovery + JWKS over HTTP), not from the sandbox IdP, so these
tests depend on nothing but the stand-in under test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from sandbox.credentials import ACCOUNT_ID, CredentialRegistry
from sandbox.serving import Served, bind
from sandbox.sts import TAGS_CLAIM, SandboxSTS

CLIENT_ID = "qbot"
OTHER_CLIENT_ID = "reporting"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/qbot-user"
REPORTING_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/team/reporting-user"
FOREIGN_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/partner-user"
FOREIGN_ISSUER = "https://idp.partner.example"
ALICE = "alice@example.com"


class TestIssuer:
    """An OIDC issuer reduced to what STS reads from it: discovery, JWKS, and tokens signed by its key."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, servers: Any) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "issuer-1"}, private=True)
        self.next_key = RSAKey.generate_key(2048, parameters={"kid": "issuer-2"}, private=True)
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "rogue"}, private=True)
        self.published: list[RSAKey] = [self.key]
        self.discovery_hits = 0
        self.jwks_hits = 0
        self._served = Served(self._app(), bind("127.0.0.1", 0))
        self.url = self._served.url
        self._servers = servers
        servers.run(self._served.start())

    def reset(self) -> None:
        self.published = [self.key]
        self.discovery_hits = self.jwks_hits = 0

    def stop(self) -> None:
        self._servers.run(self._served.stop())

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Good id_token claims for Alice; a change to None drops that claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": "user-alice",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "email": ALICE,
            TAGS_CLAIM: {"principal_tags": {"Email": [ALICE]}, "transitive_tag_keys": ["Email"]},
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, key: RSAKey | None = None, kid: str | None = None, **changes: Any) -> str:
        key = key or self.key
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or key.kid}
        return jwt.encode(header, self.claims(**changes), key)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_hits += 1
        return web.json_response({"issuer": self.url, "jwks_uri": self.url + "/jwks"})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_hits += 1
        return web.json_response(KeySet(list(self.published)).as_dict(private=False))


@dataclass
class Deployment:
    sts: SandboxSTS
    registry: CredentialRegistry
    client: Any
    unreachable_issuer: str

    def assume(self, token: str, role_arn: str = ROLE_ARN, **params: Any) -> dict[str, Any]:
        params.setdefault("RoleSessionName", "alice-session")
        return self.client.assume_role_with_web_identity(RoleArn=role_arn, WebIdentityToken=token, **params)


def refusal(call: Callable[[], object]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def assert_refused(
    deployed: Deployment, call: Callable[[], object], code: str, status: int = 400, message: str = ""
) -> None:
    got_code, got_status, got_message = refusal(call)
    assert (got_code, got_status) == (code, status), got_message
    assert message in got_message
    assert not deployed.sts.stats.calls, "a refused call minted credentials"
