import asyncio

from bot.keyed_locks import KeyedLocks


async def test_same_key_runs_one_at_a_time_other_keys_in_parallel_and_nothing_is_kept() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}

    async def work(key: str) -> None:
        async with locks.hold(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            await asyncio.sleep(0.05)
            inside[key] -= 1

    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(work(k) for k in "ab" * 5))
    elapsed = asyncio.get_running_loop().time() - started
    assert most == {"a": 1, "b": 1}
    assert elapsed < 0.45  # 0.25 per key side by side; 0.5 had a and b been serialised together
    assert len(locks) == 0


async def test_a_cancelled_waiter_releases_its_place() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            await release.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await first
    await asyncio.gather(waiter, return_exceptions=True)
    assert len(locks) == 0
