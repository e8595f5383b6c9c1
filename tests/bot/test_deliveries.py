import asyncio

from redis.asyncio import Redis

from bot.deliveries import Deliveries


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
    await asyncio.sleep(1.1)
    assert await deliveries.first("slack", "E1")
    await client.aclose()
