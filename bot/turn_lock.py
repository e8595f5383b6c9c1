"""One Q turn at a time per (user, thread), across every bot process sharing Redis.

Each turn's parentMessageId is the previous turn's answer, so two turns of one thread must not overlap: the
second would name a stale parent and Q would refuse it. In-process waiters queue on an asyncio lock; between
processes a `RedisLock` lease does the same: its holder renews it for as long as the turn takes, and a holder
that dies (crash, SIGKILL) leaves a lock that frees itself within `lease_seconds`, so the thread's next question
waits seconds, not minutes. A waiter gives up after `wait_seconds` with a message that says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from bot.errors import QUnavailable
from bot.keyed_locks import KeyedLocks
from bot.redis_lock import LEASE_SECONDS, RedisLock

PREFIX = "qbot:lock:turn:"


class TurnLock:
    def __init__(self, redis: Redis, *, lease_seconds: float = LEASE_SECONDS, wait_seconds: float = 150.0) -> None:
        self._redis = redis
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self._local: KeyedLocks[str] = KeyedLocks()

    @staticmethod
    def key(identity_key: str, channel: str, thread: str) -> str:
        """The thread's lock in Redis (hashed: thread ids are the platform's and may be long)."""
        return PREFIX + hashlib.sha256(f"{identity_key}\0{channel}\0{thread}".encode()).hexdigest()[:32]

    @asynccontextmanager
    async def hold(
        self, identity_key: str, channel: str, thread: str, turn: str | None = None
    ) -> AsyncIterator[RedisLock]:
        """The thread's turn, held until the block ends; the lease's `lost` tells whether it stayed ours.

        `turn` names the message being answered: its run again (its first worker died holding the lock) takes
        the lock over at once rather than waiting out the dead worker's lease."""
        key = self.key(identity_key, channel, thread)
        async with self._local.hold(key):
            lock = RedisLock(
                self._redis, key, ttl_seconds=self._lease_seconds, wait_seconds=self._wait_seconds, renew=True,
                holder=turn,
            )
            if not await lock.acquire():
                raise QUnavailable(
                    "Your previous question in this thread is still being answered. Please try again in a minute.",
                    detail=f"waited {self._wait_seconds:.0f}s for the turn lock {key}",
                )
            try:
                yield lock
            finally:
                await lock.release()  # never raises: a release Redis cannot take lapses with the lease
