"""A whole bot (real aiohttp server, real Redis) wired to a fresh sandbox, driven over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.config import Settings
from bot.core import Core
from bot.model import ChatIdentity, IncomingMessage, Reply
from qbot.app import GRAPH, BotGraph, build_app
from sandbox.serving import Served, bind, url_of
from sandbox.world import Sandbox
from tests.conftest import LoopThread


@dataclass
class RunningBot:
    url: str
    graph: BotGraph
    servers: LoopThread
    sandbox: Sandbox
    settings: Settings

    @property
    def core(self) -> Core:
        return self.graph.core

    def ask(self, identity: ChatIdentity, text: str, *, thread: str = "t1", channel: str = "c1",
            message_id: str | None = None, profile_email: str | None = None) -> Reply:
        message = IncomingMessage(
            identity=identity, text=text, channel=channel, thread=thread,
            message_id=message_id or f"m-{next(_ids)}", profile_email=profile_email,
        )
        return self.servers.run(self.core.handle(message))

    def run(self, coro: Any) -> Any:
        return self.servers.run(coro)


def _counter() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


_ids = _counter()


def start_bot(servers: LoopThread, sandbox: Sandbox, sock: socket.socket, redis_url: str, **env: str) -> RunningBot:
    settings = Settings.from_env(
        {
            **sandbox.env(),
            "QBOT_REDIS_URL": redis_url,
            "QBOT_TOKEN_KEYS": env.pop("QBOT_TOKEN_KEYS", None) or Fernet.generate_key().decode(),
            "QBOT_PUBLIC_URL": url_of(sock),
            **env,
        }
    )
    app = build_app(settings)
    served = Served(app, sock)
    servers.run(served.start())
    running = RunningBot(served.url, app[GRAPH], servers, sandbox, settings)
    running._served = served  # type: ignore[attr-defined]
    return running


@pytest.fixture
def make_bot(
    servers: LoopThread, sandbox: Sandbox, bot_socket: socket.socket, redis_url: str
) -> Iterator[Callable[..., RunningBot]]:
    """Start a bot with extra QBOT_* settings; several bots may run at once (processes sharing Redis)."""
    started: list[RunningBot] = []
    sockets = [bot_socket]
    keys = Fernet.generate_key().decode()  # the bots of one test are processes of one deployment: one key

    def make(**env: str) -> RunningBot:
        """The first bot gets the socket the IdP knows; later ones (restarts) a fresh port."""
        sock = sockets.pop() if sockets else bind("127.0.0.1", 0)
        running = start_bot(servers, sandbox, sock, redis_url, **{"QBOT_TOKEN_KEYS": keys, **env})
        started.append(running)
        return running

    yield make
    while started:
        servers.run(started.pop()._served.stop())  # type: ignore[attr-defined]


@pytest.fixture
def bot(make_bot: Callable[..., RunningBot]) -> RunningBot:
    return make_bot()
