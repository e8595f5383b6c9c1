"""Stopping a background task of our own."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended. Unlike awaiting it under `suppress(CancelledError)`, a cancel of
    the caller itself (a shutdown, a timeout) is not swallowed: it still propagates from here."""
    task.cancel()
    await asyncio.wait([task])
