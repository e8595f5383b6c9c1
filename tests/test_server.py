"""The HTTP front (`qbot.server`, used by `qbot serve` and `qbot sandbox`) over real sockets: slow clients are
cut off, connections beyond the cap are turned away, and the bot keeps answering /healthz through it all."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from cryptography.fernet import Fernet

from bot.config import Settings
from bot.errors import ConfigError
from qbot.app import build_app
from qbot.server import BotServer, FrontLimits
from sandbox.serving import url_of
from sandbox.world import Sandbox
from tests.conftest import LoopThread

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: qbot\r\n\r\n"


@pytest.fixture
def front(
    servers: LoopThread, sandbox: Sandbox, bot_socket: socket.socket, redis_url: str
) -> Iterator[Callable[..., BotServer]]:
    """The whole bot behind `BotServer`, with the front's settings given as QBOT_* variables."""
    started: list[BotServer] = []

    def start(**env: str) -> BotServer:
        settings = Settings.from_env({
            **sandbox.env(), "QBOT_REDIS_URL": redis_url, "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(),
            "QBOT_PUBLIC_URL": url_of(bot_socket), **env,
        })
        server = BotServer(build_app(settings), bot_socket, FrontLimits.from_env(settings.extra))
        servers.run(server.start())
        started.append(server)
        return server

    yield start
    for server in started:
        servers.run(server.stop())


def connect(server: BotServer) -> socket.socket:
    return socket.create_connection(server.sock.getsockname()[:2], timeout=15)


def response(sock: socket.socket) -> bytes:
    """One HTTP response (head and Content-Length body), or what came before the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
        b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def healthz(sock: socket.socket) -> bytes:
    sock.sendall(HEALTHZ)
    return response(sock)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_client_sending_headers_slowly_is_cut_off_while_healthz_answers(front: Callable[..., BotServer]) -> None:
    server = front(QBOT_HEADER_TIMEOUT_SECONDS="1")
    slow = connect(server)
    slow.settimeout(0.2)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: qbot\r\n")
    cut_off = False
    for n in range(150):  # a header line every 0.2 s: never a complete request head
        try:
            slow.sendall(f"X-Slow-{n}: {'a' * 10}\r\n".encode())
            if slow.recv(1) == b"":
                cut_off = True
                break
        except TimeoutError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            cut_off = True
            break
        if n % 5 == 0:
            with connect(server) as other:
                assert healthz(other).startswith(b"HTTP/1.1 200"), n
    slow.close()
    assert cut_off
    with connect(server) as other:
        assert healthz(other).startswith(b"HTTP/1.1 200")


def test_a_body_that_does_not_arrive_in_time_is_a_408(front: Callable[..., BotServer]) -> None:
    server = front(QBOT_BODY_TIMEOUT_SECONDS="1")
    with connect(server) as sock:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: qbot\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"type\":")
        assert response(sock).startswith(b"HTTP/1.1 408")
        assert closed_by_server(sock)


def test_connections_beyond_the_cap_are_turned_away_while_open_ones_work(front: Callable[..., BotServer]) -> None:
    server = front(QBOT_MAX_CONNECTIONS="4")
    held = [connect(server) for _ in range(4)]
    try:
        for sock in held:  # each answered once, then kept open (keep-alive): four connections in the server
            assert healthz(sock).startswith(b"HTTP/1.1 200")
        for _ in range(3):
            with connect(server) as extra:
                extra.sendall(HEALTHZ)
                assert response(extra).startswith(b"HTTP/1.1 503")
                assert closed_by_server(extra)
        assert server.refused == 3
        assert healthz(held[0]).startswith(b"HTTP/1.1 200")  # the open ones still work
        held.pop().close()
        for _ in range(100):  # the freed slot is taken again as soon as the server has let the connection go
            with connect(server) as again:
                answer = healthz(again)
            if answer.startswith(b"HTTP/1.1 200"):
                break
            time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()


def test_malformed_requests_are_400_and_never_an_error_in_the_log(
    front: Callable[..., BotServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = front()
    caplog.set_level("DEBUG")
    garbage = (
        b"GET /healthz HTTP/1.1\r\nHost: qbot\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: qbot\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: qbot\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: qbot\r\n\r\nGARBAGE\x00\x01 /healthz HTTP/1.1\r\n\r\n",  # the 2nd request
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # TLS to plain HTTP
    )
    for raw in garbage:
        with connect(server) as sock:
            sock.sendall(raw)
            answers = b""
            while chunk := sock.recv(65536):
                answers += chunk
            assert b" 400 Bad Request\r\n" in answers, raw[:40]
    with connect(server) as sock:
        assert healthz(sock).startswith(b"HTTP/1.1 200")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info or r.exc_text] == []


def test_the_front_settings_are_checked() -> None:
    limits = FrontLimits.from_env({"QBOT_MAX_CONNECTIONS": "10", "QBOT_HEADER_TIMEOUT_SECONDS": "5"})
    assert (limits.max_connections, limits.header_timeout_seconds, limits.body_timeout_seconds) == (10, 5, 30)
    for bad in ({"QBOT_MAX_CONNECTIONS": "0"}, {"QBOT_HEADER_TIMEOUT_SECONDS": "soon"}):
        with pytest.raises(ConfigError):
            FrontLimits.from_env(bad)
