"""Durable turns: a question is taken by appending it to a Redis Stream, and answered by whichever worker reads it.

Receiving (the platform's HTTP request, before it is acknowledged) is one atomic Redis step: the delivery's
names are checked and recorded, and the turn is appended, sealed (it holds the user's words), to the stream.
Only then does the adapter acknowledge, so a question Redis could not store is not acknowledged and the
platform redelivers it. Workers in every bot process read the stream through one consumer group and
acknowledge an entry only when its turn is over (the answer delivered, or the user told why not).

A worker renews its claim on the entries it works on (XCLAIM of its own entries resets their idle time), so an
entry idle for longer than `claim_idle_seconds` belongs to a worker that died: another worker claims it
(XAUTOCLAIM) and runs the turn again. Running a turn again is idempotent end to end: the same ChatSync
clientToken, the same placeholder, no second answer (the adapter's handler sees `attempt` > 1).

Every key shares the `{qbot:turns}` hash tag, so the atomic step works on Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bot.cipher import CipherError, TokenCipher
from bot.tasks import cancel_and_wait, pause

log = logging.getLogger(__name__)

STREAM = "{qbot:turns}:stream"
SEEN_PREFIX = "{qbot:turns}:seen:"
GROUP = "qbot-workers"
SEEN_SECONDS = 3600  # longer than any platform keeps redelivering
MAX_CLAIM_PAGES = 10  # XAUTOCLAIM pages per tick: each call looks at a bounded run of pending entries

# KEYS: the stream, then one seen-key per delivery name. ARGV: seen ttl, max stream length, then field/value pairs.
_SUBMIT = """
local fresh = true
for i = 2, #KEYS do
    if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) == false then fresh = false end
