"""A sandbox IdP served on loopback for each test, with a clock the test moves and one signing key per run."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from joserfc.jwk import RSAKey

from sandbox.directory import sample_directory
from sandbox.idp import SandboxIdP
from sandbox.serving import Served, bind, url_of
from tests.conftest import LoopThread
from tests.sandbox.idp.flow import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    OTHER_SECRET,
    REDIRECT_URI,
    TLS,
    Clock,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def idp(servers: LoopThread, clock: Clock, idp_signing_key: RSAKey) -> Iterator[SandboxIdP]:
    sock = bind("127.0.0.1", 0)
    provider = SandboxIdP(
        issuer=url_of(sock),
        directory=sample_directory(),
        clock=clock,
        signing_key=idp_signing_key,
        id_token_ttl=120,
        code_ttl=60,
        access_token_ttl=300,
        refresh_token_ttl=3600,
    )
    provider.add_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    provider.add_client(OTHER_CLIENT_ID, OTHER_SECRET, ["http://127.0.0.1:9999/cb"])
    served = Served(provider.app(), sock)
    servers.run(served.start())
    yield provider
    servers.run(served.stop())


@pytest.fixture
def http(idp: SandboxIdP) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=idp.issuer, follow_redirects=False, timeout=5, verify=TLS) as client:
        yield client
