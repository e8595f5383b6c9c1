"""`qbot doctor` in SAML mode: the IdP's metadata (a generated file, or served on loopback), moto's IAM (SAML
provider, role) and an AWS_IAM_IDP_SAML application in the sandbox's Q Business."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web

from qbot.admin.policies import saml_trust_policy, trust_policy
from sandbox.serving import Served, bind
from sandbox.world import APP_ID, ROLE_ARN, Sandbox
from tests.admin import saml_metadata
from tests.admin.test_doctor import SANDBOX_PROVIDER, doctor, good_env, platforms  # noqa: F401 (fixtures)
from tests.conftest import LoopThread

ROLE_NAME = ROLE_ARN.rsplit("/", 1)[1]
PROVIDER_ARN = "arn:aws:iam::123456789012:saml-provider/EntraID"
SAML_CHECKS = ["SAML metadata", "SAML certificates", "SAML ACS URL", "SAML provider"]


@pytest.fixture
def saml_env(
    good_env: dict[str, str], sandbox: Sandbox, iam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> dict[str, str]:
    """A correct SAML-mode configuration, as `qbot admin provision --saml-metadata` leaves it."""
    metadata = saml_metadata.write(tmp_path / "metadata.xml", saml_metadata.certificate(365))
    iam.create_saml_provider(Name="EntraID", SAMLMetadataDocument=metadata.read_text())
    acs = good_env["QBOT_PUBLIC_URL"].rstrip("/") + "/auth/saml/acs"
    iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(saml_trust_policy(PROVIDER_ARN, acs)))
    iam.update_role(RoleName=ROLE_NAME, MaxSessionDuration=43200)
    q = boto3.client("qbusiness", endpoint_url=sandbox.q_url, region_name="us-east-1")
    app_id = q.create_application(
        displayName="qbot-saml", identityType="AWS_IAM_IDP_SAML", iamIdentityProviderArn=PROVIDER_ARN,
    )["applicationId"]
    q.update_application(
        applicationId=app_id,
        autoSubscriptionConfiguration={"autoSubscribe": "ENABLED", "defaultSubscriptionType": "Q_BUSINESS"},
    )
    for name in ("QBOT_OIDC_ISSUER", "QBOT_OIDC_CLIENT_ID", "QBOT_OIDC_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "QBOT_SAML_METADATA_FILE": str(metadata),
        "QBOT_SAML_SP_ENTITY_ID": good_env["QBOT_PUBLIC_URL"] + "/auth/saml/metadata",
        "QBOT_SAML_PROVIDER_ARN": PROVIDER_ARN,
        "QBOT_SAML_SESSION_SECONDS": "43200",
        "QBOT_Q_APP_ID": app_id,
        "QBOT_GROUP_SYNC": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**good_env, **env}


def test_a_correct_saml_configuration_passes_the_saml_checks_and_skips_the_oidc_ones(
    saml_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, checks = doctor(capsys)

    assert [name for name in checks if name.startswith(("SAML", "IdP"))] == SAML_CHECKS
    for name in [*SAML_CHECKS, "IAM role", "Q Business application"]:
        assert checks[name][0] == "ok", (name, checks[name])
    assert f"IdP {saml_metadata.ENTITY_ID}, sign-in at {saml_metadata.SSO_URL}, 1 signing certificate(s)" in (
        checks["SAML metadata"][1]
    )
    acs = saml_env["QBOT_PUBLIC_URL"] + "/auth/saml/acs"
    assert checks["SAML ACS URL"][1].startswith(f"the IdP posts to {acs}")  # http, but on loopback
    assert checks["SAML provider"][1] == f"{PROVIDER_ARN} holds the IdP's metadata (entity id and signing certificates)"
    assert checks["IAM role"][1] == (
        f"{ROLE_NAME} trusts {PROVIDER_ARN} for assertions posted to {acs}, in sessions tagged with an Email of any "
        "domain and nothing else; sessions up to 43200s"
    )
    assert "AWS_IAM_IDP_SAML, for " + PROVIDER_ARN in checks["Q Business application"][1]


def use_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *certificates: str, **kwargs: str) -> None:
    path = saml_metadata.write(tmp_path / "other-metadata.xml", *certificates, **kwargs)
    monkeypatch.setenv("QBOT_SAML_METADATA_FILE", str(path))


def test_a_certificate_expiring_within_30_days_fails_with_the_fix(
    saml_env: dict[str, str], iam: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_metadata(tmp_path, monkeypatch, saml_metadata.certificate(10))
    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["SAML certificates"]
    assert status == "FAIL"
    assert "the IdP's last signing certificate expires in 9 day(s)" in text
    assert "create a new SAML signing certificate at the IdP" in text
    assert "run `qbot admin provision --saml-metadata" in text


def test_an_expired_certificate_fails_and_one_expiring_beside_a_fresh_one_warns(
    saml_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_metadata(tmp_path, monkeypatch, saml_metadata.certificate(-2))
    code, checks = doctor(capsys)
    assert code == 1 and checks["SAML certificates"][0] == "FAIL" and "certificate expired (" in checks[
        "SAML certificates"][1]

    use_metadata(tmp_path, monkeypatch, saml_metadata.certificate(5), saml_metadata.certificate(400))  # a rollover
    _, checks = doctor(capsys)
    status, text = checks["SAML certificates"]
    assert status == "warn" and "1 of 2 signing certificates expire within 30 days" in text
    assert checks["SAML provider"][0] == "FAIL"  # IAM still holds the certificate of before
    assert "2 of the IdP's signing certificate(s) missing" in checks["SAML provider"][1]


def test_a_certificate_with_more_than_30_days_left_passes(
    saml_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_metadata(tmp_path, monkeypatch, saml_metadata.certificate(32))
    _, checks = doctor(capsys)
    assert checks["SAML certificates"][0] == "ok"


@pytest.mark.parametrize(
    "arn", [SANDBOX_PROVIDER, "arn:aws:iam::123456789012:role/qbot", "EntraID", "arn:aws:iam::1234:saml-provider/x"]
)
def test_a_provider_arn_that_is_not_a_saml_provider_fails(
    saml_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, arn: str
) -> None:
    monkeypatch.setenv("QBOT_SAML_PROVIDER_ARN", arn)
    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["SAML provider"]
    assert status == "FAIL" and f"QBOT_SAML_PROVIDER_ARN={arn!r} is not an IAM SAML provider ARN" in text


def test_a_missing_saml_provider_fails(
    saml_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    iam.delete_saml_provider(SAMLProviderArn=PROVIDER_ARN)
    code, checks = doctor(capsys)
    assert code == 1 and checks["SAML provider"] == (
        "FAIL", f"{PROVIDER_ARN} does not exist -> fix: run `qbot admin provision --saml-metadata …`, or set "
        "QBOT_SAML_PROVIDER_ARN to the provider it created",
    )


def test_plain_http_acs_off_loopback_fails(
    saml_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBOT_PUBLIC_URL", "http://qbot.example.com")
    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["SAML ACS URL"]
    assert status == "FAIL" and "http://qbot.example.com/auth/saml/acs is plain http" in text
    # the role trusts the old ACS URL: its SAML:aud no longer fits either
    assert "lets in assertions posted to ['http://127.0.0.1" in checks["IAM role"][1]


def test_a_role_trusting_the_console_audience_fails(
    saml_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An assertion the IdP made for the AWS console must not open qbot's role."""
    policy = saml_trust_policy(PROVIDER_ARN, "https://signin.aws.amazon.com/saml")
    iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(policy))
    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["IAM role"]
    assert status == "FAIL" and "lets in assertions posted to ['https://signin.aws.amazon.com/saml'] (SAML:aud)" in text
    assert "manifests/aws/saml-trust-policy.json" in text


