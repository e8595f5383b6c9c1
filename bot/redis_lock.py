"""One holder at a time across every process sharing Redis: the lock under the broker's credential flight, a
thread's turn and group sync's drainer.

Guarantees:
- taken with SET NX PX and a random token, so at most one holder at a time, and a holder that dies without
  releasing frees the lock when its TTL runs out (callers choose a TTL longer than their longest hold);
- released and extended only by compare-and-delete / compare-and-expire on our token, in one Lua step: a lock
  that expired and was taken by another process is never released or prolonged by us;
- a waiter's patience is bounded: it retries with short, jittered, capped backoff until its deadline, and then
  gives up (the caller tells the user in its own words).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from redis.asyncio import Redis

_RELEASE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_EXTEND_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

FIRST_DELAY = 0.01  # seconds between the first attempts: a short hold is caught quickly
MAX_DELAY = 0.2  # the backoff's cap: a long hold costs a waiter at most ~5 Redis round trips a second


class LockTimeout(TimeoutError):
    """The lock stayed with another holder for longer than the waiter's patience."""

    def __init__(self, key: str, waited: float) -> None:
        super().__init__(f"waited {waited:.0f}s for the lock {key}")
        self.key = key


class RedisLock:
    """A lock on one Redis key. `acquire`/`release` (or `async with`), `extend` to keep holding it longer.

    One instance is one would-be holder: it draws its own token, so give each acquirer its own instance.
    """

    def __init__(self, redis: Redis, key: str, *, ttl_seconds: float, wait_seconds: float = 0.0) -> None:
        self.key = key
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._wait_seconds = wait_seconds
        self._token = secrets.token_hex(16)
        self._release = redis.register_script(_RELEASE_IF_HELD)
        self._extend = redis.register_script(_EXTEND_IF_HELD)

    async def acquire(self, *, stop_waiting: Callable[[], Awaitable[bool]] | None = None) -> bool:
        """Take the lock, waiting up to `wait_seconds` for its holder; False if it was not taken.

        `stop_waiting`, asked between attempts, ends the wait early (False) once the holder's work makes ours
        moot, e.g. it has cached what we were about to compute.
        """
        deadline = time.monotonic() + self._wait_seconds
        delay = FIRST_DELAY
        while not await self._redis.set(self.key, self._token, nx=True, px=self._ttl_ms):
            if stop_waiting is not None and await stop_waiting():
                return False
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: waiters do not retry in lockstep
            delay = min(delay * 2, MAX_DELAY)
        return True

    async def extend(self) -> bool:
        """Hold the lock for a full TTL from now; False if it is no longer ours (it expired meanwhile)."""
        return bool(await self._extend(keys=[self.key], args=[self._token, self._ttl_ms]))

    async def release(self) -> bool:
        """Let the lock go if it is still ours; False if it had expired (and maybe been taken by another)."""
        return bool(await self._release(keys=[self.key], args=[self._token]))

    async def __aenter__(self) -> RedisLock:
        if not await self.acquire():
            raise LockTimeout(self.key, self._wait_seconds)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.release()
