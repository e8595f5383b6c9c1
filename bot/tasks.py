"""Stopping a background task of our own."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

RECANCEL_SECONDS = 1.0


async def pause(seconds: float, stop: asyncio.Event) -> bool:
    """Sleep `seconds`, or until `stop` is set if that comes first; True if it is set. A loop that pauses with it
    between rounds never sleeps through a stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended. Unlike awaiting it under `suppress(CancelledError)`, a cancel of
    the caller itself (a shutdown, a timeout) is not swallowed: it still propagates from here.

    A cancel can be lost: on Python 3.11, asyncio.wait_for (which redis-py puts around every socket write)
    returns normally when a cancel lands as the awaited write completes (fixed in 3.12); a task writing to Redis
    then runs on, and a caller waiting for it would wait forever. So the cancel is repeated until the task has
    ended."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=RECANCEL_SECONDS)