def test_a_role_without_the_tag_conditions_or_with_the_oidc_trust_fails(
    saml_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    acs = saml_env["QBOT_PUBLIC_URL"] + "/auth/saml/acs"
    policy = saml_trust_policy(PROVIDER_ARN, acs)
    del policy["Statement"][1]["Condition"]["ForAllValues:StringEquals"]
    iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(policy))
    code, checks = doctor(capsys)
    assert code == 1 and "lets sessions carry tags other than Email" in checks["IAM role"][1]

    oidc = trust_policy(SANDBOX_PROVIDER, ["qbot"])
    iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(oidc))
    code, checks = doctor(capsys)
    assert code == 1
    assert f"does not allow sts:AssumeRoleWithSAML from {PROVIDER_ARN} with SAML:aud = {acs}" in checks["IAM role"][1]


def test_a_role_session_shorter_than_the_bot_asks_for_fails(
    saml_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    iam.update_role(RoleName=ROLE_NAME, MaxSessionDuration=3600)
    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["IAM role"]
    assert status == "FAIL" and "its sessions last at most 3600s, and the bot asks for 43200s" in text


def test_an_oidc_application_fails_in_saml_mode(
    saml_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBOT_Q_APP_ID", APP_ID)
    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["Q Business application"]
    assert status == "FAIL" and "uses identity type AWS_IAM_IDP_OIDC, not AWS_IAM_IDP_SAML" in text


def test_metadata_with_an_entity_declaration_is_refused(
    saml_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_metadata(tmp_path, monkeypatch, doctype='<!DOCTYPE EntityDescriptor [<!ENTITY x "y">]>')
    code, checks = doctor(capsys)

    assert code == 1
    assert checks["SAML metadata"][0] == "FAIL" and "it declares a DOCTYPE" in checks["SAML metadata"][1]
    assert checks["SAML certificates"][0] == "skip"


@pytest.fixture
def metadata_server(servers: LoopThread) -> Iterator[str]:
    async def federation_metadata(request: web.Request) -> web.Response:
        return web.Response(text=saml_metadata.metadata(saml_metadata.certificate(365)), content_type="text/xml")

    app = web.Application()
    app.router.add_get("/federationmetadata/2007-06/federationmetadata.xml", federation_metadata)
    served = Served(app, bind("127.0.0.1", 0))
    servers.run(served.start())
    yield served.url
    servers.run(served.stop())


def test_metadata_from_a_url_is_read_and_an_unreachable_one_fails(
    saml_env: dict[str, str], metadata_server: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QBOT_SAML_METADATA_FILE")
    url = metadata_server + "/federationmetadata/2007-06/federationmetadata.xml"
    monkeypatch.setenv("QBOT_SAML_METADATA_URL", url)
    _, checks = doctor(capsys)
    assert checks["SAML metadata"][0] == "ok" and checks["SAML metadata"][1].startswith(url)
    assert checks["SAML provider"][0] == "FAIL"  # a newly generated certificate: IAM holds another

    monkeypatch.setenv("QBOT_SAML_METADATA_URL", metadata_server + "/nothing-here")
    code, checks = doctor(capsys)
    assert code == 1 and checks["SAML metadata"][0] == "FAIL" and "answered HTTP 404" in checks["SAML metadata"][1]


def test_iam_holding_metadata_of_another_idp_fails(
    saml_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same certificate, another issuer: STS matches the assertion's Issuer to the provider's entity id."""
    other = tmp_path / "renamed.xml"
    other.write_text(Path(saml_env["QBOT_SAML_METADATA_FILE"]).read_text().replace(
        saml_metadata.ENTITY_ID, "https://accounts.google.com/o/saml2?idpid=C01abc"))
    monkeypatch.setenv("QBOT_SAML_METADATA_FILE", str(other))
    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["SAML provider"]
    assert status == "FAIL" and f"the issuer {saml_metadata.ENTITY_ID}, not https://accounts.google.com" in text
    assert "certificate(s) missing" not in text


def test_an_application_for_another_saml_provider_fails(
    saml_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = iam.create_saml_provider(
        Name="Google", SAMLMetadataDocument=Path(saml_env["QBOT_SAML_METADATA_FILE"]).read_text()
    )["SAMLProviderArn"]
    monkeypatch.setenv("QBOT_SAML_PROVIDER_ARN", other)
    code, checks = doctor(capsys)

    assert code == 1
    assert checks["SAML provider"][0] == "ok"
    status, text = checks["Q Business application"]
    assert status == "FAIL" and f"trusts {PROVIDER_ARN}, not QBOT_SAML_PROVIDER_ARN {other}" in text


def test_both_metadata_settings_fail(
    saml_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBOT_SAML_METADATA_URL", "https://login.microsoftonline.com/x/federationmetadata.xml")
    code, checks = doctor(capsys)
    assert code == 1 and checks["SAML metadata"][0] == "FAIL" and "both QBOT_SAML_METADATA_URL and" in checks[
        "SAML metadata"][1]


def test_a_certificate_the_idp_retired_but_iam_still_trusts_warns(
    saml_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    current = Path(saml_env["QBOT_SAML_METADATA_FILE"]).read_text()
    kept = current.split("<X509Certificate>")[1].split("</X509Certificate>")[0]
    both = saml_metadata.metadata(kept, saml_metadata.certificate(20))
    iam.update_saml_provider(SAMLProviderArn=PROVIDER_ARN, SAMLMetadataDocument=both)

    _, checks = doctor(capsys)

    status, text = checks["SAML provider"]
    assert status == "warn" and "1 certificate(s) the IdP no longer lists still trusted" in text
    assert "run `qbot admin provision --saml-metadata" in text
