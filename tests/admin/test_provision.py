"""`qbot admin provision` against moto (IAM, in server mode) and the sandbox's Q Business control plane."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qbot.admin.policies import render_manifests
from qbot.cli import main
from sandbox.world import APP_ID, Sandbox

ISSUER = "https://idp.example.com/oauth2/default"
ACCOUNT = "123456789012"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/idp.example.com/oauth2/default"
ARGS = ["admin", "provision", "--issuer", ISSUER, "--client-id", "qbot-client", "--poll-seconds", "0.05"]
WRITES = ("Create", "Update", "Put", "Delete")

# The documents written out in full, not computed by the code under test: what an auditor would read.
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "QbotUsersSignInWithTheIdP",
            "Effect": "Allow",
            "Principal": {"Federated": PROVIDER_ARN},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"idp.example.com/oauth2/default:aud": "qbot-client"}},
        },
        {
            "Sid": "QbotSessionsCarryTheUsersEmail",
            "Effect": "Allow",
            "Principal": {"Federated": PROVIDER_ARN},
            "Action": "sts:TagSession",
            "Condition": {
                "StringLike": {"aws:RequestTag/Email": "*"},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["Email"]},
            },
        },
    ],
}


def permissions(app_id: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "QbotChatsAsTheUser",
                "Effect": "Allow",
                "Action": [
                    "qbusiness:Chat",
                    "qbusiness:ChatSync",
                    "qbusiness:ListConversations",
                    "qbusiness:ListMessages",
                    "qbusiness:DeleteConversation",
                    "qbusiness:PutFeedback",
                    "qbusiness:ListPlugins",
                ],
                "Resource": f"arn:aws:qbusiness:us-east-1:{ACCOUNT}:application/{app_id}",
            },
            {
                "Sid": "QbotAutoSubscribesNewUsers",
                "Effect": "Allow",
                "Action": "user-subscriptions:CreateClaim",
                "Resource": "*",
                "Condition": {
                    "Bool": {"user-subscriptions:CreateForSelf": "true"},
                    "StringEquals": {"aws:CalledViaLast": "qbusiness.amazonaws.com"},
                },
            },
        ],
    }


def provision(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main([*ARGS, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def env_lines(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if line.startswith("QBOT_") and "=" in line)


def writes(sandbox: Sandbox) -> int:
    return sum(n for op, n in sandbox.q.stats.operations.items() if op.startswith(WRITES))


def new_applications(sandbox: Sandbox) -> list[str]:
    return [app_id for app_id in sandbox.q.control.applications if app_id != APP_ID]


def test_dry_run_prints_the_whole_plan_and_changes_nothing(
    sandbox: Sandbox, iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = provision(capsys, "--dry-run")

    assert code == 0, out
    for call in ("CreateOpenIDConnectProvider", "CreateApplication", "UpdateApplication", "CreateIndex",
                 "CreateRetriever", "CreateRole", "PutRolePolicy"):
        assert f"+ {'iam' if 'Role' in call or 'OpenID' in call else 'qbusiness'} {call}:" in out, call
    assert '"sts:AssumeRoleWithWebIdentity"' in out and '"aws:RequestTag/Email": "*"' in out
    assert '"idp.example.com/oauth2/default:aud": "qbot-client"' in out
    assert '"qbusiness:ChatSync"' in out and '"AWS_IAM_IDP_OIDC"' in out
    assert "7 change(s) planned; nothing was changed" in out
    assert "QBOT_ROLE_ARN=arn:aws:iam::123456789012:role/qbot-user" in out

    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == []
    assert writes(sandbox) == 0 and new_applications(sandbox) == []


def test_provisions_everything_exactly_then_a_second_run_changes_nothing(
    sandbox: Sandbox, iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.q.faults.control_plane_delay = 0.2  # resources are CREATING for a while, as at AWS

    code, out, err = provision(capsys)

    assert code == 0, out + err
    assert "waiting for the application: CREATING" in err and "index is ACTIVE after" in err
    lines = env_lines(out)
    [app_id] = new_applications(sandbox)
    assert lines["QBOT_Q_APP_ID"] == app_id
    assert lines["QBOT_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/qbot-user"
    assert lines["QBOT_OIDC_ISSUER"] == ISSUER and lines["QBOT_OIDC_CLIENT_ID"] == "qbot-client"

    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=PROVIDER_ARN)
    assert provider["ClientIDList"] == ["qbot-client"]
    role = iam.get_role(RoleName="qbot-user")["Role"]
    assert role["AssumeRolePolicyDocument"] == TRUST_POLICY
    assert iam.list_role_policies(RoleName="qbot-user")["PolicyNames"] == ["qbot-chat-as-user"]
    policy = iam.get_role_policy(RoleName="qbot-user", PolicyName="qbot-chat-as-user")["PolicyDocument"]
    assert policy == permissions(app_id)
    assert iam.list_attached_role_policies(RoleName="qbot-user")["AttachedPolicies"] == []

    app = sandbox.q.control.applications[app_id]
    assert app.status() == "ACTIVE"
    assert app.spec["identityType"] == "AWS_IAM_IDP_OIDC"
    assert app.spec["iamIdentityProviderArn"] == PROVIDER_ARN
    assert app.spec["clientIdsForOIDC"] == ["qbot-client"]
    auto_subscription = {"autoSubscribe": "ENABLED", "defaultSubscriptionType": "Q_BUSINESS"}
    assert app.spec["autoSubscriptionConfiguration"] == auto_subscription
    [index] = app.indices.values()
    assert lines["QBOT_Q_INDEX_ID"] == index.id and index.status() == "ACTIVE"
    [retriever] = app.retrievers.values()
    assert retriever.spec["type"] == "NATIVE_INDEX"
    assert retriever.spec["configuration"] == {"nativeIndexConfiguration": {"indexId": index.id}}

    before = writes(sandbox)
    code, again, _ = provision(capsys)
    assert code == 0
    assert "No changes: everything is already as wanted." in again
    assert "+ " not in again
    assert writes(sandbox) == before and new_applications(sandbox) == [app_id]
    assert env_lines(again) == lines
    assert iam.get_role(RoleName="qbot-user")["Role"]["AssumeRolePolicyDocument"] == TRUST_POLICY

    code, dry, _ = provision(capsys, "--dry-run")
    assert code == 0 and "No changes" in dry and writes(sandbox) == before


def test_drift_is_put_back_and_nothing_else_is_touched(
    sandbox: Sandbox, iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert provision(capsys)[0] == 0
    [app_id] = new_applications(sandbox)
    loose = {**TRUST_POLICY, "Statement": TRUST_POLICY["Statement"][:1]}  # someone removed the TagSession statement
    iam.update_assume_role_policy(RoleName="qbot-user", PolicyDocument=json.dumps(loose))
    sandbox.q.control.applications[app_id].spec["autoSubscriptionConfiguration"] = {"autoSubscribe": "DISABLED"}
    before = sandbox.q.stats.operations.copy()

    code, out, _ = provision(capsys)

    assert code == 0, out
    assert "+ iam UpdateAssumeRolePolicy" in out and "+ qbusiness UpdateApplication" in out
    assert "Applied 2 change(s)." in out
    assert iam.get_role(RoleName="qbot-user")["Role"]["AssumeRolePolicyDocument"] == TRUST_POLICY
    assert sandbox.q.control.applications[app_id].spec["autoSubscriptionConfiguration"]["autoSubscribe"] == "ENABLED"
    made = sandbox.q.stats.operations - before
    assert {op for op in made if op.startswith(WRITES)} == {"UpdateApplication"}


def test_an_application_with_another_identity_setup_is_refused_not_half_adopted(
    sandbox: Sandbox, iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = provision(capsys, "--application-id", APP_ID)

    assert code == 1
    assert f"application {APP_ID} cannot serve qbot" in err and "trusts the identity provider" in err
    assert iam.list_roles()["Roles"] == []  # stopped before the role


def test_waits_are_bounded_and_a_rerun_finishes_the_job(
    sandbox: Sandbox, iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.q.faults.control_plane_delay = 30.0

    code, _, err = provision(capsys, "--timeout", "0.2")

    assert code == 1
    assert "the application is still CREATING after 0s" in err and "Run the same command again later" in err

    for app in sandbox.q.control.applications.values():
        app.ready_at = 0.0  # the application became ACTIVE meanwhile
    sandbox.q.faults.control_plane_delay = 0.0
    code, out, _ = provision(capsys)
    assert code == 0, out
    assert "CreateApplication" not in out and "+ qbusiness CreateIndex" in out
    assert len(new_applications(sandbox)) == 1


def test_missing_issuer_or_client_id_says_what_to_pass(
    admin_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QBOT_OIDC_ISSUER", raising=False)
    assert main(["admin", "provision", "--dry-run"]) == 1
    assert "--issuer URL and --client-id ID" in capsys.readouterr().err


def test_manifests_are_the_policies_provisioning_writes() -> None:
    folder = Path(__file__).resolve().parents[2] / "manifests" / "aws"
    for name, text in render_manifests().items():
        assert (folder / name).read_text() == text, f"manifests/aws/{name} drifted: python -m qbot.admin.policies"
    trust = json.loads((folder / "trust-policy.json").read_text())
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"${ISSUER_HOST_AND_PATH}:aud": "${CLIENT_ID}"}}
    assert trust["Statement"][1]["Condition"] == TRUST_POLICY["Statement"][1]["Condition"]


def test_an_existing_provider_gains_the_missing_client_id(
    sandbox: Sandbox, iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    iam.create_open_id_connect_provider(Url=ISSUER, ClientIDList=["another-app"])

    code, out, _ = provision(capsys, "--client-id", "second-client", "--dry-run")

    assert code == 0, out
    assert "CreateOpenIDConnectProvider" not in out
    assert out.count("+ iam AddClientIDToOpenIDConnectProvider") == 2
    assert '"ClientID": "second-client"' in out
    assert '"idp.example.com/oauth2/default:aud": [\n' in out  # both client ids may assume the role


def test_email_domain_restricts_the_email_tag_and_a_run_without_it_says_it_lifts_the_restriction(
    sandbox: Sandbox, iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = provision(capsys, "--email-domain", "Example.COM", "--email-domain", "@corp.example.org")

    assert code == 0, out + err
    tag_session = iam.get_role(RoleName="qbot-user")["Role"]["AssumeRolePolicyDocument"]["Statement"][1]
    assert tag_session["Condition"] == {
        "StringLike": {"aws:RequestTag/Email": ["*@example.com", "*@corp.example.org"]},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["Email"]},
    }
    code, again, _ = provision(capsys, "--email-domain", "example.com", "--email-domain", "corp.example.org")
    assert code == 0 and "No changes" in again

    code, loosened, _ = provision(capsys, "--dry-run")
    assert code == 0 and "+ iam UpdateAssumeRolePolicy" in loosened
    assert "lifts its Email restriction (*@example.com, *@corp.example.org): keep it with --email-domain" in loosened


@pytest.mark.parametrize("domain", ["*", "example", "alice@example.com", "example.com/x", ""])
def test_a_malformed_email_domain_is_refused_before_anything_is_written(
    sandbox: Sandbox, iam: Any, capsys: pytest.CaptureFixture[str], domain: str
) -> None:
    code, out, err = provision(capsys, "--email-domain", domain)

    assert code == 1
    assert f"not an email domain: {domain!r}" in err
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == [] and "+ " not in out
