"""Adapter memory on real Redis: sealed at rest, bound to its key, bounded, always expiring."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bot.adapter_memory import MAX_RECORD_BYTES, PREFIX, AdapterMemory
from bot.cipher import TokenCipher
from tests.conftest import expire_now


async def test_round_trip_sealed_and_expiring(redis: Redis) -> None:
    memory = AdapterMemory(redis, TokenCipher.ephemeral())
    await memory.put("teams", "card:c1:m1", {"card": {"text": "Project Aurora is secret"}}, ttl_seconds=1)
    assert await memory.get("teams", "card:c1:m1") == {"card": {"text": "Project Aurora is secret"}}
    assert await memory.get("slack", "card:c1:m1") is None  # platforms don't share records
    (key,) = await redis.keys(PREFIX + "*")
    assert b"Aurora" not in await redis.get(key) and 0 < await redis.ttl(key) <= 1
    await expire_now(redis, key)
    assert await memory.get("teams", "card:c1:m1") is None


async def test_records_are_bound_to_their_key_and_bounded(redis: Redis) -> None:
    memory = AdapterMemory(redis, TokenCipher.ephemeral())
    await memory.put("teams", "a", {"v": 1}, ttl_seconds=60)
    await memory.put("teams", "b", {"v": 2}, ttl_seconds=60)
    blob_a = await redis.get(memory._key("teams", "a"))
    await redis.set(memory._key("teams", "b"), blob_a)  # a record copied under another key does not open
    assert await memory.get("teams", "b") is None
    with pytest.raises(ValueError):
        await memory.put("teams", "big", {"v": "x" * MAX_RECORD_BYTES}, ttl_seconds=60)
    await memory.delete("teams", "a")
    assert await memory.get("teams", "a") is None
