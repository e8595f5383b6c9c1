import asyncio

from redis.asyncio import Redis

from bot.deliveries import PREFIX, Deliveries
from tests.conftest import expire_now


async def test_each_delivery_is_first_exactly_once_across_clients(redis_url: str) -> None:
    one, two = Redis.from_url(redis_url), Redis.from_url(redis_url)
    a, b = Deliveries(one), Deliveries(two)
    results = await asyncio.gather(*(d.first("slack", "Ev123") for d in (a, b) * 10))
    assert results.count(True) == 1
    assert await a.first("teams", "Ev123")  # platforms do not collide
    assert await b.first("slack", "Ev124")
    await one.aclose()
    await two.aclose()


async def test_a_delivery_is_new_again_after_its_ttl(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    deliveries = Deliveries(client, ttl_seconds=1)
    assert await deliveries.first("slack", "E1")
    assert not await deliveries.first("slack", "E1")
    (key,) = await client.keys(PREFIX + "*")
    assert 0 < await client.pttl(key) <= 1000  # remembered for the TTL asked for, no longer
    await expire_now(client, key)
    assert await deliveries.first("slack", "E1")
    await client.aclose()


async def test_a_delivery_seen_under_another_name_is_not_first(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    deliveries = Deliveries(client)
    assert await deliveries.first("slack", "event:E1", "message:C1:111.1")
    assert not await deliveries.first("slack", "event:E2", "message:C1:111.1")  # same message, new event id
    assert not await deliveries.first("slack", "event:E1", "message:C1:222.2")
    await client.aclose()
