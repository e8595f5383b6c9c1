"""`/readyz` follows Redis: a load balancer stops sending traffic to a bot whose Redis is down (503), and sends it
again once Redis is back (200). Against a private redis-server this test stops and starts again (on the same
port), never the shared one the other tests use."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from bot.metrics import Metrics
from qbot.embedded_redis import EmbeddedRedis
from qbot.health import health_routes
from sandbox.serving import Served, bind


@pytest.fixture
async def health_url(private_redis: EmbeddedRedis) -> AsyncIterator[str]:
    from aiohttp import web

    redis = Redis.from_url(private_redis.url)
    app = web.Application()
    app.add_routes(health_routes(redis, Metrics()))
    served = Served(app, bind("127.0.0.1", 0))
    await served.start()
    yield served.url
    await served.stop()
    await redis.aclose()


# issue 17 table: bot/health.py: `/readyz` ready while Redis is down
async def test_readyz_is_503_while_redis_is_down_and_200_when_it_is_back(
    health_url: str, private_redis: EmbeddedRedis
) -> None:
    async with httpx.AsyncClient(base_url=health_url) as http:
        assert (await http.get("/readyz")).json() == {"status": "ready"}

        private_redis.stop()
        down = await http.get("/readyz")
        assert down.status_code == 503 and down.json()["status"] == "unavailable"
        assert (await http.get("/healthz")).status_code == 200  # the process itself still answers

        private_redis.start()  # same port: the bot's Redis URL is unchanged
        back = await http.get("/readyz")
        assert back.status_code == 200 and back.json() == {"status": "ready"}


@pytest.fixture
async def guarded_url(redis_url: str) -> AsyncIterator[str]:
    from aiohttp import web

    redis = Redis.from_url(redis_url)
    app = web.Application()
    app.add_routes(health_routes(redis, Metrics(), metrics_token="scrape-token-of-prometheus"))
    served = Served(app, bind("127.0.0.1", 0))
    await served.start()
    yield served.url
    await served.stop()
    await redis.aclose()


async def test_metrics_with_a_token_answer_only_that_bearer_token(guarded_url: str) -> None:
    async with httpx.AsyncClient(base_url=guarded_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer scrape-token-of-prometheu"},
                        {"Authorization": "scrape-token-of-prometheus"}, {"Authorization": "Basic c2NyYXBl"}):
            refused = await http.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert "qbot_" not in refused.text and "QBOT_METRICS_TOKEN" in refused.text
        allowed = await http.get("/metrics", headers={"Authorization": "Bearer scrape-token-of-prometheus"})
        assert allowed.status_code == 200 and "qbot_" in allowed.text
        # the probes stay open: a load balancer has no token
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


async def test_metrics_without_a_token_are_open(health_url: str) -> None:
    async with httpx.AsyncClient(base_url=health_url) as http:
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and "qbot_" in metrics.text
