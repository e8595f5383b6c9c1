"""The broker's credential lock is a lease: a process minting for longer than the lease keeps it (no second IdP
refresh or STS call from another process), and a process that dies mid-flight frees it within the lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.broker import LOCK_PREFIX
from bot.cipher import TokenCipher
from bot.redis_lock import RedisLock
from sandbox.world import Sandbox
from tests.bot.holder_process import hold_in_another_process
from tests.bot.linking import link_user
from tests.bot.test_broker import ALICE, ALICE_EMAIL, Process
from tests.conftest import until

LEASE = 0.6  # seconds: short for quick tests, yet twice a stall a loaded machine may cause; bot: LEASE_SECONDS


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-aws")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
async def two_processes(
    sandbox: Sandbox, redis_url: str, executor: ThreadPoolExecutor
) -> AsyncIterator[tuple[Process, Process]]:
    cipher = TokenCipher.ephemeral()
    one = Process(sandbox, redis_url, cipher, executor, lock_lease_seconds=LEASE)
    two = Process(sandbox, redis_url, cipher, executor, lock_lease_seconds=LEASE, lock_wait_seconds=60)
    yield one, two
    await one.close()
    await two.close()


async def test_a_flight_longer_than_the_lease_keeps_the_lock(
    two_processes: tuple[Process, Process], sandbox: Sandbox
) -> None:
    one, two = two_processes
    await link_user(sandbox, one.vault, ALICE, oidc=one.oidc)
    sandbox.sts.faults.delay_seconds = 4 * LEASE  # STS is slow: the first process mints through several leases
    first = asyncio.create_task(one.broker.credentials(ALICE))
    await until(lambda: one.redis.exists(LOCK_PREFIX + ALICE.key))
    second = await two.broker.credentials(ALICE)  # waits for the holder's credentials, not for a lapsed lock
    assert second == await first
    assert sandbox.idp.stats.refreshes["alice"] == 1 and sandbox.sts.stats.calls[ALICE_EMAIL] == 1


async def test_a_process_that_dies_mid_flight_frees_the_lock_within_the_lease(
    two_processes: tuple[Process, Process], sandbox: Sandbox, redis_url: str
) -> None:
    _, two = two_processes
    await link_user(sandbox, two.vault, ALICE, oidc=two.oidc)
    holder = hold_in_another_process(redis_url, LEASE, LOCK_PREFIX + ALICE.key)  # minting, as far as we know
    try:
        assert not await RedisLock(two.redis, LOCK_PREFIX + ALICE.key, ttl_seconds=10).acquire()  # alive: held
        holder.kill()  # ... when it is SIGKILLed
        creds = await two.broker.credentials(ALICE)  # the lease lapses; this process mints
        assert creds.access_key_id.startswith("ASIA") and sandbox.sts.stats.calls[ALICE_EMAIL] == 1
    finally:
        holder.kill()
        holder.wait()
