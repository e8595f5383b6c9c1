"""`/healthz` (the process answers), `/readyz` (Redis answers too) and `/metrics` (Prometheus text).

`/metrics` tells whoever reads it how busy the bot is and how its answers fail; with `QBOT_METRICS_TOKEN` set it
answers only a request carrying `Authorization: Bearer <that token>` (compared in constant time), everyone else
gets 401. The probes stay open: a load balancer or kubelet has no token to send, and they reveal nothing.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.metrics import Metrics
from bot.turn_metrics import TurnStreamMetrics


def health_routes(
    redis: Redis, metrics: Metrics, turns: TurnStreamMetrics | None = None, *, metrics_token: str = ""
) -> list[web.RouteDef]:
    expected = f"Bearer {metrics_token}".encode() if metrics_token else b""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            return web.json_response({"status": "unavailable", "redis": type(exc).__name__}, status=503)
        return web.json_response({"status": "ready"})

    async def render_metrics(request: web.Request) -> web.Response:
        if expected and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return web.Response(
                status=401, text="/metrics needs Authorization: Bearer <QBOT_METRICS_TOKEN>\n",
                headers={"WWW-Authenticate": 'Bearer realm="qbot metrics"'},
            )
        if turns is not None:
            await turns.refresh()
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", render_metrics)]
