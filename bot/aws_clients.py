"""boto3 clients with the process's own AWS credentials (never a user's), every endpoint overridable.

Below both the core and the operator tooling: automatic group sync (`bot.group_sync`, PutGroup on the request
path) and `qbot admin`/`qbot doctor` build their clients and describe AWS failures here, so nothing on a chat
request's path imports admin code.

Credentials come from the default boto3 chain (environment, shared files, SSO, instance or task role), or
from a named profile (`--profile` / `QBOT_AWS_PROFILE`). Endpoints: `QBOT_IAM_ENDPOINT_URL` and
`QBOT_Q_ENDPOINT_URL` (also used by the bot for ChatSync); STS for GetCallerIdentity honours boto3's own
`AWS_ENDPOINT_URL_STS`. Tests point IAM at moto and Q Business at the sandbox stand-in.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5})


@functools.cache
def credentialless_session() -> botocore.session.Session:
    """The process's one botocore session for the clients that hold no credentials of their own: STS's
    AssumeRoleWith* calls (unsigned) and ChatSync (signed per request with the asking user's); nothing in it
    belongs to a user. Sharing it parses the endpoint rules and service models and registers botocore's event
    handlers once, not per client (about a tenth of a second of CPU each).

    Clients are made from it directly: a boto3.Session around it would add its handlers and search path to it
    again each time."""
    return botocore.session.get_session()


@dataclass(frozen=True)
class AdminAws:
    region: str = "us-east-1"
    profile: str | None = None
    iam_endpoint_url: str | None = None
    q_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, region: str | None = None, profile: str | None = None) -> AdminAws:
        return cls(
            region=region or env.get("QBOT_AWS_REGION") or "us-east-1",
            profile=profile or env.get("QBOT_AWS_PROFILE") or None,
            iam_endpoint_url=env.get("QBOT_IAM_ENDPOINT_URL") or None,
            q_endpoint_url=env.get("QBOT_Q_ENDPOINT_URL") or None,
        )

    def session(self) -> boto3.Session:
        return boto3.Session(profile_name=self.profile, region_name=self.region)

    def iam(self, session: boto3.Session | None = None) -> Any:
        return (session or self.session()).client("iam", endpoint_url=self.iam_endpoint_url, config=_CONFIG)

    def qbusiness(self, session: boto3.Session | None = None) -> Any:
        return (session or self.session()).client(
            "qbusiness", region_name=self.region, endpoint_url=self.q_endpoint_url, config=_CONFIG
        )

    def sts(self, session: boto3.Session | None = None) -> Any:
        return (session or self.session()).client("sts", region_name=self.region, config=_CONFIG)


def error_code(err: Exception) -> str:
    """The AWS error code of a failed call ("" for a client-side failure)."""
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def describe(err: Exception) -> str:
    """One line an administrator can act on: `Code: message`, without request ids or stack traces."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    if isinstance(err, BotoCoreError):
        return f"{type(err).__name__}: {err}"
    return str(err)


AWS_ERRORS = (ClientError, BotoCoreError)
