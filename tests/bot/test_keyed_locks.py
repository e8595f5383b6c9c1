import asyncio

from bot.keyed_locks import KeyedLocks


async def test_same_key_runs_one_at_a_time_and_nothing_is_kept() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside = most = 0

    async def work() -> None:
        nonlocal inside, most
        async with locks.hold("a"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(work() for _ in range(5)))
    assert most == 1
    assert len(locks) == 0


async def test_other_keys_are_not_held_up() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    release = asyncio.Event()
    entered = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("a"):
            entered.set()
            await release.wait()

    held = asyncio.create_task(holder())
    await entered.wait()
    async with asyncio.timeout(10):  # a guard: were keys serialised together, this would never enter
        async with locks.hold("b"):
            assert len(locks) == 2
    release.set()
    await held
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
