"""The one interface every chat adapter satisfies (Slack, Teams, web), and the services the composition root
hands each one: adding a platform touches no core file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web


class Memory(Protocol):
    """Small sealed, expiring JSON records an adapter keeps across processes (adapters never touch Redis)."""

    async def put(self, platform: str, key: str, value: Mapping[str, Any], ttl_seconds: int) -> None: ...

    async def get(self, platform: str, key: str) -> dict[str, Any] | None: ...


class DeliveryLog(Protocol):
    """True once per platform delivery across all bot processes; retries and duplicates get False."""

    async def first(self, platform: str, delivery_id: str, *also_known_as: str) -> bool: ...


@dataclass(frozen=True)
class AdapterServices:
    memory: Memory
    deliveries: DeliveryLog


class Adapter(Protocol):
    platform: str

    def routes(self) -> list[web.RouteDef]:
        """The HTTP routes the adapter serves on the bot's one aiohttp server."""
        ...

    async def start(self) -> None:
        """Begin work that is not request-driven (Socket Mode, say); called once the server is up."""
        ...

    async def stop(self) -> None: ...
