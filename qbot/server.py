"""The bot's HTTP front: the one listening site `qbot serve` and `qbot sandbox` both run the bot on.

aiohttp bounds neither how long a client may take to send a request nor how many connections it holds, so a
few thousand slow clients could keep every file descriptor and starve everyone (/healthz included). Here:
- a request head must arrive within `QBOT_HEADER_TIMEOUT_SECONDS` of the connection opening or of the previous
  response (aiohttp's keep-alive timer, which in 3.14 also runs before the first request; the same time bounds
  an idle keep-alive connection, so a proxy in front should reuse connections for less than that);
- a request body must arrive within `QBOT_BODY_TIMEOUT_SECONDS` (408 and the connection closed otherwise);
- a request aiohttp cannot parse is a 400 logged as one INFO line, never an ERROR with a traceback;
- at most `QBOT_MAX_CONNECTIONS` connections are open at once: one beyond it is answered 503 and closed at
  once, so the process keeps file descriptors for Redis, the IdP and Q, and /healthz answers as soon as a
  slot frees up.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.config import env_int

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_HEADER_TIMEOUT_SECONDS = 10
DEFAULT_BODY_TIMEOUT_SECONDS = 30
FDS_KEPT_FOR_THE_BOT = 256  # Redis pool, IdP, STS and Q clients, chat APIs, logs
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n"
)


def _open_file_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


@dataclass(frozen=True)
class FrontLimits:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FrontLimits:
        """The settings; the connection cap defaults to what the open-file limit leaves room for."""
        room = max(1, _open_file_limit() - FDS_KEPT_FOR_THE_BOT)
        limits = cls(
            max_connections=env_int(env, "QBOT_MAX_CONNECTIONS", min(DEFAULT_MAX_CONNECTIONS, room)),
            header_timeout_seconds=env_int(env, "QBOT_HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT_SECONDS),
            body_timeout_seconds=env_int(env, "QBOT_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS),
        )
        if limits.max_connections > room:
            log.warning(
                "QBOT_MAX_CONNECTIONS=%d leaves fewer than %d of the %d open files for Redis, the IdP and Q: "
                "raise the limit (ulimit -n) or lower the cap",
                limits.max_connections, FDS_KEPT_FOR_THE_BOT, _open_file_limit(),
            )
        return limits


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv4 or IPv6, as `host` resolves), ready for `BotServer`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _ClientErrorsAreNotOurs(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's request logger, except that a request aiohttp could not even parse (a bad request line or
    header, a line too long: the client's garbage, answered 400) is one line without a traceback, not an ERROR.
    Failures in the bot's own handlers stay ERRORs."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            super().info(f"{msg}: malformed request (%s)", *args, type(exc_info).__name__)
        else:
            self.error(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        """(Non-HTTP bytes, e.g. TLS sent to a plain HTTP port, are logged here: without the traceback too.)"""
        if isinstance(exc_info, HttpProcessingError):
            super().debug(f"{msg}: malformed request (%s)", *args, type(exc_info).__name__)
        else:
            super().debug(msg, *args, exc_info=exc_info, **kwargs)


class _Refused(asyncio.Protocol):
    """A connection over the cap: told 503 and closed at once, before a byte of it is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(BUSY)
        transport.close()


class _CappedSite(web.BaseSite):
    """aiohttp's SockSite, with a protocol factory that turns away connections beyond the cap."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, max_connections: int) -> None:
        super().__init__(runner, backlog=1024)
        self._sock = sock
        self._max_connections = max_connections
        host, port = sock.getsockname()[:2]
        self._name = f"http://{host}:{port}"
        self.refused = 0

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None

        def connection() -> asyncio.BaseProtocol:
            if len(server.connections) >= self._max_connections:
                self.refused += 1
                return _Refused()
            return server()

        self._server = await asyncio.get_running_loop().create_server(connection, sock=self._sock)


def body_deadline(seconds: float) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware that reads every request body within `seconds` (handlers then read it from memory)."""

    @web.middleware
    async def read_body_in_time(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(seconds):
                    await request.read()
            except TimeoutError:
                response = web.Response(status=408, text="the request body did not arrive in time\n")
                response.force_close()
                return response
        return await handler(request)

    return read_body_in_time


class BotServer:
    """The bot's application on its listening socket, with the front's limits applied."""

    def __init__(self, app: web.Application, sock: socket.socket, limits: FrontLimits) -> None:
        app.middlewares.insert(0, body_deadline(limits.body_timeout_seconds))  # outermost: before any handler
        self.limits = limits
        self.sock = sock
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=limits.header_timeout_seconds,
            # Every body is read by body_deadline, so a body still unread is one that did not arrive in time: the
            # connection closes after its 408 rather than lingering (aiohttp's default: 10 s) to read the rest.
            lingering_time=0,
            logger=_ClientErrorsAreNotOurs(logging.getLogger("aiohttp.server"), {}),
        )
        self._site: _CappedSite | None = None
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"

    @property
    def refused(self) -> int:
        """Connections turned away at the cap so far."""
        return self._site.refused if self._site is not None else 0

    async def start(self) -> None:
        await self._runner.setup()
        self._site = _CappedSite(self._runner, self.sock, self.limits.max_connections)
        await self._site.start()

    async def stop(self) -> None:
        await self._runner.cleanup()
