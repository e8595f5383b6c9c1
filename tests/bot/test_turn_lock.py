import asyncio

import pytest
from redis.asyncio import Redis

from bot.errors import QUnavailable
from bot.turn_lock import TurnLock


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


async def test_a_dead_holders_lock_frees_itself(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    crashed = TurnLock(client, hold_seconds=0.3)
    holder = crashed.hold("web::s1", "web", "t")
    await holder.__aenter__()  # the holder dies without releasing
    key = TurnLock.key("web::s1", "web", "t")
    held_by_the_dead = await client.get(key)
    survivor = TurnLock(client, hold_seconds=10, wait_seconds=10)
    async with survivor.hold("web::s1", "web", "t"):
        assert await client.get(key) not in (None, held_by_the_dead)  # the survivor's own, after expiry
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
