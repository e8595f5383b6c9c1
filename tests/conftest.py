"""Fixtures that start real servers: the sandbox stand-ins on OS-chosen loopback ports."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from sandbox.world import Sandbox, SandboxPorts

T = TypeVar("T")


class LoopThread:
    """An asyncio loop on its own thread, so servers keep serving while a test blocks on a sync client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="servers", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture(scope="session")
def servers() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def sandbox(servers: LoopThread) -> Iterator[Sandbox]:
    """A fresh sandbox per test: no fault switch or conversation leaks from one test into another."""
    world = Sandbox(ports=SandboxPorts(idp=0, sts=0, q=0))
    servers.run(world.start())
    yield world
    servers.run(world.stop())
