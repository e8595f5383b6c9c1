"""The bot's Redis client across a Redis restart, on a redis-server of the test's own (stopped and started again
on the same port), never the shared one."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from qbot.embedded_redis import EmbeddedRedis
from qbot.redis_client import redis_client


async def test_pooled_connections_survive_a_redis_restart(private_redis: EmbeddedRedis) -> None:
    client = redis_client(private_redis.url, max_connections=50)
    await asyncio.gather(*(client.blpop([f"idle{n}"], 0.05) for n in range(20)))  # twenty pooled connections
    private_redis.stop()
    private_redis.start()  # every pooled connection is now stale
    await asyncio.gather(*(client.set(f"k{n}", n) for n in range(20)))  # none fails
    assert await client.mget([f"k{n}" for n in range(20)]) == [str(n).encode() for n in range(20)]
    await client.aclose()


async def test_while_redis_stays_down_a_command_fails_instead_of_hanging(private_redis: EmbeddedRedis) -> None:
    client = redis_client(private_redis.url, max_connections=4)
    assert await client.ping()
    private_redis.stop()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(client.get("anything"), 30)  # the guard is not the claim: the retries are bounded
    private_redis.start()
    assert await client.ping()  # and it recovers by itself
    await client.aclose()
