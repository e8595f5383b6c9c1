"""One holder at a time across every process sharing Redis: the lock under the broker's credential flight, a
thread's turn and group sync's drainer.

Guarantees:
- taken with SET NX PX and a random token, so at most one holder at a time, and a holder that dies without
  releasing frees the lock when its TTL runs out;
- as a lease (`renew=True`) the TTL is short and the holder renews it every third of it while it holds the lock,
  so a live holder keeps it for as long as its work takes and a dead one's lock frees within one TTL; a holder
  whose renewal finds the lock gone (or cannot reach Redis for a whole TTL) is told (`lost`), never cancelled;
- released and extended only by compare-and-delete / compare-and-expire on our token, in one Lua step: a lock
  that expired and was taken by another process is never released or prolonged by us;
- a waiter's patience is bounded: it retries with short, jittered, capped backoff until its deadline, and then
  gives up (the caller tells the user in its own words);
- releasing never raises: a release Redis cannot take is logged, and the lock frees when its TTL runs out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")

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
LEASE_SECONDS = 10.0  # a lease's TTL: how long a crashed holder's lock outlives it


class LockTimeout(TimeoutError):
    """The lock stayed with another holder for longer than the waiter's patience."""

    def __init__(self, key: str, waited: float) -> None:
        super().__init__(f"waited {waited:.0f}s for the lock {key}")
        self.key = key


class RedisLock:
    """A lock on one Redis key. `acquire`/`release` (or `async with`), `extend` to keep holding it longer.

    One instance is one would-be holder: it draws its own token, so give each acquirer its own instance. With
    `renew=True` it is a lease: held, it renews itself in the background until released, and sets `lost` if it
    finds the lock is no longer its own (the caller decides whether to go on).
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        *,
        ttl_seconds: float,
        wait_seconds: float = 0.0,
        renew: bool = False,
        holder: str | None = None,
    ) -> None:
        self.key = key
        self.lost = asyncio.Event()  # a lease found taken by another, or unrenewable for a whole TTL
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._wait_seconds = wait_seconds
        self._renew = renew
        self._renewal: asyncio.Task[None] | None = None
        self._released = False  # the renewal's stop signal: a cancel a Redis call swallows must not outlive us
        self._let_go = False  # released inside another atomic step (`let_go_in`): nothing left to release
        # A named holder (the same piece of work, run again by another process after its first runner died)
        # takes the lock over at once instead of waiting for the dead runner's lease to lapse.
        self._token = hashlib.sha256(holder.encode()).hexdigest()[:32] if holder else secrets.token_hex(16)
        self._reenter = holder is not None
        self._release = redis.register_script(_RELEASE_IF_HELD)
        self._extend = redis.register_script(_EXTEND_IF_HELD)

    async def acquire(self, *, stop_waiting: Callable[[], Awaitable[bool]] | None = None) -> bool:
        """Take the lock, waiting up to `wait_seconds` for its holder; False if it was not taken.

        `stop_waiting`, asked between attempts, ends the wait early (False) once the holder's work makes ours
        moot, e.g. it has cached what we were about to compute.
        """
        deadline = time.monotonic() + self._wait_seconds
        delay = FIRST_DELAY
        while not await self._take():
            if stop_waiting is not None and await stop_waiting():
                return False
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: waiters do not retry in lockstep
            delay = min(delay * 2, MAX_DELAY)
        self._let_go = False
        if self._renew:
            self.lost.clear()
            self._released = False
            self._renewal = asyncio.create_task(self._keep_renewed(), name=f"lease {self.key}")
        return True

    async def _take(self) -> bool:
        if await self._redis.set(self.key, self._token, nx=True, px=self._ttl_ms):
            return True
        return self._reenter and await self.extend()  # held under our own name: a run of ours that died

    async def extend(self) -> bool:
        """Hold the lock for a full TTL from now; False if it is no longer ours (it expired meanwhile)."""
        return bool(await self._extend(keys=[self.key], args=[self._token, self._ttl_ms]))

    @property
    def token(self) -> str:
        """This holder's value in the lock's key: a step that releases the lock compares it first."""
        return self._token

    async def let_go_in(self, step: Callable[[], Awaitable[T]]) -> T:
        """Release the lock inside another atomic Redis step, saving a round trip: `step` must delete `key` only
        if it still holds `token`; its result is returned. The renewal stops first; if `step` fails, the lock is
        still ours and `release` lets it go as usual."""
        await self._stop_renewing()
        result = await step()
        self._let_go = True
        return result

    async def _stop_renewing(self) -> None:
        if self._renewal is not None:
            self._released = True
            await cancel_and_wait(self._renewal)
            self._renewal = None

    async def release(self) -> bool:
        """Stop renewing and let the lock go if it is still ours; False if it had expired (and maybe been taken
        by another), or if Redis could not be told (then it frees itself when its TTL runs out)."""
        await self._stop_renewing()
        if self._let_go:
            return False  # already let go with the step that ended the work under it
        try:
            return bool(await self._release(keys=[self.key], args=[self._token]))
        except (RedisError, OSError) as exc:
            log.warning("could not release the lock %s (%s); it frees itself within its TTL", self.key, exc)
            return False

    async def _keep_renewed(self) -> None:
        """The lease's heartbeat: renew every third of the TTL, so two renewals may fail before it lapses."""
        ttl = self._ttl_ms / 1000
        renewed_at = time.monotonic()
        # Checked as well as cancelled: the cancel `release` sends can be lost inside the Redis client (on Python
        # 3.11, the asyncio.wait_for redis-py puts around a socket write swallows a cancel landing as the write
        # completes), and renewing on would hold the lock, and the turn waiting for this task, until cancel_and_wait
        # cancels again.
        while not self._released:
            await asyncio.sleep(ttl / 3)
            try:
                held = await self.extend()
            except (RedisError, OSError) as exc:
                log.warning("could not renew the lease %s: %s", self.key, type(exc).__name__)
                held = time.monotonic() - renewed_at < ttl  # unrenewed for a whole TTL: it may be another's now
            else:
                renewed_at = time.monotonic() if held else renewed_at
            if not held:
                log.warning("lost the lease %s while holding it", self.key)
                self.lost.set()
                return

    async def __aenter__(self) -> RedisLock:
        if not await self.acquire():
            raise LockTimeout(self.key, self._wait_seconds)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.release()
