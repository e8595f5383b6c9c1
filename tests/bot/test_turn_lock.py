import asyncio

import pytest
from redis.asyncio import Redis

from bot.errors import QUnavailable
from bot.redis_lock import LEASE_SECONDS
from bot.turn_lock import TurnLock
from qbot.embedded_redis import EmbeddedRedis
from qbot.redis_client import redis_client
from tests.bot.holder_process import hold_in_another_process

LEASE = 0.6  # seconds: short for quick tests, yet twice a stall a loaded machine may cause


async def test_turns_of_one_thread_never_overlap_across_processes(redis_url: str) -> None:
    one, two = Redis.from_url(redis_url), Redis.from_url(redis_url)
    locks = [TurnLock(one), TurnLock(two)]  # two bot processes
    inside = 0
    most = 0

    async def turn(lock: TurnLock) -> None:
        nonlocal inside, most
        async with lock.hold("slack:T:U", "C1", "t1"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.02)
            inside -= 1

    await asyncio.gather(*(turn(locks[n % 2]) for n in range(6)))
    assert most == 1
    # other threads and other users are not held up (a serialised entry would hang until the guard)
    async with locks[0].hold("slack:T:U", "C1", "t1"):
        await asyncio.wait_for(_enter(locks[1], "slack:T:U", "C1", "t2"), 10)
        await asyncio.wait_for(_enter(locks[1], "slack:T:V", "C1", "t1"), 10)
    assert await one.exists(TurnLock.key("slack:T:U", "C1", "t1")) == 0  # released
    await one.aclose()
    await two.aclose()


async def _enter(lock: TurnLock, who: str, channel: str, thread: str) -> None:
    async with lock.hold(who, channel, thread):
        pass


async def test_a_dead_holders_turn_frees_within_the_lease(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    key = TurnLock.key("web::s1", "web", "t")
    holder = hold_in_another_process(redis_url, LEASE, "turn", "web::s1", "web", "t")
    try:
        held_by_the_dead = await client.get(key)
        holder.kill()  # SIGKILL mid-turn: no release, no more renewals
        survivor = TurnLock(client, lease_seconds=10, wait_seconds=30)  # patience is only a guard
        async with survivor.hold("web::s1", "web", "t"):
            assert await client.get(key) not in (None, held_by_the_dead)  # the survivor's own
    finally:
        holder.kill()
        holder.wait()
    await client.aclose()


async def test_a_live_turn_longer_than_its_lease_keeps_the_thread(redis_url: str) -> None:
    one, two = Redis.from_url(redis_url), Redis.from_url(redis_url)
    async with TurnLock(one, lease_seconds=LEASE).hold("slack:T:U", "C1", "t1") as lease:
        # another process waits out more than three leases while this turn works, and is refused
        with pytest.raises(QUnavailable):
            await _enter(TurnLock(two, wait_seconds=4 * LEASE), "slack:T:U", "C1", "t1")
        assert not lease.lost.is_set()
    assert await one.exists(TurnLock.key("slack:T:U", "C1", "t1")) == 0
    await one.aclose()
    await two.aclose()


async def test_the_turn_lock_is_a_short_lease_not_a_long_ttl(redis_url: str) -> None:
    """The bot's own turn lock: a crashed holder's thread waits seconds, not the ~2 minutes a fixed TTL took."""
    client = Redis.from_url(redis_url)
    async with TurnLock(client).hold("slack:T:U", "C1", "t1"):
        assert 0 < await client.pttl(TurnLock.key("slack:T:U", "C1", "t1")) <= LEASE_SECONDS * 1000
    await client.aclose()


async def test_a_turn_ends_cleanly_when_redis_went_away_during_it(private_redis: EmbeddedRedis) -> None:
    """The answer is computed: failing to release the turn lock must not turn it into an error."""
    client = redis_client(private_redis.url, max_connections=4)
    answer = None
    async with TurnLock(client, lease_seconds=LEASE).hold("slack:T:U", "C1", "t1"):
        private_redis.stop()
        answer = "computed"
    assert answer == "computed"
    private_redis.start()
    await client.aclose()


async def test_waiting_for_a_stuck_turn_is_bounded_and_says_why(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    key = TurnLock.key("slack:T:U", "C1", "t1")
    await client.set(key, "another process", px=60_000)
    with pytest.raises(QUnavailable) as caught:
        await _enter(TurnLock(client, wait_seconds=0.1), "slack:T:U", "C1", "t1")
    assert "still being answered" in caught.value.user_message
    assert await client.get(key) == b"another process"  # not ours to release
    await client.aclose()


async def test_a_turn_run_again_takes_over_its_dead_first_runs_lock_at_once(redis_url: str) -> None:
    """A worker died holding the thread for a message; the message's run again (another worker) need not wait
    out the lease, but the thread's next message still must."""
    client = Redis.from_url(redis_url)
    dead = TurnLock(client, lease_seconds=60)
    first_run = dead.hold("slack:T:U", "C1", "t1", "message-1")
    await first_run.__aenter__()  # held and never released: its worker died (the lease stays 60 s)
    key = TurnLock.key("slack:T:U", "C1", "t1")
    held = await client.get(key)
    impatient = TurnLock(Redis.from_url(redis_url), wait_seconds=0.1)
    with pytest.raises(QUnavailable):
        await _enter(impatient, "slack:T:U", "C1", "t1")  # no name: waits for the lease
    with pytest.raises(QUnavailable):
        async with impatient.hold("slack:T:U", "C1", "t1", "message-2"):
            pass  # the thread's next message waits too
    async with impatient.hold("slack:T:U", "C1", "t1", "message-1"):
        assert await client.get(key) == held  # the same turn, taken over
    assert await client.exists(key) == 0
    await first_run.__aexit__(None, None, None)  # (stops its renewals; it has nothing left to release)
    await client.aclose()
