"""A Q Business stand-in with the sample application, served on loopback for each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.credentials import CredentialRegistry
from sandbox.directory import sample_directory
from sandbox.qbusiness import SandboxQBusiness
from sandbox.serving import Served, bind
from tests.sandbox.qbusiness.endpoint import (
    APP_ID,
    INDEX_ID,
    REGION,
    QEndpoint,
)


@pytest.fixture
def qb(servers: Any) -> Iterator[QEndpoint]:
    registry = CredentialRegistry()
    q = SandboxQBusiness(registry, REGION)
    q.add_sample_application(APP_ID, INDEX_ID, sample_directory().groups())
    served = Served(q.app(), bind("127.0.0.1", 0))
    servers.run(served.start())
    yield QEndpoint(q, registry, served.url)
    servers.run(served.stop())
