import asyncio

from redis.asyncio import Redis

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
    # other threads and other users are not held up
    async with locks[0].hold("slack:T:U", "C1", "t1"):
        await asyncio.wait_for(_enter(locks[1], "slack:T:U", "C1", "t2"), 1)
        await asyncio.wait_for(_enter(locks[1], "slack:T:V", "C1", "t1"), 1)
    await one.aclose()
    await two.aclose()


async def _enter(lock: TurnLock, who: str, channel: str, thread: str) -> None:
    async with lock.hold(who, channel, thread):
        pass


async def test_a_dead_holders_lock_frees_itself(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    crashed = TurnLock(client, hold_seconds=1.0)
    holder = crashed.hold("web::s1", "web", "t")
    await holder.__aenter__()  # the holder dies without releasing
    survivor = TurnLock(client, hold_seconds=1.0, wait_seconds=10)
    started = asyncio.get_running_loop().time()
    await _enter(survivor, "web::s1", "web", "t")
    assert 0.3 < asyncio.get_running_loop().time() - started < 5  # it waited for the lock to expire
    await client.aclose()
