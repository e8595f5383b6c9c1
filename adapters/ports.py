"""The one interface every chat adapter satisfies (Slack, Teams, web): adding a platform touches no core file."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web


class Adapter(Protocol):
    platform: str

    def routes(self) -> list[web.RouteDef]:
        """The HTTP routes the adapter serves on the bot's one aiohttp server."""
        ...

    async def start(self) -> None:
        """Begin work that is not request-driven (Socket Mode, say); called once the server is up."""
        ...

    async def stop(self) -> None: ...
