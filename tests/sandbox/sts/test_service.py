"""The STS stand-in, driven by boto3's real `sts` client the way the bot drives AWS: credentials for a good
token, the request's parameters checked as AWS checks them, and the fault switches."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import partial

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from sandbox.credentials import ACCOUNT_ID
from tests.sandbox.sts.deployment import (
    ALICE,
    CLIENT_ID,
    OTHER_CLIENT_ID,
    REPORTING_ROLE_ARN,
    ROLE_ARN,
    Deployment,
    TestIssuer,
    assert_refused,
    refusal,
)


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
    result = retrying.assume_role_with_web_identity(
        RoleArn=ROLE_ARN, RoleSessionName="alice-session", WebIdentityToken=issuer.token()
    )
    assert result["ResponseMetadata"]["RetryAttempts"] == 1
    retrying.close()


def test_injected_delay_holds_calls_until_switched_off(deployed: Deployment, issuer: TestIssuer) -> None:
    impatient = boto3.client(
        "sts",
        endpoint_url=deployed.client.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=0.3),
    )
    deployed.sts.faults.delay_seconds = 60
    with pytest.raises(ReadTimeoutError):  # held far beyond the client's patience: never answered
        impatient.assume_role_with_web_identity(
            RoleArn=ROLE_ARN, RoleSessionName="alice-session", WebIdentityToken=issuer.token()
        )
    impatient.close()
    deployed.sts.faults.reset()  # releases the held call too
    assert (deployed.sts.faults.delay_seconds, deployed.sts.faults.error_next) == (0.0, [])
    assert deployed.assume(issuer.token())["Credentials"]["AccessKeyId"]  # answered at once again


def test_an_outage_answers_every_call_and_every_retry_until_cleared(
    deployed: Deployment, issuer: TestIssuer
) -> None:
    deployed.sts.faults.outage = "ServiceUnavailable"
    retrying = boto3.client(
        "sts",
        endpoint_url=deployed.client.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
    )
    token = issuer.token()
    call = partial(retrying.assume_role_with_web_identity, RoleArn=ROLE_ARN, RoleSessionName="alice-session",
                   WebIdentityToken=token)
    assert refusal(call)[:2] == ("ServiceUnavailable", 503)
    assert refusal(call)[:2] == ("ServiceUnavailable", 503)
    assert deployed.sts.stats.refusals == {"ServiceUnavailable": 4} and not deployed.sts.stats.calls
    deployed.sts.faults.outage = None
    assert call()["Credentials"]["AccessKeyId"]
    retrying.close()
    deployed.sts.faults.outage = "InternalFailure"
    deployed.sts.faults.reset()
    assert deployed.sts.faults.outage is None
