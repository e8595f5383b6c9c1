"""`/healthz` (the process answers), `/readyz` (Redis answers too) and `/metrics` (Prometheus text)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.metrics import Metrics
from bot.turn_metrics import TurnStreamMetrics


def health_routes(redis: Redis, metrics: Metrics, turns: TurnStreamMetrics | None = None) -> list[web.RouteDef]:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            return web.json_response({"status": "unavailable", "redis": type(exc).__name__}, status=503)
        return web.json_response({"status": "ready"})

    async def render_metrics(_request: web.Request) -> web.Response:
        if turns is not None:
            await turns.refresh()
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", render_metrics)]
