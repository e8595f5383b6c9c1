"""The turn stream in /metrics: how many turns wait or are in work, how old the oldest is, how many were claimed
from workers that died. Read from Redis at scrape time (every process sees the same stream), so an outage or a
backlog shows on every replica's /metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from bot.turn_queue import TurnQueue, TurnWorkers

log = logging.getLogger(__name__)


class TurnStreamMetrics(Collector):
    def __init__(self, queue: TurnQueue, workers: TurnWorkers | None) -> None:
        self._queue = queue
        self._workers = workers
        self._stats: dict[str, float] = {}

    async def refresh(self) -> None:
        """Read the stream's figures (before a scrape renders them); none while Redis is away."""
        try:
            self._stats = await self._queue.stats()
        except RedisError as exc:
            log.warning("turn stream figures unavailable: %s", type(exc).__name__)
            self._stats = {}

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        if stats:
            yield GaugeMetricFamily(
                "qbot_turn_stream_length", "Turns in the stream: waiting for a worker or in work", stats["length"]
            )
            yield GaugeMetricFamily(
                "qbot_turn_stream_pending", "Turns a worker has taken and not finished", stats["pending"]
            )
            yield GaugeMetricFamily(
                "qbot_turn_oldest_age_seconds", "Age of the oldest turn in the stream", stats["oldest_age_seconds"]
            )
        if self._workers is not None:
            yield GaugeMetricFamily("qbot_turns_in_work", "Turns this process works on now", self._workers.in_work)
            yield CounterMetricFamily(
                "qbot_turns_claimed", "Turns this process took over from workers that died", self._workers.claimed
            )
