"""The web-identity token checks. Each refusal passes a token differing from a good one in exactly the
checked respect, so removing the check turns the refusal into credentials."""

from __future__ import annotations

import time
from functools import partial

from tests.sandbox.sts.deployment import (
    ALICE,
    Deployment,
    TestIssuer,
    assert_refused,
)


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
