"""The Q Business stand-in through real boto3 clients, as the tests in this folder call it.

Users' clients sign with web-identity session credentials carrying an Email tag (as STS would mint them);
the administrator's client signs with the sandbox's static keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.credentials import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, CredentialRegistry
from sandbox.qbusiness import SandboxQBusiness

REGION = "us-east-1"
APP_ID = "5a4db0a1-1b0e-4f43-9d5c-0e7f3b6a2c11"
INDEX_ID = "8c0e3f52-7d4a-4c1b-b0f6-2a9e5d1c7b33"
ROADMAP_URL = "https://intranet.example.com/product/aurora-roadmap-2027"
AURORA = "What is Project Aurora?"
OIDC_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/idp.example.com"


@dataclass
class QEndpoint:
    q: SandboxQBusiness
    registry: CredentialRegistry
    url: str

    def _client(self, key: str, secret: str, token: str | None, **config: Any) -> Any:
        return boto3.client(
            "qbusiness",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=Config(retries={"total_max_attempts": 1}, **config),
        )

    def user(self, email: str | None, **config: Any) -> Any:
        tags = {"Email": email} if email else {}
        name = (email or "anonymous").split("@")[0]
        arn = f"arn:aws:sts::123456789012:assumed-role/qbot-sandbox-user/{name}"
        creds = self.registry.mint_session(arn, timedelta(hours=1), tags)
        return self._client(creds.access_key_id, creds.secret_access_key, creds.session_token, **config)

    def admin(self, **config: Any) -> Any:
        return self._client(ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, None, **config)


def refusal(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response: dict[str, Any] = dict(caught.value.response)
    return response


def cited_urls(answer: dict[str, Any]) -> set[str]:
    return {source["url"] for source in answer["sourceAttributions"]}


def ask(client: Any, message: str, **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client.chat_sync(applicationId=APP_ID, userMessage=message, **kwargs)
    return answer
