"""AssumeRoleWithSAML through boto3 against the STS stand-in, with assertions from the sandbox IdP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from lxml import etree

from sandbox.credentials import ACCOUNT_ID
from sandbox.world import SAML_PROVIDER_ARN, SAML_ROLE_ARN, Sandbox
from tests.sandbox.saml.browser import sign_in

OTHER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/qbot-sandbox-short-sessions"


def assertion(world: Sandbox, browser: httpx.Client, username: str = "alice", **faults: Any) -> str:
    for name, value in faults.items():
        setattr(world.idp.saml.faults, name, value)
    return sign_in(world, browser, username).saml_response


def assume(sts: Any, saml_response: str, **params: Any) -> dict[str, Any]:
    params.setdefault("RoleArn", SAML_ROLE_ARN)
    params.setdefault("PrincipalArn", SAML_PROVIDER_ARN)
    return dict(sts.assume_role_with_saml(SAMLAssertion=saml_response, **params))


def refused(world: Sandbox, sts: Any, saml_response: str, code: str, message: str = "", **params: Any) -> None:
    with pytest.raises(ClientError) as caught:
        assume(sts, saml_response, **params)
    error = caught.value.response["Error"]
    assert (error["Code"], error["Message"]) == (code, error["Message"])
    assert message in error["Message"]
    assert not world.sts.stats.saml_calls, "a refused call minted credentials"


def seconds_left(expiration: datetime) -> float:
    return (expiration - datetime.now(UTC)).total_seconds()


def test_a_fresh_assertion_buys_credentials_tagged_with_the_email(
    saml_world: Sandbox, browser: httpx.Client, sts: Any
) -> None:
    answer = assume(sts, assertion(saml_world, browser), DurationSeconds=3600)
    creds = answer["Credentials"]
    issued = saml_world.credentials.lookup(creds["AccessKeyId"])
    assert issued is not None and issued.secret_access_key == creds["SecretAccessKey"]
    assert issued.session_tags == {"Email": "alice@example.com"}
    assert issued.principal_arn == answer["AssumedRoleUser"]["Arn"]
    assert answer["AssumedRoleUser"]["Arn"].endswith(":assumed-role/qbot-sandbox-saml-user/alice@example.com")
    assert answer["Subject"] == saml_world.idp.subject("alice")
    assert answer["SubjectType"] == "persistent"
    assert answer["Issuer"] == saml_world.idp.saml.entity_id
    assert answer["Audience"] == saml_world.acs_url
    assert answer["NameQualifier"]
    assert 3500 < seconds_left(creds["Expiration"]) <= 3600
    assert saml_world.sts.stats.saml_calls == {"alice@example.com": 1}


def test_the_session_ends_with_the_shortest_of_duration_session_duration_and_the_idp_session(
    saml_world: Sandbox, browser: httpx.Client, sts: Any
) -> None:
    saml_world.idp.saml.session_seconds = 2000  # SessionNotOnOrAfter
    try:
        answer = assume(sts, assertion(saml_world, browser), DurationSeconds=43200)
    finally:
        saml_world.idp.saml.session_seconds = saml_world.saml_session_seconds
    assert 1900 < seconds_left(answer["Credentials"]["Expiration"]) <= 2000

    sp = saml_world.idp.saml.sps[saml_world.sp_entity_id]
    saml_world.idp.saml.add_sp(sp.entity_id, sp.acs_url, role_arn=sp.role_arn, provider_arn=sp.provider_arn,
                               session_duration=1000)  # fmt: skip
    try:
        answer = assume(sts, assertion(saml_world, browser), DurationSeconds=43200)
    finally:
        saml_world.idp.saml.sps[sp.entity_id] = sp
    assert 900 < seconds_left(answer["Credentials"]["Expiration"]) <= 1000


def test_a_duration_beyond_the_roles_maximum_is_refused(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    if OTHER_ROLE_ARN not in saml_world.sts.saml_roles:
        saml_world.sts.add_saml_role(OTHER_ROLE_ARN, provider_arn=SAML_PROVIDER_ARN, saml_aud=saml_world.acs_url)
    response = assertion(saml_world, browser, role_value=f"{OTHER_ROLE_ARN},{SAML_PROVIDER_ARN}")
    refused(saml_world, sts, response, "ValidationError", "MaxSessionDuration", RoleArn=OTHER_ROLE_ARN,
            DurationSeconds=7200)  # fmt: skip


def test_the_role_pair_may_come_in_either_order(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    response = assertion(saml_world, browser, role_value=f"{SAML_PROVIDER_ARN},{SAML_ROLE_ARN}")
    assert assume(sts, response)["Credentials"]["AccessKeyId"]


def test_an_assertion_is_good_once(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    response = assertion(saml_world, browser)
    assume(sts, response)
    saml_world.sts.stats.reset()
    refused(saml_world, sts, response, "InvalidIdentityToken", "already been used")


def test_expired(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    refused(saml_world, sts, assertion(saml_world, browser, expired=True), "ExpiredTokenException", "expired")


@pytest.mark.parametrize(
    "fault", [{"sign_with_rogue_key": True}, {"unsigned_assertion": True}], ids=["rogue key", "unsigned assertion"]
)
def test_a_signature_not_by_the_providers_certificate(
    saml_world: Sandbox, browser: httpx.Client, sts: Any, fault: dict[str, Any]
) -> None:
    refused(saml_world, sts, assertion(saml_world, browser, **fault), "InvalidIdentityToken", "signature invalid")


def test_only_the_assertion_needs_a_signature(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    """As at AWS, a signed Assertion in an unsigned Response is enough (Entra signs only the assertion by default)."""
    assert assume(sts, assertion(saml_world, browser, unsigned_response=True))["Credentials"]


@pytest.mark.parametrize("wrap", ["beside", "around"])
def test_signature_wrapping(saml_world: Sandbox, browser: httpx.Client, sts: Any, wrap: str) -> None:
    """Either way Alice's signature would be checked and Bob's assertion read: refused outright."""
    refused(saml_world, sts, assertion(saml_world, browser, wrap=wrap), "InvalidIdentityToken", "exactly one Assertion")
    assert not [c for c in saml_world.credentials.all() if c.email == "bob@example.com"]


def test_doctype(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    refused(saml_world, sts, assertion(saml_world, browser, doctype=True), "InvalidIdentityToken", "DTD")


def test_a_role_the_assertion_does_not_name(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    if OTHER_ROLE_ARN not in saml_world.sts.saml_roles:
        saml_world.sts.add_saml_role(OTHER_ROLE_ARN, provider_arn=SAML_PROVIDER_ARN, saml_aud=saml_world.acs_url)
    refused(saml_world, sts, assertion(saml_world, browser), "AccessDenied", "sts:AssumeRoleWithSAML",
            RoleArn=OTHER_ROLE_ARN)  # fmt: skip


def test_a_role_paired_with_another_provider(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    other_provider = f"arn:aws:iam::{ACCOUNT_ID}:saml-provider/someone-else"
    response = assertion(saml_world, browser, role_value=f"{SAML_ROLE_ARN},{other_provider}")
    refused(saml_world, sts, response, "AccessDenied", "sts:AssumeRoleWithSAML")


def test_an_unknown_provider(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    response = assertion(saml_world, browser)
    refused(saml_world, sts, response, "InvalidIdentityToken", "provider doesn't exist",
            PrincipalArn=f"arn:aws:iam::{ACCOUNT_ID}:saml-provider/nobody")  # fmt: skip


def test_an_assertion_from_another_issuer(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    """A provider whose metadata has the same certificate but another entity id: the Issuer must match."""
    metadata = etree.fromstring(saml_world.idp.saml.metadata_xml())
    metadata.set("entityID", "https://impostor.example/saml")
    provider = saml_world.sts.add_saml_provider("impostor", etree.tostring(metadata))
    response = assertion(saml_world, browser, role_value=f"{SAML_ROLE_ARN},{provider.arn}")
    refused(saml_world, sts, response, "InvalidIdentityToken", "Issuer", PrincipalArn=provider.arn)


def test_the_email_tag_is_required(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    refused(saml_world, sts, assertion(saml_world, browser, omit_email_tag=True), "AccessDenied")


def test_no_tag_but_email(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    response = assertion(saml_world, browser, extra_principal_tags={"Department": "sales"})
    refused(saml_world, sts, response, "AccessDenied")


def test_the_recipient_must_be_the_roles_saml_aud(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    response = assertion(saml_world, browser, recipient="https://other-app.example/saml/acs")
    refused(saml_world, sts, response, "AccessDenied", "sts:AssumeRoleWithSAML")


def test_a_response_that_is_not_base64(saml_world: Sandbox, sts: Any) -> None:
    refused(saml_world, sts, "not base64 at all!", "InvalidIdentityToken", "base64")


def test_a_role_trusting_another_provider(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    """The same IdP registered twice: the role trusts the first provider only, so the second cannot assume it."""
    twin = saml_world.sts.add_saml_provider("twin", saml_world.idp.saml.metadata_xml())
    response = assertion(saml_world, browser, role_value=f"{SAML_ROLE_ARN},{twin.arn}")
    refused(saml_world, sts, response, "AccessDenied", "sts:AssumeRoleWithSAML", PrincipalArn=twin.arn)
