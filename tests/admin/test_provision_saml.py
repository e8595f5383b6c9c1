"""`qbot admin provision --saml-metadata` (SAML mode: Entra ID, Google) against moto's IAM, which keeps SAML
providers, and the sandbox's Q Business control plane."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from qbot.cli import main
from sandbox.serving import Served, bind
from sandbox.world import APP_ID, Sandbox
from tests.admin import saml_metadata
from tests.admin.test_provision import ACCOUNT, env_lines, new_applications, permissions, writes
from tests.conftest import LoopThread

PUBLIC_URL = "https://qbot.example.com"
ACS = "https://qbot.example.com/auth/saml/acs"
SAML_PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:saml-provider/qbot"

# Written out in full, as an auditor would read it.
SAML_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "QbotUsersSignInWithTheIdP",
            "Effect": "Allow",
            "Principal": {"Federated": SAML_PROVIDER_ARN},
            "Action": "sts:AssumeRoleWithSAML",
            "Condition": {"StringEquals": {"SAML:aud": ACS}},
        },
        {
            "Sid": "QbotSessionsCarryTheUsersEmail",
            "Effect": "Allow",
            "Principal": {"Federated": SAML_PROVIDER_ARN},
            "Action": "sts:TagSession",
            "Condition": {
                "StringLike": {"aws:RequestTag/Email": "*"},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["Email"]},
            },
        },
    ],
}


@pytest.fixture
def metadata_file(tmp_path: Path) -> Path:
    return saml_metadata.write(tmp_path / "entra-federation-metadata.xml", saml_metadata.certificate(365))


def provision(capsys: pytest.CaptureFixture[str], metadata: Path | str, *extra: str) -> tuple[int, str, str]:
    code = main([
        "admin", "provision", "--saml-metadata", str(metadata), "--public-url", PUBLIC_URL + "/",
        "--poll-seconds", "0.05", *extra,
    ])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def nothing_written(sandbox: Sandbox, iam: Any) -> bool:
    return (
        iam.list_saml_providers()["SAMLProviderList"] == []
        and iam.list_roles()["Roles"] == []
        and writes(sandbox) == 0
        and new_applications(sandbox) == []
    )


def test_dry_run_prints_the_saml_plan_and_changes_nothing(
    sandbox: Sandbox, iam: Any, metadata_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = provision(capsys, metadata_file, "--dry-run")

    assert code == 0, out + err
    for line in ("+ iam CreateSAMLProvider:", "+ qbusiness CreateApplication:", "+ qbusiness CreateIndex:",
                 "+ qbusiness CreateRetriever:", "+ iam CreateRole:", "+ iam PutRolePolicy:"):
        assert line in out, line
    assert '"identityType": "AWS_IAM_IDP_SAML"' in out and "clientIdsForOIDC" not in out
    assert f'"iamIdentityProviderArn": "{SAML_PROVIDER_ARN}"' in out
    assert '"sts:AssumeRoleWithSAML"' in out and f'"SAML:aud": "{ACS}"' in out
    assert '"MaxSessionDuration": 43200' in out
    assert '"SAMLMetadataDocument": "<' in out and "characters, sha256 " in out  # the document, abridged
    assert "CreateOpenIDConnectProvider" not in out
    assert "7 change(s) planned; nothing was changed" in out
    assert nothing_written(sandbox, iam)


def test_provisions_saml_mode_exactly_then_a_second_run_changes_nothing(
    sandbox: Sandbox, iam: Any, metadata_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = provision(capsys, metadata_file)

    assert code == 0, out + err
    provider = iam.get_saml_provider(SAMLProviderArn=SAML_PROVIDER_ARN)
    assert provider["SAMLMetadataDocument"] == metadata_file.read_text()
    role = iam.get_role(RoleName="qbot-user")["Role"]
    assert role["AssumeRolePolicyDocument"] == SAML_TRUST_POLICY
    assert role["MaxSessionDuration"] == 43200
    [app_id] = new_applications(sandbox)
    policy = iam.get_role_policy(RoleName="qbot-user", PolicyName="qbot-chat-as-user")["PolicyDocument"]
    assert policy == permissions(app_id)
    app = sandbox.q.control.applications[app_id]
    assert app.status() == "ACTIVE"
    assert app.spec["identityType"] == "AWS_IAM_IDP_SAML"
    assert app.spec["iamIdentityProviderArn"] == SAML_PROVIDER_ARN
    assert "clientIdsForOIDC" not in app.spec
    [index] = app.indices.values()

    lines = env_lines(out)
    assert lines == {
        "QBOT_PUBLIC_URL": PUBLIC_URL,
        "QBOT_SAML_METADATA_FILE": str(metadata_file),
        "QBOT_SAML_SP_ENTITY_ID": PUBLIC_URL + "/auth/saml/metadata",
        "QBOT_SAML_PROVIDER_ARN": SAML_PROVIDER_ARN,
        "QBOT_SAML_SESSION_SECONDS": "43200",
        "QBOT_AWS_REGION": "us-east-1",
        "QBOT_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/qbot-user",
        "QBOT_Q_APP_ID": app_id,
        "QBOT_Q_INDEX_ID": index.id,
    }
    assert f"Reply URL (ACS URL):     {ACS}" in out
    role_value = f"arn:aws:iam::{ACCOUNT}:role/qbot-user,{SAML_PROVIDER_ARN}"
    assert f"https://aws.amazon.com/SAML/Attributes/Role = {role_value}" in out

    before = writes(sandbox)
    code, again, _ = provision(capsys, metadata_file)
    assert code == 0
    assert "No changes: everything is already as wanted." in again and "+ " not in again
    assert writes(sandbox) == before and new_applications(sandbox) == [app_id]
    assert env_lines(again) == lines


def test_new_metadata_and_a_short_role_session_are_updated_and_nothing_else(
    sandbox: Sandbox, iam: Any, metadata_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert provision(capsys, metadata_file)[0] == 0
    iam.update_role(RoleName="qbot-user", MaxSessionDuration=3600)
    rolled = saml_metadata.write(tmp_path / "rolled.xml", saml_metadata.certificate(700))  # a new certificate
    before = writes(sandbox)

    code, out, _ = provision(capsys, rolled, "--session-seconds", "28800")

    assert code == 0, out
    assert "+ iam UpdateSAMLProvider" in out and "+ iam UpdateRole" in out
    assert "1 of the IdP's signing certificate(s) missing; 1 certificate(s) the IdP no longer lists" in out
    assert "its sessions last at most 3600s; the bot asks for 28800s" in out
    assert "Applied 2 change(s)." in out and "QBOT_SAML_SESSION_SECONDS=28800" in out
    assert iam.get_saml_provider(SAMLProviderArn=SAML_PROVIDER_ARN)["SAMLMetadataDocument"] == rolled.read_text()
    assert iam.get_role(RoleName="qbot-user")["Role"]["MaxSessionDuration"] == 28800
    assert writes(sandbox) == before

    code, shorter, _ = provision(capsys, rolled, "--session-seconds", "3600")  # a longer maximum is kept
    assert code == 0 and "No changes" in shorter


def test_a_new_download_of_the_same_metadata_changes_nothing(
    sandbox: Sandbox, iam: Any, metadata_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entra ID's metadata URL gives a new document ID (and signature) each time; STS uses only issuer and keys."""
    assert provision(capsys, metadata_file)[0] == 0
    again = tmp_path / "downloaded-again.xml"
    again.write_text(metadata_file.read_text().replace('ID="_5b1f"', 'ID="_9c2e"').replace("><", ">\n<"))

    code, out, _ = provision(capsys, again)

    assert code == 0 and "No changes" in out
    assert "(the IdP's entity id and signing certificates): as wanted" in out


