"""Serve aiohttp applications on loopback sockets that are bound before the apps are built.

Binding first lets a stand-in know its own URL (the IdP's issuer, say) even when the port is chosen by the
OS (port 0), which is how tests run several sandboxes side by side.
"""

from __future__ import annotations

import socket

from aiohttp import web


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)  # a burst of thousands of connections at once must not stall in the accept queue
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


class Served:
    """One aiohttp application running on an already-bound socket."""

    def __init__(self, app: web.Application, sock: socket.socket) -> None:
        self.app = app
        self.sock = sock
        self.url = url_of(sock)
        # A request answered before its body was read: aiohttp reads on (discarding) before closing, so the client
        # gets the answer rather than a reset; for 1 s, not its default 10 s, which a client that stopped sending
        # made every server stop wait out. (qbot's own front reads every body first, and lingers not at all.)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, lingering_time=1.0)

    async def start(self) -> None:
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    async def stop(self) -> None:
        await self._runner.cleanup()
