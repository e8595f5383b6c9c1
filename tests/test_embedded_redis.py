import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis

from qbot.embedded_redis import EmbeddedRedis, RedisDidNotStart


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


CHILD = """
import sys, time
from qbot.embedded_redis import EmbeddedRedis
server = EmbeddedRedis().start()
print(server.port, flush=True)
time.sleep(60)
"""


def test_starts_a_real_redis_and_stops_it() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping() and client.info()["redis_version"]
        client.close()
        port = server.port
    assert not _answers(port), "redis-server still answers after stop()"


def test_redis_dies_with_a_killed_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    port = int(parent.stdout.readline())
    assert redis.Redis(port=port).ping()
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not _answers(port):
            return
        time.sleep(0.05)
    raise AssertionError("redis-server outlived its killed parent")


def test_a_taken_fixed_port_fails_at_once_saying_why_and_leaves_no_server() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedRedis(port=port)
        with pytest.raises(RedisDidNotStart, match=r"did not start: .*[Aa]ddress already in use"):
            server.start(timeout=30)  # (redis-server exits at once: no waiting it out)
    assert server._process is None  # stopped and reaped
