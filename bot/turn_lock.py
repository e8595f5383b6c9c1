"""One Q turn at a time per (user, thread), across every bot process sharing Redis.

Each turn's parentMessageId is the previous turn's answer, so two turns of one thread must not overlap: the
second would name a stale parent and Q would refuse it. In-process waiters queue on an asyncio lock; between
processes a Redis lock (SET NX PX with a random token, released by compare-and-delete) does the same. The
lock outlives the longest turn and frees itself if its holder dies.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from bot.errors import QUnavailable
from bot.keyed_locks import KeyedLocks
from bot.redis_lock import RELEASE_IF_HELD

PREFIX = "qbot:lock:turn:"


class TurnLock:
    def __init__(self, redis: Redis, *, hold_seconds: float = 120.0, wait_seconds: float = 150.0) -> None:
        self._redis = redis
        self._hold_ms = int(hold_seconds * 1000)
        self._wait_seconds = wait_seconds
        self._local: KeyedLocks[str] = KeyedLocks()
        self._release = redis.register_script(RELEASE_IF_HELD)

    @asynccontextmanager
    async def hold(self, identity_key: str, channel: str, thread: str) -> AsyncIterator[None]:
        digest = hashlib.sha256(f"{identity_key}\0{channel}\0{thread}".encode()).hexdigest()[:32]
        key = PREFIX + digest
        async with self._local.hold(key):
            token = secrets.token_hex(16)
            await self._acquire(key, token)
            try:
                yield
            finally:
                await self._release(keys=[key], args=[token])

    async def _acquire(self, key: str, token: str) -> None:
        deadline = time.monotonic() + self._wait_seconds
        delay = 0.01
        while not await self._redis.set(key, token, nx=True, px=self._hold_ms):
            if time.monotonic() >= deadline:
                raise QUnavailable(
                    "Your previous question in this thread is still being answered. Please try again in a minute.",
                    detail=f"waited {self._wait_seconds:.0f}s for the turn lock {key}",
                )
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)
