"""Prometheus metrics, on a registry of their own per bot (so tests can build several bots in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "qbot_messages", "Chat messages handled", ["platform", "outcome"], registry=self.registry
        )
        self.answer_latency = Histogram(
            "qbot_answer_latency_seconds",
            "From receiving a question to having its answer",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
        )
        self.chatsync_errors = Counter(
            "qbot_chatsync_errors", "ChatSync calls that failed, by AWS error code", ["code"],
            registry=self.registry,
        )
        self.idp_refreshes = Counter(
            "qbot_idp_refreshes", "Refresh-token grants at the IdP", ["outcome"], registry=self.registry
        )
        self.sts_calls = Counter(
            "qbot_sts_calls", "STS AssumeRoleWithWebIdentity calls", ["outcome"], registry=self.registry
        )
        self.links = Counter("qbot_links", "Account links, by outcome", ["outcome"], registry=self.registry)
        self.shares = Counter(
            "qbot_shared_answers", "Private answers their askers shared in the thread", ["platform"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "qbot_feedback", "Answers rated by their askers, by usefulness and reason (Q's value, or none)",
            ["platform", "usefulness", "reason"], registry=self.registry,
        )
        self.failures = Counter(
            "qbot_failures", "Failures by stage: receive (taking a message in), credentials (IdP, STS), q (ChatSync), "
            "turn (anything else that stopped a turn, e.g. Redis down), deliver (posting to the platform)",
            ["stage", "platform"], registry=self.registry,
        )

    def failed(self, stage: str, platform: str) -> None:
        """One failure a user met (or an answer they will never see), so an outage shows in /metrics. The core
        counts credentials, q and turn; adapters count what only they see: receive and deliver."""
        self.failures.labels(stage, platform).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
