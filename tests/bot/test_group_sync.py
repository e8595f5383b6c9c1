"""Automatic group sync on real Redis, writing to the sandbox's Q Business with PutGroup over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bot.config import Settings
from bot.errors import ConfigError
from bot.group_sync import DIRTY, DRAIN_LOCK, GroupSync, GroupSyncSettings, build_group_sync
from bot.groups import IndexGroups
from sandbox.credentials import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY
from sandbox.world import APP_ID, INDEX_ID, Sandbox
from tests.conftest import until


def admin_q(sandbox: Sandbox) -> Any:
    return boto3.client(
        "qbusiness",
        endpoint_url=sandbox.q_url,
        region_name="us-east-1",
        aws_access_key_id=ADMIN_ACCESS_KEY_ID,
        aws_secret_access_key=ADMIN_SECRET_ACCESS_KEY,
    )


def index_groups(sandbox: Sandbox, index_id: str = INDEX_ID) -> IndexGroups:
    return IndexGroups(admin_q(sandbox), APP_ID, index_id)


def members_at_q(sandbox: Sandbox, group: str) -> list[str] | None:
    found = sandbox.q.control.index(APP_ID, INDEX_ID).groups.get(("", group))
    return sorted(found.member_users) if found else None


def make_sync(redis: Redis, sandbox: Sandbox, **options: object) -> GroupSync:
    options = {"debounce_seconds": 0.05, "sweep_seconds": 0.2, **options}
    return GroupSync(redis, index_groups(sandbox), **options)  # type: ignore[arg-type]


async def test_observing_marks_only_changed_groups_and_drain_writes_them(redis: Redis, sandbox: Sandbox) -> None:
    sync = make_sync(redis, sandbox)
    await sync.observe("Alice@Example.com", ["core-team", "engineering"])
    await sync.observe("bob@example.com", ["core-team", "core-team"])
    assert set(await sync.memberships.dirty()) == {"core-team", "engineering"}

    result = await sync.drain()

    assert (result.written, result.failed) == (2, 0)
    assert members_at_q(sandbox, "core-team") == ["alice@example.com", "bob@example.com"]
    assert members_at_q(sandbox, "engineering") == ["alice@example.com"]
    assert await sync.memberships.dirty() == {}

    await sync.observe("bob@example.com", ["core-team"])  # the same groups again: nothing to write
    assert await sync.memberships.dirty() == {}
    await sync.observe("bob@example.com", ["sales"])  # bob left core-team
    assert set(await sync.memberships.dirty()) == {"core-team", "sales"}
    await sync.drain()
    assert members_at_q(sandbox, "core-team") == ["alice@example.com"]
    assert members_at_q(sandbox, "sales") == ["bob@example.com"]


async def test_a_token_without_groups_changes_nothing(redis: Redis, sandbox: Sandbox) -> None:
    sync = make_sync(redis, sandbox)
    await sync.observe("alice@example.com", ["core-team"])
    await sync.drain()
    await sync.observe("alice@example.com", [])  # an IdP that left the claim out of a refreshed token
    assert await sync.memberships.dirty() == {}
    assert await sync.memberships.groups_of("alice@example.com") == {"core-team"}


async def test_only_groups_matching_the_patterns_are_managed(redis: Redis, sandbox: Sandbox) -> None:
    sync = make_sync(redis, sandbox, patterns=("core-*", "eng*"))
    await sync.observe("alice@example.com", ["core-team", "engineering", "Everyone", "sales"])
    assert set(await sync.memberships.dirty()) == {"core-team", "engineering"}


async def test_a_crash_before_putgroup_is_caught_up_when_the_next_process_starts(
    redis: Redis, sandbox: Sandbox
) -> None:
    crashed = make_sync(redis, sandbox)
    await crashed.observe("alice@example.com", ["core-team"])
    await crashed.observe("bob@example.com", ["core-team"])
    # ... the process dies here, before its drainer ran: Redis holds the change, Q Business does not.
    assert sandbox.q.stats.put_group_calls == 0

    restarted = make_sync(redis, sandbox)
    await restarted.start()
    try:
        await until(lambda: members_at_q(sandbox, "core-team") == ["alice@example.com", "bob@example.com"])
    finally:
        await restarted.stop()
    assert sandbox.q.stats.put_group_calls == 1
    assert await restarted.memberships.dirty() == {}


async def test_a_crash_after_putgroup_writes_the_group_again_rather_than_forget_it(
    redis: Redis, sandbox: Sandbox
) -> None:
    sync = make_sync(redis, sandbox)
    await sync.observe("alice@example.com", ["core-team"])
    generation, members = await sync.memberships.snapshot("core-team")
    await asyncio.to_thread(index_groups(sandbox).put, "core-team", members)
    # ... the process dies before clearing the dirty mark: the next drain writes the group once more.
    assert generation is not None and set(await sync.memberships.dirty()) == {"core-team"}

    assert (await make_sync(redis, sandbox).drain()).written == 1
    assert sandbox.q.stats.put_group_calls == 2 and await sync.memberships.dirty() == {}


async def test_a_change_during_putgroup_stays_dirty_and_is_written_next(redis: Redis, sandbox: Sandbox) -> None:
    sync = make_sync(redis, sandbox)
    await sync.observe("alice@example.com", ["core-team"])
    generation, members = await sync.memberships.snapshot("core-team")
    await asyncio.to_thread(index_groups(sandbox).put, "core-team", members)
    await sync.observe("bob@example.com", ["core-team"])  # arrives while the write above was in flight
    assert generation is not None
    assert not await sync.memberships.mark_written("core-team", generation)  # a newer generation is pending

    await sync.drain()
    assert members_at_q(sandbox, "core-team") == ["alice@example.com", "bob@example.com"]
    assert await sync.memberships.dirty() == {}


async def test_failed_putgroup_keeps_the_group_dirty(redis: Redis, sandbox: Sandbox) -> None:
    broken = GroupSync(redis, index_groups(sandbox, index_id="0" * 36))
    await broken.observe("alice@example.com", ["core-team"])
    result = await broken.drain()
    assert (result.written, result.failed, result.retry_soon) == (0, 1, True)
    assert set(await broken.memberships.dirty()) == {"core-team"}

    assert (await make_sync(redis, sandbox).drain()).written == 1  # fixed configuration: caught up


async def test_one_drainer_at_a_time_across_replicas(redis: Redis, sandbox: Sandbox) -> None:
    first, second = make_sync(redis, sandbox), make_sync(redis, sandbox)
    await first.observe("alice@example.com", ["core-team"])
    await redis.set(DRAIN_LOCK, "held by another replica", px=5000)
    assert (await second.drain()).busy
    assert await redis.get(DRAIN_LOCK) == b"held by another replica"
    await redis.delete(DRAIN_LOCK)
    assert (await second.drain()).written == 1


async def test_a_drainer_that_lost_its_lock_stops_and_leaves_the_rest(
    redis: Redis, redis_url: str, sandbox: Sandbox
) -> None:
    client = admin_q(sandbox)
    other_replica = SyncRedis.from_url(redis_url)

    def lock_expires_and_is_taken(**_: object) -> None:  # during the first PutGroup, in the executor's thread
        other_replica.set(DRAIN_LOCK, "another replica", px=60_000)

    client.meta.events.register("before-call.qbusiness.PutGroup", lock_expires_and_is_taken)
    sync = GroupSync(redis, IndexGroups(client, APP_ID, INDEX_ID), debounce_seconds=0.05, sweep_seconds=0.2)
    await sync.observe("alice@example.com", ["core-team", "engineering"])
    result = await sync.drain()
    assert (result.written, result.busy) == (1, True)
    assert set(await sync.memberships.dirty()) == {"engineering"}  # left for the replica holding the lock
    assert await redis.get(DRAIN_LOCK) == b"another replica"  # not released by the one that lost it
    other_replica.close()


async def test_a_burst_of_sign_ins_is_one_putgroup_per_group(redis: Redis, sandbox: Sandbox) -> None:
    # No sweep to race the burst; the debounce is many times what twenty observations take even on a loaded
    # machine (a 0.05 s debounce next to 0.2 s sweeps once made three writes under load).
    sync = make_sync(redis, sandbox, debounce_seconds=0.5, sweep_seconds=3600)
    await sync.start()
    try:
        await sync.observe("first@example.com", ["core-team"])  # past the drainer's catch-up pass at start
        await until(lambda: members_at_q(sandbox, "core-team") == ["first@example.com"])
        before = sandbox.q.stats.put_group_calls

        await asyncio.gather(*(sync.observe(f"user{n:02d}@example.com", ["core-team"]) for n in range(20)))

        await until(lambda: len(members_at_q(sandbox, "core-team") or []) == 21)

        async def marked_written() -> bool:  # (just after Q has the group: the drainer then clears its mark)
            return not await redis.hlen(DIRTY)

        await until(marked_written)
    finally:
        await sync.stop()
    assert sandbox.q.stats.put_group_calls == before + 1


async def test_a_stop_lets_the_putgroup_in_flight_finish_and_then_ends_the_drainer(
    redis: Redis, sandbox: Sandbox
) -> None:
    sandbox.q.faults.put_group_delay_seconds = 0.3
    sync = make_sync(redis, sandbox, sweep_seconds=3600)
    await sync.observe("alice@example.com", ["core-team"])
    await sync.start()
    await until(lambda: sandbox.q.stats.put_group_calls == 1)  # the write is at Q now

    # The drainer must end by itself (a cancel can be lost under load): the bound only turns a hang into a failure.
    await asyncio.wait_for(sync.stop(grace_seconds=3600), 60)

    assert members_at_q(sandbox, "core-team") == ["alice@example.com"]
    assert await sync.memberships.dirty() == {}  # written and marked, not cut in half
    assert sandbox.q.stats.put_group_calls == 1


async def test_a_stop_while_a_burst_settles_ends_at_once_and_leaves_the_changes_for_the_next_process(
    redis: Redis, sandbox: Sandbox
) -> None:
    sync = make_sync(redis, sandbox, debounce_seconds=3600, sweep_seconds=3600)
    await sync.observe("alice@example.com", ["core-team"])
    await sync.start()
    await until(lambda: not sync._wake.is_set())  # the drainer took the wake-up: it lets the burst settle

    await asyncio.wait_for(sync.stop(grace_seconds=3600), 60)  # not a pass: nothing to wait for (bound: a hang)

    assert sandbox.q.stats.put_group_calls == 0
    assert set(await sync.memberships.dirty()) == {"core-team"}


async def test_a_pass_stuck_past_the_grace_is_cancelled_and_its_group_stays_dirty(
    redis: Redis, sandbox: Sandbox
) -> None:
    sandbox.q.faults.put_group_delay_seconds = 0.6  # (its thread still waits for Q's answer after the cancel)
    sync = make_sync(redis, sandbox)
    await sync.observe("alice@example.com", ["core-team"])
    await sync.start()
    await until(lambda: sandbox.q.stats.put_group_calls == 1)

    await sync.stop(grace_seconds=0.1)

    assert set(await sync.memberships.dirty()) == {"core-team"}  # kept for the next process
    assert await redis.get(DRAIN_LOCK) is None  # the pass ended, releasing its lock on the way out


def test_settings_and_the_composition_hook(redis_url: str) -> None:
    assert GroupSyncSettings.from_env({}).enabled is False
    with pytest.raises(ConfigError, match="QBOT_Q_INDEX_ID"):
        GroupSyncSettings.from_env({"QBOT_GROUP_SYNC": "true"})
    settings = GroupSyncSettings.from_env(
        {"QBOT_GROUP_SYNC": "yes", "QBOT_Q_INDEX_ID": INDEX_ID, "QBOT_GROUP_SYNC_GROUPS": "core-*, eng*",
         "QBOT_GROUP_SYNC_DEBOUNCE_SECONDS": "0.5"}
    )
    assert settings.patterns == ("core-*", "eng*") and settings.debounce_seconds == 0.5
    with pytest.raises(ConfigError, match="QBOT_GROUP_SYNC_DEBOUNCE_SECONDS"):
        GroupSyncSettings.from_env({"QBOT_GROUP_SYNC_DEBOUNCE_SECONDS": "soon"})
    off = Settings.from_env({})
    assert build_group_sync(off.extra, Redis.from_url(redis_url), application_id=APP_ID, region="us-east-1",
                            executor=None) is None
