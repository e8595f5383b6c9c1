"""`Sandbox(saml=True)`: the same company on SAML 2.0, and the settings a bot needs to join it."""

from __future__ import annotations

from typing import Any

import boto3
import httpx
from botocore.config import Config

from sandbox.credentials import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY
from sandbox.world import APP_ID, REGION, SAML_PROVIDER_ARN, SAML_ROLE_ARN, Sandbox, SandboxPorts
from tests.conftest import LoopThread
from tests.sandbox.saml.test_assume_role import assertion, assume


def q_client(world: Sandbox, key: str, secret: str, token: str | None = None) -> Any:
    return boto3.client(
        "qbusiness", endpoint_url=world.q_url, region_name=REGION, aws_access_key_id=key,
        aws_secret_access_key=secret, aws_session_token=token, config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


def test_env_has_the_saml_settings_and_no_oidc_ones(saml_world: Sandbox) -> None:
    env = saml_world.env()
    assert not [name for name in env if name.startswith("QBOT_OIDC_")]
    assert env["QBOT_SAML_METADATA_URL"] == saml_world.idp_url + "/saml/metadata"
    assert env["QBOT_SAML_SP_ENTITY_ID"] == saml_world.bot_public_url + "/auth/saml/metadata"
    assert env["QBOT_SAML_PROVIDER_ARN"] == SAML_PROVIDER_ARN == "arn:aws:iam::123456789012:saml-provider/qbot-sandbox"
    assert env["QBOT_ROLE_ARN"] == SAML_ROLE_ARN
    assert env["QBOT_SAML_SESSION_SECONDS"] == "43200"
    assert env["QBOT_PUBLIC_URL"] == saml_world.bot_public_url
    assert env["QBOT_STS_ENDPOINT_URL"] == saml_world.sts_url


def test_the_metadata_url_serves_what_iam_was_given(saml_world: Sandbox) -> None:
    metadata = httpx.get(saml_world.env()["QBOT_SAML_METADATA_URL"], timeout=5)
    assert metadata.status_code == 200
    provider = saml_world.sts.saml_providers[SAML_PROVIDER_ARN]
    assert provider.entity_id == saml_world.idp.saml.entity_id
    assert provider.certificates == (saml_world.idp.saml.signing.cert,)


def test_the_role_trusts_assertions_posted_to_the_bots_acs(saml_world: Sandbox) -> None:
    role = saml_world.sts.saml_roles[SAML_ROLE_ARN]
    assert (role.provider_arn, role.saml_aud) == (SAML_PROVIDER_ARN, saml_world.bot_public_url + "/auth/saml/acs")
    assert role.max_session_duration == 43200


def test_the_q_application_is_saml_federated(saml_world: Sandbox) -> None:
    admin = q_client(saml_world, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY)
    app = admin.get_application(applicationId=APP_ID)
    assert app["identityType"] == "AWS_IAM_IDP_SAML"
    assert app["iamIdentityProviderArn"] == SAML_PROVIDER_ARN
    assert "clientIdsForOIDC" not in app


def test_q_answers_as_the_user_the_assertion_names(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    """The whole chain: sign in at the IdP, AssumeRoleWithSAML, ChatSync signed with those credentials."""
    creds = assume(sts, assertion(saml_world, browser, "carol"), DurationSeconds=3600)["Credentials"]
    carol = q_client(saml_world, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    answer = carol.chat_sync(applicationId=APP_ID, userMessage="What is Project Aurora?")
    assert answer["systemMessage"]
    issued = saml_world.credentials.lookup(creds["AccessKeyId"])
    assert issued is not None and issued.email == "carol@example.com"


def test_oidc_mode_is_unchanged(servers: LoopThread) -> None:
    world = Sandbox(ports=SandboxPorts(0, 0, 0))
    servers.run(world.start())
    servers.run(world.stop())
    env = world.env()
    assert env["QBOT_OIDC_ISSUER"] == world.idp_url
    assert not [name for name in env if name.startswith("QBOT_SAML_")]
    assert env["QBOT_ROLE_ARN"] == "arn:aws:iam::123456789012:role/qbot-sandbox-user"
    assert not world.idp.saml.sps and not world.sts.saml_providers