def test_oidc_and_saml_flags_together_are_refused(
    sandbox: Sandbox, iam: Any, metadata_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = provision(capsys, metadata_file, "--issuer", "https://idp.example.com", "--client-id", "qbot")

    assert code == 1
    assert "--saml-metadata (SAML mode) and --issuer/--client-id (OIDC mode) exclude each other" in err
    assert out == "" and nothing_written(sandbox, iam)


def test_an_environment_in_both_modes_is_refused(
    sandbox: Sandbox, iam: Any, metadata_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QBOT_OIDC_ISSUER", "https://idp.example.com")
    monkeypatch.setenv("QBOT_SAML_METADATA_FILE", str(metadata_file))

    assert main(["admin", "provision", "--public-url", PUBLIC_URL]) == 1

    assert "sets both QBOT_OIDC_ISSUER and QBOT_SAML_METADATA_*" in capsys.readouterr().err
    assert nothing_written(sandbox, iam)


def test_saml_mode_from_the_environment(
    sandbox: Sandbox, iam: Any, metadata_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QBOT_SAML_METADATA_FILE", str(metadata_file))
    monkeypatch.setenv("QBOT_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("QBOT_SAML_SP_ENTITY_ID", "urn:qbot:example")
    monkeypatch.setenv("QBOT_SAML_SESSION_SECONDS", "14400")

    assert main(["admin", "provision", "--dry-run", "--saml-provider-name", "EntraID"]) == 0

    out = capsys.readouterr().out
    assert '"Name": "EntraID"' in out and '"MaxSessionDuration": 14400' in out
    lines = env_lines(out)
    assert lines["QBOT_SAML_SP_ENTITY_ID"] == "urn:qbot:example"
    assert lines["QBOT_SAML_PROVIDER_ARN"] == f"arn:aws:iam::{ACCOUNT}:saml-provider/EntraID"
    assert nothing_written(sandbox, iam)


BAD_METADATA = [
    ("entities", saml_metadata.metadata(doctype='<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'),
     "it declares a DOCTYPE"),
    ("no certificate", saml_metadata.metadata().replace('use="signing"', 'use="encryption"'),
     "names no signing certificate"),
    ("no redirect binding", saml_metadata.metadata().replace("HTTP-Redirect", "SOAP"),
     "no SingleSignOnService with the HTTP-Redirect binding"),
    ("service provider", saml_metadata.metadata().replace("IDPSSODescriptor", "SPSSODescriptor"),
     "no SAML 2.0 IDPSSODescriptor"),
    ("not xml", "<EntityDescriptor", "not XML"),
]


@pytest.mark.parametrize(("document", "problem"), [b[1:] for b in BAD_METADATA], ids=[b[0] for b in BAD_METADATA])
def test_metadata_that_cannot_be_used_is_refused_before_anything_is_written(
    sandbox: Sandbox, iam: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str, problem: str
) -> None:
    path = tmp_path / "metadata.xml"
    path.write_text(document)

    code, out, err = provision(capsys, path)

    assert code == 1
    assert f"the SAML metadata {path} cannot be used: " in err and problem in err
    assert out == "" and nothing_written(sandbox, iam)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--session-seconds", "86400"], "--session-seconds 86400 is outside what STS allows a SAML session"),
        (["--public-url", "qbot.example.com"], "the public URL 'qbot.example.com' is not an http(s) URL"),
        (["--saml-provider-name", "Entra ID"], "not a SAML provider name: 'Entra ID'"),
    ],
)
def test_bad_saml_settings_are_refused_before_anything_is_written(
    sandbox: Sandbox, iam: Any, metadata_file: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
    problem: str,
) -> None:
    code, out, err = provision(capsys, metadata_file, *extra)

    assert code == 1
    assert problem in err
    assert "+ " not in out and nothing_written(sandbox, iam)


def test_an_oidc_application_is_not_adopted_in_saml_mode(
    sandbox: Sandbox, iam: Any, metadata_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = provision(capsys, metadata_file, "--application-id", APP_ID)

    assert code == 1
    assert "its identity type is AWS_IAM_IDP_OIDC, not AWS_IAM_IDP_SAML" in err
    assert iam.list_roles()["Roles"] == []


def test_the_saml_manifest_is_the_trust_policy_provisioning_writes() -> None:
    folder = Path(__file__).resolve().parents[2] / "manifests" / "aws"
    trust = json.loads((folder / "saml-trust-policy.json").read_text())
    template = "arn:aws:iam::${ACCOUNT_ID}:saml-provider/${SAML_PROVIDER_NAME}"
    assert trust == json.loads(
        json.dumps(SAML_TRUST_POLICY).replace(SAML_PROVIDER_ARN, template).replace(ACS, "${PUBLIC_URL}/auth/saml/acs")
    )


@pytest.fixture
def metadata_url(servers: LoopThread, metadata_file: Path) -> Iterator[str]:
    document = metadata_file.read_text()

    async def federation_metadata(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="text/xml")

    app = web.Application()
    app.router.add_get("/federationmetadata.xml", federation_metadata)
    served = Served(app, bind("127.0.0.1", 0))
    servers.run(served.start())
    yield served.url + "/federationmetadata.xml"
    servers.run(served.stop())


def test_metadata_from_the_idps_url_is_what_iam_gets_and_the_bot_is_told_to_read(
    sandbox: Sandbox, iam: Any, metadata_file: Path, metadata_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = provision(capsys, metadata_url)

    assert code == 0, out + err
    assert env_lines(out)["QBOT_SAML_METADATA_URL"] == metadata_url and "QBOT_SAML_METADATA_FILE" not in out
    provider = iam.get_saml_provider(SAMLProviderArn=SAML_PROVIDER_ARN)
    assert provider["SAMLMetadataDocument"] == metadata_file.read_text()

    code, out, err = provision(capsys, metadata_url.replace("federationmetadata", "missing"))
    assert code == 1 and "answered HTTP 404" in err
