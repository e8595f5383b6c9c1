"""A fresh STS stand-in per test, trusting one issuer shared by the package."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from sandbox.credentials import CredentialRegistry
from sandbox.serving import Served, bind, url_of
from sandbox.sts import SandboxSTS
from tests.conftest import refusing_socket
from tests.sandbox.sts.deployment import (
    CLIENT_ID,
    FOREIGN_ISSUER,
    FOREIGN_ROLE_ARN,
    OTHER_CLIENT_ID,
    REPORTING_ROLE_ARN,
    ROLE_ARN,
    Deployment,
    TestIssuer,
)


@pytest.fixture(scope="package")
def issuer(servers: Any) -> Iterator[TestIssuer]:
    test_issuer = TestIssuer(servers)
    yield test_issuer
    test_issuer.stop()


@pytest.fixture
def deployed(servers: Any, issuer: TestIssuer) -> Iterator[Deployment]:
    """A fresh STS (empty key cache, stats and faults) trusting the test issuer, served on a free port."""
    issuer.reset()
    registry = CredentialRegistry()
    sts = SandboxSTS(registry)
    sts.add_oidc_provider(issuer.url, [CLIENT_ID, OTHER_CLIENT_ID])
    sts.add_oidc_provider(FOREIGN_ISSUER, [CLIENT_ID])
    sts.add_role(ROLE_ARN, issuer=issuer.url, audience=CLIENT_ID)
    sts.add_role(REPORTING_ROLE_ARN, issuer=issuer.url, audience=OTHER_CLIENT_ID, max_session_duration=7200)
    sts.add_role(FOREIGN_ROLE_ARN, issuer=FOREIGN_ISSUER, audience=CLIENT_ID)
    refusing = refusing_socket()  # held until the test ends: nothing else can start listening there
    unreachable_issuer = url_of(refusing)
    sts.add_oidc_provider(unreachable_issuer, [CLIENT_ID])

    served = Served(sts.app(), bind("127.0.0.1", 0))
    servers.run(served.start())
    client = boto3.client(
        "sts",
        endpoint_url=served.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        # No client-side retries, and no client-side length checks: the server's own checks are under test.
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
    )
    yield Deployment(sts, registry, client, unreachable_issuer)
    client.close()
    servers.run(served.stop())
    refusing.close()
