"""Automatic group sync (`QBOT_GROUP_SYNC=true`): the IdP's `groups` claim, written to Q Business with PutGroup.

Each verified id_token (at link and at every refresh) tells us the groups of one user. `observe` records them
in Redis and, in the same atomic step, marks every group whose membership changed as dirty. A background
drainer writes dirty groups with PutGroup (administrator credentials), debounced so a burst of sign-ins costs
one PutGroup per group.

Never losing a change:
- the membership update and the dirty mark are one Lua script: Redis holds both or neither;
- a group leaves the dirty set only after its PutGroup succeeded, and only if no newer change arrived while
  the call was in flight (each change stamps the group with a fresh generation; the drainer removes the
  group only if the generation is still the one it wrote);
- the dirty set lives in Redis (persistent with appendonly), so a crash between a change and its PutGroup
  is caught up by the drain every replica runs when it starts, and by a periodic sweep;
- one drainer at a time across replicas (a Redis lock, renewed per group), so an older membership is never
  written after a newer one.

What Q Business then holds for a group is the set of bot users whose latest id_token names it: automatic
mode owns the groups it writes (`QBOT_GROUP_SYNC_GROUPS` limits which). An id_token without groups changes
nothing, because many IdPs leave the claim out of refreshed tokens or when a user has too many groups.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.aws_clients import AWS_ERRORS, AdminAws, describe
from bot.config import env_flag, env_seconds
from bot.errors import ConfigError
from bot.groups import IndexGroups, normalise_members
from bot.redis_lock import RedisLock
from bot.tasks import cancel_and_wait, pause

log = logging.getLogger(__name__)

# One hash tag: every key lands in the same slot of a Redis Cluster, so the scripts may touch them together.
PREFIX = "qbot:{groups}:"
USER_GROUPS = PREFIX + "user:"  # set per email: the groups the user's latest id_token named
MEMBERS = PREFIX + "members:"  # set per group: the emails of its members, as last seen
DIRTY = PREFIX + "dirty"  # hash: group -> generation of its latest change not yet written to Q
GENERATIONS = PREFIX + "generation"  # counter: a fresh, never reused generation per change
DRAIN_LOCK = PREFIX + "drain-lock"

_OBSERVE = """
local email, members_prefix = ARGV[1], ARGV[2]
local wanted, had, changed = {}, {}, {}
for i = 3, #ARGV do wanted[ARGV[i]] = true end
for _, group in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    had[group] = true
    if not wanted[group] then
        redis.call('SREM', members_prefix .. group, email)
        table.insert(changed, group)
    end
end
for i = 3, #ARGV do
    if not had[ARGV[i]] then
        redis.call('SADD', members_prefix .. ARGV[i], email)
        table.insert(changed, ARGV[i])
    end
end
if #changed > 0 then
    local generation = redis.call('INCR', KEYS[3])
    for _, group in ipairs(changed) do redis.call('HSET', KEYS[2], group, generation) end
    redis.call('DEL', KEYS[1])
    for i = 3, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
