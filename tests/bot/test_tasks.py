"""Stopping background tasks: a cancel that a library loses must not leave the stopper waiting forever."""

from __future__ import annotations

import asyncio

from bot.tasks import cancel_and_wait


async def test_a_task_that_loses_a_cancel_is_cancelled_again_until_it_ends() -> None:
    cancels_seen = 0

    async def loses_the_first_cancel() -> None:
        nonlocal cancels_seen
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels_seen += 1
                if cancels_seen == 2:
                    raise
                # ... swallowed, as a library catching it at the wrong moment would

    task = asyncio.create_task(loses_the_first_cancel())
    await asyncio.sleep(0)  # running, in its sleep

    await asyncio.wait_for(cancel_and_wait(task), 30)  # the bound only turns a hang into a failure

    assert task.cancelled() and cancels_seen == 2


async def test_the_callers_own_cancel_still_propagates() -> None:
    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(3600)  # a cleanup that takes its time

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0)

    stopper.cancel()  # a shutdown deadline gives up on the stop

    assert (await asyncio.gather(stopper, return_exceptions=True))[0].__class__ is asyncio.CancelledError
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
