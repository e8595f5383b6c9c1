"""Fixtures for the administrator's commands: moto in server mode for IAM (and STS GetCallerIdentity), the
sandbox Q Business stand-in for the control plane, and administrator credentials in the environment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest

from sandbox.world import Sandbox


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_url(moto_server: str) -> str:
    """The moto server, emptied before each test."""
    httpx.post(moto_server + "/moto-api/reset").raise_for_status()
    return moto_server


@pytest.fixture
def admin_env(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, moto_url: str, tmp_path: Any) -> dict[str, str]:
    """The process environment of an administrator pointed at the stand-ins; nothing can reach AWS."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    env = {
        **sandbox.admin_env(),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_STS": moto_url,
        "QBOT_IAM_ENDPOINT_URL": moto_url,
        "QBOT_Q_ENDPOINT_URL": sandbox.q_url,
        "QBOT_AWS_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def iam(moto_url: str, admin_env: dict[str, str]) -> Any:
    return boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1")
