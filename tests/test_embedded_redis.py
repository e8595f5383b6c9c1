import os
import signal
import socket
import subprocess
import sys
import time

import redis

from qbot.embedded_redis import EmbeddedRedis


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
