"""The one interface every chat adapter satisfies (Slack, Teams, web), and the services the composition root
hands each one: adding a platform touches no core file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from bot.turn_queue import QueuedTurn


class Memory(Protocol):
    """Small sealed, expiring JSON records an adapter keeps across processes (adapters never touch Redis)."""

    async def put(self, platform: str, key: str, value: Mapping[str, Any], ttl_seconds: int) -> None: ...

    async def get(self, platform: str, key: str) -> dict[str, Any] | None: ...


class DeliveryLog(Protocol):
    """True once per platform delivery across all bot processes; retries and duplicates get False."""

    async def first(self, platform: str, delivery_id: str, *also_known_as: str) -> bool: ...


class Turns(Protocol):
    """Durable turns (bot/turn_queue.py): `submit` a received question before acknowledging it (False: a
    redelivery; an exception: not stored, so do not acknowledge); the platform's handler runs it later, in
    whichever process's worker reads it, and may run it again (`attempt` > 1) after a worker died."""

    async def submit(self, platform: str, delivery_ids: Sequence[str], payload: str) -> bool: ...

    def on_turn(self, platform: str, handler: Callable[[QueuedTurn], Awaitable[None]]) -> None: ...


@dataclass(frozen=True)
class AdapterServices:
    memory: Memory
    deliveries: DeliveryLog
    turns: Turns


class Adapter(Protocol):
    platform: str

    def routes(self) -> list[web.RouteDef]:
        """The HTTP routes the adapter serves on the bot's one aiohttp server."""
        ...

    async def start(self) -> None:
        """Begin work that is not request-driven (Socket Mode, say); called once the server is up."""
        ...

    async def stop(self) -> None: ...
