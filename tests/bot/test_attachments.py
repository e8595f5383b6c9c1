"""The download budget: never more held than the process total or a user's cap, first come first served,
everything given back when a turn ends, however it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bot.attachments import MB, DownloadBudget
from bot.errors import ConfigError


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until `condition` holds (a bounded number of loop turns)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_room_is_reserved_per_user_and_in_total_and_given_back_when_the_turn_ends() -> None:
    budget = DownloadBudget(total_bytes=10, per_user_bytes=6, wait_seconds=0)
    async with budget.turn("alice") as alice:
        admitted = await alice.reserve([3, 3, 3])  # the third would pass alice's cap of 6
        assert admitted.count == 2 and "at most" in admitted.refusal
        assert [n.name for n in admitted.notes(["a", "b", "c"])] == ["c"]
        async with budget.turn("bob") as bob:
            assert (await bob.reserve([4])).count == 1
            async with budget.turn("carol") as carol:
                refused = await carol.reserve([1])  # 6 + 4 held: the total is spent and nobody may wait
                assert refused.count == 0 and "busy" in refused.refusal
            assert not bob.try_more(1)
            bob.give_back(4)
            assert bob.try_more(2) and budget.held == 8
        assert budget.held == 6 and budget.held_by("bob") == 0
    assert budget.held == 0 and budget.high_water == 10


async def test_waiters_are_served_in_order_and_a_turn_ending_any_way_gives_everything_back() -> None:
    budget = DownloadBudget(total_bytes=10, per_user_bytes=10, wait_seconds=30)
    order: list[str] = []
    release = asyncio.Event()

    async def turn(owner: str, size: int, hold: asyncio.Event | None = None) -> None:
        async with budget.turn(owner) as allowance:
            assert (await allowance.reserve([size])).count == 1
            order.append(owner)
            if hold is not None:
                await hold.wait()

    first = asyncio.create_task(turn("alice", 8, release))
    await until(lambda: budget.held == 8)
    big = asyncio.create_task(turn("bob", 9))
    await until(lambda: len(budget._waiters) == 1)
    small = asyncio.create_task(turn("carol", 2))  # would fit now, but bob came first
    await until(lambda: len(budget._waiters) == 2)
    assert order == ["alice"] and budget.held == 8
    release.set()
    await asyncio.gather(first, big, small)
    assert order == ["alice", "bob", "carol"] and budget.held == 0
    assert budget.high_water <= 10

    async def failing() -> None:
        async with budget.turn("dave") as allowance:
            await allowance.reserve([5])
            raise RuntimeError("ChatSync failed")

    with pytest.raises(RuntimeError):
        await failing()
    waiting_behind = asyncio.create_task(turn("erin", 10, asyncio.Event()))
    await until(lambda: budget.held == 10)
    cancelled = asyncio.create_task(turn("frank", 5))
    await until(lambda: len(budget._waiters) == 1)
    cancelled.cancel()
    waiting_behind.cancel()
    await asyncio.gather(cancelled, waiting_behind, return_exceptions=True)
    assert budget.held == 0 and not budget._by_owner


def test_settings() -> None:
    budget = DownloadBudget.from_env({"QBOT_FILE_BUDGET_MB": "40", "QBOT_FILE_WAIT_SECONDS": "5"})
    assert (budget.total_bytes, budget.per_user_bytes, budget.wait_seconds) == (40 * MB, 40 * MB, 5)
    assert DownloadBudget.from_env({}).per_user_bytes == 50 * MB
    for bad in ({"QBOT_FILE_BUDGET_MB": "0"}, {"QBOT_FILE_BUDGET_PER_USER_MB": "lots"}):
        with pytest.raises(ConfigError):
            DownloadBudget.from_env(bad)
