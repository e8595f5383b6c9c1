"""RedisLock on the real Redis, held from two clients as two bot processes would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.redis_lock import LockTimeout, RedisLock
from qbot.embedded_redis import EmbeddedRedis
from qbot.redis_client import redis_client
from tests.bot.holder_process import hold_in_another_process

KEY = "qbot:lock:test"


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[tuple[Redis, Redis]]:
    one, two = Redis.from_url(redis_url), Redis.from_url(redis_url)
    yield one, two
    await one.aclose()
    await two.aclose()


async def test_one_holder_at_a_time_among_concurrent_acquirers_of_two_processes(
    clients: tuple[Redis, Redis],
) -> None:
    inside = most = entered = 0

    async def hold(client: Redis) -> None:
        nonlocal inside, most, entered
        async with RedisLock(client, KEY, ttl_seconds=10, wait_seconds=30):
            inside += 1
            entered += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(hold(clients[n % 2]) for n in range(12)))
    assert (most, entered) == (1, 12)
    assert await clients[0].exists(KEY) == 0  # the last holder let it go


async def test_only_the_holder_releases_or_extends(clients: tuple[Redis, Redis]) -> None:
    one, two = clients
    holder = RedisLock(one, KEY, ttl_seconds=10)
    other = RedisLock(two, KEY, ttl_seconds=60)
    assert await holder.acquire()
    assert not await other.acquire()  # no wait: one attempt
    assert not await other.release() and not await other.extend()
    assert await one.exists(KEY) == 1 and await one.pttl(KEY) <= 10_000  # untouched by the other

    assert await holder.extend()
    assert await holder.release()
    assert not await holder.release()  # a second release is harmless
    assert await other.acquire()


async def test_a_crashed_holders_lock_expires_and_its_late_release_frees_nothing(
    clients: tuple[Redis, Redis],
) -> None:
    one, two = clients
    crashed = RedisLock(one, KEY, ttl_seconds=0.2)
    assert await crashed.acquire()  # ... and its process dies without releasing
    survivor = RedisLock(two, KEY, ttl_seconds=10, wait_seconds=5)
    assert await survivor.acquire()
    assert not await crashed.extend() and not await crashed.release()  # it lost the lock to its TTL
    assert await two.exists(KEY) == 1  # still the survivor's
    assert await survivor.release()


async def test_patience_is_bounded(clients: tuple[Redis, Redis]) -> None:
    one, two = clients
    await one.set(KEY, "another process", px=60_000)
    assert not await RedisLock(two, KEY, ttl_seconds=10, wait_seconds=0.1).acquire()
    with pytest.raises(LockTimeout):
        async with RedisLock(two, KEY, ttl_seconds=10, wait_seconds=0.1):
            pass
    assert await one.get(KEY) == b"another process"  # giving up releases nothing


async def test_a_waiter_stops_when_the_holders_work_makes_its_own_moot(clients: tuple[Redis, Redis]) -> None:
    one, two = clients
    await one.set(KEY, "another process", px=60_000)
    done = asyncio.Event()

    async def holder_is_done() -> bool:
        return done.is_set()

    waiter = asyncio.create_task(
        RedisLock(two, KEY, ttl_seconds=10, wait_seconds=60).acquire(stop_waiting=holder_is_done)
    )
    done.set()
    assert await asyncio.wait_for(waiter, 10) is False
    assert await one.get(KEY) == b"another process"


# -- leases: held while the holder lives, freed soon after it dies -----------------------------------------------

LEASE = 0.6  # seconds: short for quick tests, yet twice a stall a loaded machine may cause; bot: LEASE_SECONDS


async def test_a_live_lease_holder_keeps_the_lock_past_its_ttl(clients: tuple[Redis, Redis]) -> None:
    one, two = clients
    holder = RedisLock(one, KEY, ttl_seconds=LEASE, renew=True)
    assert await holder.acquire()
    # The other waits out more than three leases and is refused all along: the holder renewed its lease.
    assert not await RedisLock(two, KEY, ttl_seconds=10, wait_seconds=4 * LEASE).acquire()
    assert not holder.lost.is_set()
    assert await holder.release()
    assert await one.exists(KEY) == 0
    assert await RedisLock(two, KEY, ttl_seconds=10).acquire()


async def test_a_lease_whose_holder_process_dies_frees_for_the_waiter(
    clients: tuple[Redis, Redis], redis_url: str
) -> None:
    one, _ = clients
    holder = hold_in_another_process(redis_url, LEASE, KEY)
    try:
        assert not await RedisLock(one, KEY, ttl_seconds=10, wait_seconds=4 * LEASE).acquire()  # alive: kept
        holder.kill()  # SIGKILL: no release, no more renewals
        waiter = RedisLock(one, KEY, ttl_seconds=10, wait_seconds=30)
        assert await waiter.acquire()  # within a lease of the death (patience is only a guard)
        assert await waiter.release()
    finally:
        holder.kill()
        holder.wait()


async def test_a_holder_is_told_when_its_lease_was_taken(clients: tuple[Redis, Redis]) -> None:
    one, two = clients
    holder = RedisLock(one, KEY, ttl_seconds=LEASE, renew=True)
    assert await holder.acquire()
    await two.set(KEY, "another process")  # e.g. the lease lapsed while the holder's process was frozen
    await asyncio.wait_for(holder.lost.wait(), 10)
    assert not await holder.release()
    assert await two.get(KEY) == b"another process"  # neither renewed nor released by the old holder


async def test_a_holder_cut_off_from_redis_for_a_whole_lease_is_told(private_redis: EmbeddedRedis) -> None:
    client = redis_client(private_redis.url, max_connections=4)
    holder = RedisLock(client, KEY, ttl_seconds=LEASE, renew=True)
    assert await holder.acquire()
    private_redis.stop()
    await asyncio.wait_for(holder.lost.wait(), 30)  # it cannot know whether another took the lock meanwhile
    private_redis.start()
    assert not await holder.release()  # the lock is not in the restarted Redis: nothing to release
    await client.aclose()


async def test_leaving_a_lock_while_redis_is_down_does_not_raise(private_redis: EmbeddedRedis) -> None:
    client = redis_client(private_redis.url, max_connections=4)
    answered = False
    async with RedisLock(client, KEY, ttl_seconds=LEASE, renew=True):
        answered = True  # the work was done: a failed release must not turn it into an error
        private_redis.stop()
    assert answered
    private_redis.start()
    assert await client.exists(KEY) == 0  # and the restarted Redis holds no lock (it lapses with the lease anyway)
    await client.aclose()


class LosesCancels(Redis):
    """A client whose lease renewals, once started, finish even when their task is cancelled: how a cancel was seen
    to vanish inside redis-py under pool pressure (the call returned, the task went on), which once left turns
    waiting forever on a renewal that renewed forever."""

    renewing = asyncio.Event()
    extend_sha = ""

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: object) -> object:  # type: ignore[override]
        if sha != self.extend_sha:
            return await super().evalsha(sha, numkeys, *keys_and_args)
        self.renewing.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            pass  # the cancel is lost, the renewal goes on
        return await super().evalsha(sha, numkeys, *keys_and_args)


async def test_a_release_ends_the_renewal_even_if_the_client_loses_its_cancel(redis_url: str) -> None:
    client = LosesCancels.from_url(redis_url)
    lease = RedisLock(client, KEY, ttl_seconds=0.9, renew=True)
    client.extend_sha = lease._extend.sha
    assert await lease.acquire()
    await client.renewing.wait()  # a renewal is in flight
    async with asyncio.timeout(10):  # (a bound on a hang, not on speed)
        assert await lease.release()
    assert await client.exists(KEY) == 0
    await client.aclose()
