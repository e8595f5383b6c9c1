"""The STS stand-in, driven by boto3's real `sts` client the way the bot drives AWS.

Tokens come from a tiny issuer defined here (discovery + JWKS over HTTP), not from the sandbox IdP, so these
tests depend on nothing but the stand-in under test. Each refusal has a test that passes a token differing
from a good one in exactly the checked respect, so removing the check turns the refusal into credentials.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from sandbox.credentials import ACCOUNT_ID, CredentialRegistry
from sandbox.serving import Served, bind, url_of
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


@pytest.fixture(scope="module")
def issuer(servers: Any) -> Iterator[TestIssuer]:
    test_issuer = TestIssuer(servers)
    yield test_issuer
    test_issuer.stop()


@pytest.fixture
def deployed(servers: Any, issuer: TestIssuer) -> Iterator[Deployment]:
    """A fresh STS (empty key cache, stats and faults) trusting the test issuer, served on a free port."""
    issuer.reset()
    registry = CredentialRegistry()
    sts = SandboxSTS(registry)
    sts.add_oidc_provider(issuer.url, [CLIENT_ID, OTHER_CLIENT_ID])
    sts.add_oidc_provider(FOREIGN_ISSUER, [CLIENT_ID])
    sts.add_role(ROLE_ARN, issuer=issuer.url, audience=CLIENT_ID)
    sts.add_role(REPORTING_ROLE_ARN, issuer=issuer.url, audience=OTHER_CLIENT_ID, max_session_duration=7200)
    sts.add_role(FOREIGN_ROLE_ARN, issuer=FOREIGN_ISSUER, audience=CLIENT_ID)
    closed = bind("127.0.0.1", 0)
    unreachable_issuer = url_of(closed)
    closed.close()
    sts.add_oidc_provider(unreachable_issuer, [CLIENT_ID])

    served = Served(sts.app(), bind("127.0.0.1", 0))
    servers.run(served.start())
    client = boto3.client(
        "sts",
        endpoint_url=served.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        # No client-side retries, and no client-side length checks: the server's own checks are under test.
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
    )
    yield Deployment(sts, registry, client, unreachable_issuer)
    client.close()
    servers.run(served.stop())


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


# --- success -------------------------------------------------------------------------------------------


def test_good_token_gets_credentials_tagged_with_email(deployed: Deployment, issuer: TestIssuer) -> None:
    before = datetime.now(UTC)
    result = deployed.assume(issuer.token(), DurationSeconds=900)

    creds = result["Credentials"]
    issued = deployed.registry.lookup(creds["AccessKeyId"])
    assert issued is not None
    assert creds["AccessKeyId"].startswith("ASIA")
    assert (issued.secret_access_key, issued.session_token) == (creds["SecretAccessKey"], creds["SessionToken"])
    assert issued.session_tags == {"Email": ALICE}
    assert issued.email == ALICE
    assert issued.expiration is not None
    expected = before + timedelta(seconds=900)
    assert abs((issued.expiration - expected).total_seconds()) <= 2
    assert creds["Expiration"] == issued.expiration

    assumed_arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/qbot-user/alice-session"
    assert result["AssumedRoleUser"]["Arn"] == assumed_arn == issued.principal_arn
    assert re.fullmatch(r"AROA[A-Z2-7]{17}:alice-session", result["AssumedRoleUser"]["AssumedRoleId"])
    assert result["SubjectFromWebIdentityToken"] == "user-alice"
    assert result["Provider"] == f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer.url.split('://')[1]}"
    assert result["Audience"] == CLIENT_ID
    assert isinstance(result["PackedPolicySize"], int)
    assert deployed.sts.stats.calls == {ALICE: 1}


def test_default_duration_is_one_hour(deployed: Deployment, issuer: TestIssuer) -> None:
    creds = deployed.assume(issuer.token())["Credentials"]
    remaining = creds["Expiration"] - datetime.now(UTC)
    assert timedelta(seconds=3590) <= remaining <= timedelta(seconds=3600)


def test_audience_list_containing_the_client_is_accepted(deployed: Deployment, issuer: TestIssuer) -> None:
    result = deployed.assume(issuer.token(aud=["someone-else", CLIENT_ID]))
    assert result["Audience"] == CLIENT_ID


def test_role_with_longer_max_session_allows_longer_duration(deployed: Deployment, issuer: TestIssuer) -> None:
    result = deployed.assume(issuer.token(aud=OTHER_CLIENT_ID), REPORTING_ROLE_ARN, DurationSeconds=7200)
    remaining = result["Credentials"]["Expiration"] - datetime.now(UTC)
    assert remaining > timedelta(seconds=7190)
    assert result["AssumedRoleUser"]["Arn"].endswith(":assumed-role/reporting-user/alice-session")


def test_keys_are_cached_per_issuer(deployed: Deployment, issuer: TestIssuer) -> None:
    deployed.assume(issuer.token())
    deployed.assume(issuer.token())
    assert (issuer.discovery_hits, issuer.jwks_hits) == (1, 1)
    assert deployed.sts.stats.calls == {ALICE: 2}


def test_key_rotation_at_the_issuer_is_picked_up(deployed: Deployment, issuer: TestIssuer) -> None:
    deployed.assume(issuer.token())
    issuer.published = [issuer.next_key]
    deployed.assume(issuer.token(key=issuer.next_key))
    assert issuer.jwks_hits == 2


# --- the token -----------------------------------------------------------------------------------------


def test_forged_signature_is_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    forged = issuer.token(key=issuer.rogue_key, kid=issuer.key.kid)
    assert_refused(deployed, partial(deployed.assume, forged), "InvalidIdentityToken")


def test_unknown_key_is_refused_after_one_refetch(deployed: Deployment, issuer: TestIssuer) -> None:
    rogue = issuer.token(key=issuer.rogue_key)
    assert_refused(deployed, partial(deployed.assume, rogue), "InvalidIdentityToken", message="verification key")
    assert issuer.jwks_hits == 2


def test_unsigned_token_is_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    good = issuer.token()
    header, payload, _ = good.split(".")
    none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"  # {"alg":"none","typ":"JWT"}
    for token in (f"{none_header}.{payload}.", f"{header}.{payload}.", "not-a-jwt"):
        assert_refused(deployed, partial(deployed.assume, token), "InvalidIdentityToken")


def test_unregistered_issuer_is_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    stranger = "https://idp.stranger.example"
    token = issuer.token(iss=stranger)
    assert_refused(
        deployed,
        partial(deployed.assume, token),
        "InvalidIdentityToken",
        message=f"No OpenIDConnect provider found in your account for {stranger}",
    )
    assert issuer.jwks_hits == 0


def test_audience_not_registered_is_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    for audience in ("someone-else", ["someone-else", "another"], None):
        token = issuer.token(aud=audience)
        message = "Incorrect token audience"
        assert_refused(deployed, partial(deployed.assume, token), "InvalidIdentityToken", message=message)


def test_expired_token_is_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token(iat=int(time.time()) - 400, exp=int(time.time()) - 5)
    assert_refused(deployed, partial(deployed.assume, token), "ExpiredTokenException", message="Token expired")


def test_token_without_expiry_is_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token(exp=None)
    assert_refused(deployed, partial(deployed.assume, token), "InvalidIdentityToken")


def test_unreachable_issuer_is_an_idp_communication_error(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token(iss=deployed.unreachable_issuer)
    assert_refused(deployed, partial(deployed.assume, token), "IDPCommunicationError")


# --- the role's trust ----------------------------------------------------------------------------------


def test_token_without_email_tag_is_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    other_tags = {"principal_tags": {"Team": ["core"]}}
    for tags in (other_tags, None):
        changes: dict[str, Any] = {TAGS_CLAIM: tags}
        token = issuer.token(**changes)
        assert_refused(deployed, partial(deployed.assume, token), "AccessDenied", 403, "Not authorized")


def test_tags_beyond_email_are_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    """The trust policy allows only the Email tag key (ForAllValues:StringEquals aws:TagKeys)."""
    changes: dict[str, Any] = {TAGS_CLAIM: {"principal_tags": {"Email": [ALICE], "CostCenter": ["42"]}}}
    token = issuer.token(**changes)
    assert_refused(deployed, partial(deployed.assume, token), "AccessDenied", 403, "Not authorized")


def test_multi_valued_tag_is_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    changes: dict[str, Any] = {TAGS_CLAIM: {"principal_tags": {"Email": [ALICE, "mallory@example.com"]}}}
    token = issuer.token(**changes)
    assert_refused(deployed, partial(deployed.assume, token), "InvalidIdentityToken")


def test_unknown_role_is_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token()
    unknown = f"arn:aws:iam::{ACCOUNT_ID}:role/nobody"
    assert_refused(deployed, partial(deployed.assume, token, unknown), "AccessDenied", 403, "Not authorized")


def test_role_trusting_another_audience_is_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token()  # aud qbot: a client of this provider, but not the one the role trusts
    assert_refused(deployed, partial(deployed.assume, token, REPORTING_ROLE_ARN), "AccessDenied", 403)


def test_role_trusting_another_provider_is_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token()
    assert_refused(deployed, partial(deployed.assume, token, FOREIGN_ROLE_ARN), "AccessDenied", 403)


# --- the request's parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session_name", "constraint"),
    [
        ("alice smith", r"regular expression pattern: [\w+=,.@-]*"),
        ("alice:1", "regular expression pattern"),
        ("a", "length greater than or equal to 2"),
        ("a" * 65, "length less than or equal to 64"),
    ],
)
def test_bad_role_session_name_is_refused(
    deployed: Deployment, issuer: TestIssuer, session_name: str, constraint: str
) -> None:
    token = issuer.token()
    call = partial(deployed.assume, token, RoleSessionName=session_name)
    assert_refused(deployed, call, "ValidationError", message="at 'roleSessionName' failed to satisfy constraint")
    assert constraint in refusal(call)[2]


def test_longest_valid_role_session_name_is_accepted(deployed: Deployment, issuer: TestIssuer) -> None:
    name = "a.b@c=d,e+f-g_" + "x" * 50
    assert deployed.assume(issuer.token(), RoleSessionName=name)["AssumedRoleUser"]["Arn"].endswith("/" + name)


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        (899, "Member must have value greater than or equal to 900"),
        (43201, "Member must have value less than or equal to 43200"),
        (3601, "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."),
    ],
)
def test_duration_out_of_range_is_refused(
    deployed: Deployment, issuer: TestIssuer, duration: int, message: str
) -> None:
    token = issuer.token()
    call = partial(deployed.assume, token, DurationSeconds=duration)
    assert_refused(deployed, call, "ValidationError", message=message)


def test_missing_parameters_are_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    call = partial(deployed.client.assume_role_with_web_identity, RoleArn=ROLE_ARN)
    code, status, message = refusal(call)
    assert (code, status) == ("ValidationError", 400)
    assert message.startswith("2 validation errors detected: ")
    assert "Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null" in message
    assert "Value null at 'webIdentityToken'" in message


def test_other_actions_are_invalid(deployed: Deployment) -> None:
    code, status, message = refusal(deployed.client.get_caller_identity)
    assert (code, status) == ("InvalidAction", 400)
    assert message == "Could not find operation GetCallerIdentity for version 2011-06-15"


# --- faults --------------------------------------------------------------------------------------------


def test_injected_errors_answer_the_next_calls_in_order(deployed: Deployment, issuer: TestIssuer) -> None:
    deployed.sts.faults.error_next = ["Throttling", "IDPCommunicationError", "AccessDenied"]
    token = issuer.token()
    assert refusal(partial(deployed.assume, token))[:2] == ("Throttling", 400)
    assert refusal(partial(deployed.assume, token))[:2] == ("IDPCommunicationError", 400)
    assert refusal(partial(deployed.assume, token))[:2] == ("AccessDenied", 403)
    assert not deployed.sts.stats.calls
    deployed.assume(token)
    assert deployed.sts.stats.calls == {ALICE: 1}
    assert deployed.sts.stats.refusals == {"Throttling": 1, "IDPCommunicationError": 1, "AccessDenied": 1}


def test_botocore_retries_injected_throttling(deployed: Deployment, issuer: TestIssuer) -> None:
    """The stand-in's Throttling is the real wire shape: botocore's own retry logic recognises it."""
    deployed.sts.faults.error_next = ["Throttling"]
    retrying = boto3.client(
        "sts",
        endpoint_url=deployed.client.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "legacy", "total_max_attempts": 2}),
    )
    started = time.monotonic()
    result = retrying.assume_role_with_web_identity(
        RoleArn=ROLE_ARN, RoleSessionName="alice-session", WebIdentityToken=issuer.token()
    )
    assert result["ResponseMetadata"]["RetryAttempts"] == 1
    assert time.monotonic() - started < 2
    retrying.close()


def test_injected_delay_slows_every_call(deployed: Deployment, issuer: TestIssuer) -> None:
    deployed.sts.faults.delay_seconds = 0.2
    started = time.monotonic()
    deployed.assume(issuer.token())
    assert time.monotonic() - started >= 0.2
    deployed.sts.faults.reset()
    assert (deployed.sts.faults.delay_seconds, deployed.sts.faults.error_next) == (0.0, [])
