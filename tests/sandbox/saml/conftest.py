"""One sandbox in SAML mode for the package (its signing key is made once), with faults and stats reset per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from sandbox.world import Sandbox, SandboxPorts
from tests.conftest import LoopThread
from tests.sandbox.idp.flow import TLS


@pytest.fixture(scope="package")
def world(servers: LoopThread) -> Iterator[Sandbox]:
    sandbox = Sandbox(ports=SandboxPorts(0, 0, 0), saml=True)
    servers.run(sandbox.start())
    yield sandbox
    servers.run(sandbox.stop())


@pytest.fixture
def saml_world(world: Sandbox) -> Iterator[Sandbox]:
    world.idp.saml.faults.reset()
    world.sts.stats.reset()
    yield world
    world.idp.saml.faults.reset()


@pytest.fixture
def browser(saml_world: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=saml_world.idp_url, follow_redirects=False, timeout=5, verify=TLS) as client:
        yield client


@pytest.fixture
def sts(saml_world: Sandbox) -> Iterator[Any]:
    """boto3's STS client against the stand-in (AssumeRoleWithSAML is unsigned, as at AWS)."""
    client = boto3.client(
        "sts",
        endpoint_url=saml_world.sts_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),
    )
    yield client
    client.close()