end
return changed
"""

# Clear the dirty mark only if no newer change came in while PutGroup was in flight.
_WRITTEN = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

class GroupObserver(Protocol):
    """What the core and the credential broker tell about each verified id_token."""

    async def observe(self, email: str, groups: Sequence[str]) -> None: ...


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class GroupSyncSettings:
    enabled: bool = False
    index_id: str = ""
    patterns: tuple[str, ...] = ("*",)
    debounce_seconds: float = 5.0
    sweep_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GroupSyncSettings:
        """QBOT_GROUP_SYNC [false], QBOT_Q_INDEX_ID, QBOT_GROUP_SYNC_GROUPS [*: comma-separated name patterns],
        QBOT_GROUP_SYNC_DEBOUNCE_SECONDS [5], QBOT_GROUP_SYNC_SWEEP_SECONDS [60]."""
        enabled = env_flag(env, "QBOT_GROUP_SYNC", False)
        index_id = env.get("QBOT_Q_INDEX_ID", "")
        if enabled and not index_id:
            raise ConfigError("QBOT_GROUP_SYNC=true needs QBOT_Q_INDEX_ID (`qbot admin provision` prints it)")
        patterns = tuple(p.strip() for p in (env.get("QBOT_GROUP_SYNC_GROUPS") or "*").split(",") if p.strip())
        return cls(
            enabled=enabled,
            index_id=index_id,
            patterns=patterns or ("*",),
            debounce_seconds=env_seconds(env, "QBOT_GROUP_SYNC_DEBOUNCE_SECONDS", 5.0),
            sweep_seconds=env_seconds(env, "QBOT_GROUP_SYNC_SWEEP_SECONDS", 60.0),
        )


@dataclass(frozen=True)
class DrainResult:
    written: int = 0
    failed: int = 0
    busy: bool = False  # another replica held the drain lock

    @property
    def retry_soon(self) -> bool:
        return self.failed > 0 or self.busy


class Memberships:
    """Who is in which group, as the IdP last said, and which groups Q Business has not been told yet."""

    def __init__(self, redis: Redis, patterns: Sequence[str] = ("*",)) -> None:
        self._redis = redis
        self._patterns = tuple(patterns)
        self._observe = redis.register_script(_OBSERVE)
        self._written = redis.register_script(_WRITTEN)

    def wanted(self, groups: Sequence[str]) -> list[str]:
        """The groups qbot manages among `groups` (QBOT_GROUP_SYNC_GROUPS), de-duplicated and sorted."""
        return sorted(
            {g for g in groups if g and any(fnmatch.fnmatchcase(g, pattern) for pattern in self._patterns)}
        )

    async def update(self, email: str, groups: Sequence[str]) -> list[str]:
        """Record the user's groups; returns the groups whose membership changed (now marked dirty)."""
        email = email.strip().lower()
        changed = await self._observe(
            keys=[USER_GROUPS + email, DIRTY, GENERATIONS], args=[email, MEMBERS, *self.wanted(groups)]
        )
        return [_text(group) for group in changed]

    async def groups_of(self, email: str) -> set[str]:
        return {_text(g) for g in await self._redis.smembers(USER_GROUPS + email.strip().lower())}

    async def dirty(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in (await self._redis.hgetall(DIRTY)).items()}

    async def snapshot(self, group: str) -> tuple[str | None, tuple[str, ...]]:
        """The group's pending generation and its members, read together (one transaction)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(DIRTY, group)
            pipe.smembers(MEMBERS + group)
            generation, members = await pipe.execute()
        return (_text(generation) if generation is not None else None), normalise_members(_text(m) for m in members)

    async def mark_written(self, group: str, generation: str) -> bool:
        return bool(await self._written(keys=[DIRTY], args=[group, generation]))


class GroupSync:
    """Records each user's groups (`observe`) and writes changed groups to Q Business in the background."""

    def __init__(
        self,
        redis: Redis,
        index: IndexGroups,
        *,
        executor: Executor | None = None,
        patterns: Sequence[str] = ("*",),
        debounce_seconds: float = 5.0,
        sweep_seconds: float = 60.0,
        retry_seconds: float = 2.0,
        lock_seconds: float = 60.0,
    ) -> None:
        self.memberships = Memberships(redis, patterns)
        self._redis = redis
        self._index = index
        self._executor = executor
        self._debounce = debounce_seconds
        self._sweep = sweep_seconds
        self._retry = retry_seconds
        self._lock_seconds = lock_seconds
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def observe(self, email: str, groups: Sequence[str]) -> None:
        """Never raises: a sign-in or a refresh must not fail because group sync could not record."""
        if not email or not groups:  # no groups claim: no information, not "in no group"
            return
        try:
            changed = await self.memberships.update(email, groups)
        except (RedisError, OSError) as err:
            log.warning("group sync could not record the groups of a user: %s", type(err).__name__)
            return
        if changed:
            log.info("group membership changed for %d group(s): %s", len(changed), ", ".join(changed))
            self._wake.set()

    # -- the drainer -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="group sync")

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Let a pass in progress finish (a PutGroup is not cut in half): the drainer ends by itself at its next
        wait, without a cancel (one lost in a library under load once left a shutdown waiting forever). Only a
        pass still running after `grace_seconds` is cancelled."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        _done, running = await asyncio.wait([task], timeout=grace_seconds)
        if running:
            await cancel_and_wait(task)

    async def _run(self) -> None:
        wait = 0.0  # catch up at once: changes a crashed process recorded but never wrote
        while True:
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass
            if self._stopping.is_set():  # checked after every wait: see stop()
                return
            if self._wake.is_set():
                self._wake.clear()
                # Let a burst of sign-ins settle into one write per group; a stop meanwhile leaves the changes
                # dirty in Redis for the next process.
                if await pause(self._debounce, self._stopping):
                    return
            try:
                result = await self.drain()
            except (RedisError, OSError) as err:
                log.warning("group sync cannot reach Redis: %s", type(err).__name__)
                result = DrainResult(busy=True)
            except Exception:  # the drainer must outlive any one bad pass: the dirty set keeps the work
                log.exception("group sync pass failed; retrying")
                result = DrainResult(busy=True)
            wait = self._retry if result.retry_soon else self._sweep

    async def drain(self) -> DrainResult:
        """Write every dirty group once (if no other replica is draining). Safe to call any time."""
        lock = RedisLock(self._redis, DRAIN_LOCK, ttl_seconds=self._lock_seconds)  # no wait: another replica drains
        if not await lock.acquire():
            return DrainResult(busy=True)
        written = failed = 0
        try:
            for group in sorted(await self.memberships.dirty()):
                if not await lock.extend():
                    log.warning("group sync lost its drain lock; another replica continues")
                    return DrainResult(written, failed, busy=True)
                generation, members = await self.memberships.snapshot(group)
                if generation is None:
                    continue
                try:
                    await self._off_loop(functools.partial(self._index.put, group, members))
                except AWS_ERRORS as err:
                    failed += 1
                    log.warning("PutGroup %s failed (kept for a retry): %s", group, describe(err))
                    continue
                written += 1
                if not await self.memberships.mark_written(group, generation):
                    log.info("group %s changed again while it was written; writing it once more", group)
                log.info("PutGroup %s: %d member(s)", group, len(members))
        finally:
            await lock.release()
        return DrainResult(written, failed)

    async def _off_loop(self, call: functools.partial[None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, call)


def build_group_sync(
    env: Mapping[str, str], redis: Redis, *, application_id: str, region: str, executor: Executor | None
) -> GroupSync | None:
    """The composition root's hook: a GroupSync when QBOT_GROUP_SYNC=true, else None. PutGroup goes out with
    the bot's own AWS credentials (default chain, or QBOT_AWS_PROFILE), not a user's."""
    settings = GroupSyncSettings.from_env(env)
    if not settings.enabled:
        return None
    client = AdminAws.from_env(env, region=region).qbusiness()
    return GroupSync(
        redis,
        IndexGroups(client, application_id, settings.index_id),
        executor=executor,
        patterns=settings.patterns,
        debounce_seconds=settings.debounce_seconds,
        sweep_seconds=settings.sweep_seconds,
    )