end
if not fresh then return false end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
"""


class TurnNotStored(Exception):
    """Redis could not take the turn: do not acknowledge it (the platform redelivers), or tell the user."""


@dataclass(frozen=True)
class QueuedTurn:
    entry_id: str
    platform: str
    payload: str  # the adapter's own serialization of the turn, opened
    enqueued_at: float
    attempt: int  # 1 the first time a worker runs it; more when it was claimed from a worker that died


Handler = Callable[[QueuedTurn], Awaitable[None]]


class TurnQueue:
    """The stream: `submit` on receipt, and what workers need to read, renew, claim and finish entries."""

    def __init__(
        self,
        redis: Redis,
        cipher: TokenCipher,
        *,
        claim_idle_seconds: float = 15.0,
        max_length: int = 100_000,
    ) -> None:
        self.redis = redis
        self._cipher = cipher
        self.claim_idle_seconds = claim_idle_seconds
        self._max_length = max_length
        self._submit = redis.register_script(_SUBMIT)
        self.handlers: dict[str, Handler] = {}

    def on_turn(self, platform: str, handler: Handler) -> None:
        """An adapter names how its turns are run (in whichever process's worker reads them)."""
        self.handlers[platform] = handler

    async def submit(self, platform: str, delivery_ids: Sequence[str], payload: str) -> bool:
        """Append a received turn, once per delivery: False when any of its names was seen before (a
        redelivery). Raises `TurnNotStored` when Redis could not take it: then do not acknowledge it."""
        seen = [SEEN_PREFIX + hashlib.sha256(f"{platform}\0{name}".encode()).hexdigest()[:32] for name in delivery_ids]
        blob = self._cipher.seal(STREAM, {"p": platform, "b": payload})
        try:
            entry = await self._submit(
                keys=[STREAM, *seen],
                args=[SEEN_SECONDS, self._max_length, "p", platform, "b", blob, "t", repr(time.time())],
            )
        except RedisError as exc:
            raise TurnNotStored(f"{type(exc).__name__}: {exc}") from exc
        return entry is not None

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def open(self, entry_id: bytes | str, fields: Mapping[bytes, bytes] | None, attempt: int) -> QueuedTurn | None:
        """The turn in a stream entry, or None when it is gone (trimmed) or cannot be opened."""
        ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        if not fields:
            return None
        try:
            sealed = self._cipher.open(STREAM, fields[b"b"])
            return QueuedTurn(ident, str(sealed["p"]), str(sealed["b"]), float(fields[b"t"]), attempt)
        except (CipherError, KeyError, TypeError, ValueError):
            log.error("dropped stream entry %s: it cannot be opened (tampered, or sealed under a retired key)", ident)
            return None

    async def finish(self, entry_id: str) -> None:
        """The turn is over: acknowledge and remove the entry (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.xdel(STREAM, entry_id)
            await pipe.execute()

    async def stats(self) -> dict[str, float]:
        """For /metrics: entries waiting or in work, entries in work, and the age of the oldest one."""
        length = await self.redis.xlen(STREAM)
        pending = 0
        oldest = 0.0
        try:
            summary = await self.redis.xpending(STREAM, GROUP)
            pending = int(summary.get("pending") or 0)
        except ResponseError:  # no group yet
            pass
        first: Any = await self.redis.xrange(STREAM, count=1)
        if first:
            _, fields = first[0]
            with contextlib.suppress(KeyError, ValueError):
                oldest = max(0.0, time.time() - float(fields[b"t"]))
        return {"length": float(length), "pending": float(pending), "oldest_age_seconds": oldest}


def consumer_name() -> str:
    """This process, as the consumer group knows it (host and pid: unique while it lives)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class TurnWorkers:
    """Read turns from the stream and run them, at most `concurrency` at once (the rest wait in the stream, not
    in memory); renew the entries in work; claim the entries of workers that died."""

    def __init__(
        self,
        queue: TurnQueue,
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 64,
        consumer: str | None = None,
        block_seconds: float = 1.0,
        on_claimed: Callable[[int], None] | None = None,
    ) -> None:
        self.queue = queue
        self.handlers = handlers  # read at each turn: adapters may register after the workers are made
        self.concurrency = max(1, concurrency)
        self.consumer = consumer or consumer_name()
        self._block_ms = max(1, int(block_seconds * 1000))
        self._on_claimed = on_claimed
        self._in_work: dict[str, asyncio.Task[None]] = {}
        self._finishing: set[str] = set()  # in work, answered, being acknowledged (gone from the pending list)
        self._room = asyncio.Event()
        self._room.set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()  # (waited on between claim ticks: a stop is never slept through)
        self.claimed = 0  # turns taken over from workers that died, since start
        self._claim_cursor = "0-0"

    @property
    def in_work(self) -> int:
        return len(self._in_work)

    async def start(self) -> None:
        try:
            await self.queue.ensure_group()
        except RedisError as exc:  # Redis is away at start-up: the read loop makes the group once it is back
            log.warning("turn stream not ready yet (%s)", type(exc).__name__)
        self._stopping.clear()
        self._loops = [
            asyncio.create_task(self._keep(self._read_once, "read")),
            asyncio.create_task(self._keep(self._renew_and_claim, "claim", every=self._tick)),
        ]

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop reading; let turns in work finish briefly; the rest stay pending and another worker takes them."""
        self._stopping.set()
        await asyncio.gather(*(cancel_and_wait(loop) for loop in self._loops))
        self._loops = []
        if self._in_work:
            _done, pending = await asyncio.wait(set(self._in_work.values()), timeout=grace_seconds)
            await asyncio.gather(*(cancel_and_wait(task) for task in pending))

    @property
    def _tick(self) -> float:
        return max(0.05, self.queue.claim_idle_seconds / 3)

    async def _keep(self, step: Callable[[], Awaitable[None]], what: str, every: float = 0.0) -> None:
        """Run `step` forever; Redis being away is waited out with capped backoff, never the end of the loop."""
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await step()
                backoff = 0.1
                if every:
                    await pause(every, self._stopping)
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                log.warning("turn stream %s: Redis unavailable (%s); retrying", what, type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                log.exception("turn stream %s failed; retrying", what)
                await asyncio.sleep(1.0)

    async def _read_once(self) -> None:
        await self._room.wait()
        room = self.concurrency - len(self._in_work)
        if room <= 0:
            self._room.clear()
            return
        try:
            answer: Any = await self.queue.redis.xreadgroup(
                GROUP, self.consumer, {STREAM: ">"}, count=room, block=self._block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.queue.ensure_group()  # the stream or group is gone (a Redis without persistence restarted)
            return
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                self._run(entry_id, fields, attempt=1)

    async def _renew_and_claim(self) -> None:
        await self._renew()
        room = self.concurrency - len(self._in_work)
        idle_ms = int(self.queue.claim_idle_seconds * 1000)
        for _ in range(MAX_CLAIM_PAGES):  # the whole pending list, a page at a time, from where the last tick left
            if room <= 0:
                return
            result: Any = await self.queue.redis.xautoclaim(
                STREAM, GROUP, self.consumer, idle_ms, self._claim_cursor, count=room
            )
            cursor = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
            claimed = [(entry_id, fields) for entry_id, fields in result[1] if entry_id is not None]
            self.claimed += len(claimed)
            if claimed and self._on_claimed is not None:
                self._on_claimed(len(claimed))
            for entry_id, fields in claimed:
                ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                if ident in self._in_work:
                    continue
                log.warning("claimed turn %s from a worker that stopped renewing it", ident)
                self._run(entry_id, fields, attempt=2)
                room -= 1
            self._claim_cursor = cursor
            if cursor == "0-0":  # went round the whole list
                return

    async def _renew(self) -> None:
        """Reset the idle time of the entries in work that are still ours, so no worker takes them from us. One
        another worker took over (we were too slow to renew) is left to it: claiming it back would run it twice."""
        if not self._in_work:
            return
        redis = self.queue.redis
        pending: Any = await redis.xpending_range(
            STREAM, GROUP, "-", "+", len(self._in_work) + 100, consumername=self.consumer
        )
        ours = {p["message_id"].decode() if isinstance(p["message_id"], bytes) else p["message_id"] for p in pending}
        mine: list[Any] = [ident for ident in self._in_work if ident in ours]
        lost = len(self._in_work) - len(mine) - len(self._finishing - ours)
        if lost:
            log.warning("%d turn(s) in work here were taken over by another worker", lost)
        if mine:
            await redis.xclaim(STREAM, GROUP, self.consumer, 0, mine, justid=True)

    def _run(self, entry_id: bytes | str, fields: Mapping[bytes, bytes] | None, *, attempt: int) -> None:
        ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        task = asyncio.create_task(self._work(ident, fields, attempt))
        self._in_work[ident] = task
        task.add_done_callback(lambda _t: self._done(ident))
        if len(self._in_work) >= self.concurrency:
            self._room.clear()

    def _done(self, ident: str) -> None:
        self._in_work.pop(ident, None)
        self._finishing.discard(ident)
        self._room.set()

    async def _work(self, ident: str, fields: Mapping[bytes, bytes] | None, attempt: int) -> None:
        turn = self.queue.open(ident, fields, attempt)
        handler = self.handlers.get(turn.platform) if turn is not None else None
        if turn is not None and handler is None:
            log.error("no worker for %s turns here: turn %s left for a process that has one", turn.platform, ident)
            return  # stays pending: a process with that adapter claims it
        try:
            if turn is not None and handler is not None:
                await handler(turn)
        except asyncio.CancelledError:
            raise  # stopping: the entry stays pending and another worker claims it
        except Exception:
            log.exception("turn %s failed; it is not run again", ident)
        self._finishing.add(ident)
        await self._finish(ident)

    async def _finish(self, ident: str) -> None:
        """Acknowledge, waiting out a Redis blip (bounded): an entry left pending would be run again."""
        delay = 0.1
        for _ in range(12):
            try:
                await self.queue.finish(ident)
                return
            except RedisError as exc:
                log.warning("could not acknowledge turn %s yet (%s)", ident, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.error("turn %s stays pending: Redis was away too long; it will be claimed and run again", ident)
