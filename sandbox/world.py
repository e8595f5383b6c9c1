"""The whole sandbox: IdP, STS and Q Business wired to each other the way a company's real setup is.

`Sandbox` is what `qbot sandbox` runs and what the tests start (on OS-chosen ports). The names it exposes
(client id, role ARN, application id) are the values a bot needs in its `QBOT_*` environment: `env()`.

`Sandbox(saml=True)` is the same company on SAML 2.0 (as with Entra ID): the IdP knows the bot as a SAML
service provider (entity id `<bot>/auth/saml/metadata`, ACS `<bot>/auth/saml/acs`), STS holds an IAM SAML
provider made from the IdP's metadata and a role trusting it (`SAML:aud` = the ACS), and the Q application's
identity type is AWS_IAM_IDP_SAML; `env()` then gives the SAML-mode settings instead of the OIDC ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from joserfc.jwk import RSAKey

from sandbox.credentials import (
    ACCOUNT_ID,
    ADMIN_ACCESS_KEY_ID,
    ADMIN_SECRET_ACCESS_KEY,
    CredentialRegistry,
)
from sandbox.directory import Directory, sample_directory
from sandbox.idp import SandboxIdP
from sandbox.qbusiness import SandboxQBusiness
from sandbox.serving import Served, bind, url_of
from sandbox.sts import SandboxSTS

REGION = "us-east-1"
CLIENT_ID = "qbot"
CLIENT_SECRET = "qbot-sandbox-client-secret"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/qbot-sandbox-user"
SAML_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/qbot-sandbox-saml-user"
SAML_PROVIDER_NAME = "qbot-sandbox"
SAML_PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:saml-provider/{SAML_PROVIDER_NAME}"
#: the longest session IAM lets a role have: users sign in again twice a day at most
SAML_SESSION_SECONDS = 43200
APP_ID = "5a4db0a1-1b0e-4f43-9d5c-0e7f3b6a2c11"
INDEX_ID = "8c0e3f52-7d4a-4c1b-b0f6-2a9e5d1c7b33"


@dataclass
class SandboxPorts:
    idp: int = 3979
    sts: int = 3980
    q: int = 3981


@dataclass
class Sandbox:
    host: str = "127.0.0.1"
    ports: SandboxPorts = field(default_factory=SandboxPorts)
    bot_public_url: str = "http://127.0.0.1:3978"
    directory: Directory = field(default_factory=sample_directory)
    #: SAML 2.0 mode instead of OIDC
    saml: bool = False
    #: the bot's SAML entity id (default `<bot_public_url>/auth/saml/metadata`)
    saml_sp_entity_id: str | None = None
    saml_session_seconds: int = SAML_SESSION_SECONDS
    #: the IdP's token signing key; None draws a fresh one (~0.1 s: a test suite starting a sandbox per test
    #: hands in one key for all of them, each sandbox being another issuer)
    signing_key: RSAKey | None = None

    def __post_init__(self) -> None:
        self._socks = {
            "idp": bind(self.host, self.ports.idp),
            "sts": bind(self.host, self.ports.sts),
            "q": bind(self.host, self.ports.q),
        }
        self.idp_url = url_of(self._socks["idp"])
        self.sts_url = url_of(self._socks["sts"])
        self.q_url = url_of(self._socks["q"])
        self.credentials = CredentialRegistry()

        self.idp = SandboxIdP(issuer=self.idp_url, directory=self.directory, signing_key=self.signing_key)
        self.sts = SandboxSTS(self.credentials)
        self.q = SandboxQBusiness(self.credentials, region=REGION)
        self.q.plugins.redirect_uri = self.bot_public_url + "/auth/plugin/callback"  # the plugin OAuth return
        if self.saml:
            self._federate_saml()
        else:
            self.idp.add_client(CLIENT_ID, CLIENT_SECRET, [self.bot_public_url + "/auth/callback"])
            self.sts.add_oidc_provider(self.idp_url, [CLIENT_ID])
            self.sts.add_role(ROLE_ARN, issuer=self.idp_url, audience=CLIENT_ID)
            self.q.add_sample_application(APP_ID, INDEX_ID, groups=self.directory.groups())

        self._served = [
            Served(self.idp.app(), self._socks["idp"]),
            Served(self.sts.app(), self._socks["sts"]),
            Served(self.q.app(), self._socks["q"]),
        ]

    @property
    def acs_url(self) -> str:
        """Where the IdP posts SAML Responses: the bot's assertion consumer service."""
        return self.bot_public_url + "/auth/saml/acs"

    @property
    def sp_entity_id(self) -> str:
        return self.saml_sp_entity_id or self.bot_public_url + "/auth/saml/metadata"

    @property
    def role_arn(self) -> str:
        return SAML_ROLE_ARN if self.saml else ROLE_ARN

    def _federate_saml(self) -> None:
        """The SAML wiring an admin does: the enterprise application at the IdP, IAM's SAML provider from the
        IdP's metadata, a role trusting assertions posted to the bot's ACS, a SAML Q application."""
        self.idp.saml.session_seconds = self.saml_session_seconds
        self.idp.saml.add_sp(
            self.sp_entity_id,
            self.acs_url,
            role_arn=SAML_ROLE_ARN,
            provider_arn=SAML_PROVIDER_ARN,
            session_duration=self.saml_session_seconds,
        )
        provider = self.sts.add_saml_provider(SAML_PROVIDER_NAME, self.idp.saml.metadata_xml())
        self.sts.add_saml_role(
            SAML_ROLE_ARN,
            provider_arn=provider.arn,
            saml_aud=self.acs_url,
            max_session_duration=max(self.saml_session_seconds, 3600),
        )
        self.q.add_sample_application(
            APP_ID, INDEX_ID, groups=self.directory.groups(), identity_provider_arn=provider.arn, saml=True
        )

    async def start(self) -> None:
        for served in self._served:
            await served.start()

    async def stop(self) -> None:
        for served in reversed(self._served):
            await served.stop()

    def env(self) -> dict[str, str]:
        """The QBOT_* settings that point a bot at these stand-ins (SAML-mode ones in SAML mode)."""
        if self.saml:
            identity = {
                "QBOT_SAML_METADATA_URL": self.idp.saml.metadata_url,
                "QBOT_SAML_SP_ENTITY_ID": self.sp_entity_id,
                "QBOT_SAML_PROVIDER_ARN": SAML_PROVIDER_ARN,
                "QBOT_SAML_SESSION_SECONDS": str(self.saml_session_seconds),
            }
        else:
            identity = {
                "QBOT_OIDC_ISSUER": self.idp_url,
                "QBOT_OIDC_CLIENT_ID": CLIENT_ID,
                "QBOT_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            }
        return {
            "QBOT_PUBLIC_URL": self.bot_public_url,
            **identity,
            "QBOT_AWS_REGION": REGION,
            "QBOT_ROLE_ARN": self.role_arn,
            "QBOT_Q_APP_ID": APP_ID,
            "QBOT_STS_ENDPOINT_URL": self.sts_url,
            "QBOT_Q_ENDPOINT_URL": self.q_url,
        }

    def admin_env(self) -> dict[str, str]:
        """Static administrator credentials, for `qbot admin` against the stand-ins."""
        return {
            "AWS_ACCESS_KEY_ID": ADMIN_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET_ACCESS_KEY,
            "QBOT_Q_INDEX_ID": INDEX_ID,
        }
