"""The bot's Redis client: one bounded pool whose connections survive a Redis restart.

A pooled connection left over from before a restart fails on first use. Every command that fails to connect or
times out is retried a few times with jittered exponential backoff (on a fresh connection, the failed one is
dropped), and connections idle for a while are checked with a PING before use, so the first questions after Redis
returns are answered. The wait is bounded: while Redis stays down, a command fails after about a second and a
half, and the caller says so (the user gets a short error, `/readyz` a 503).
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError  # redis-py's, not the builtins

RETRIES = 5  # after the first try: ~0.05 + 0.1 + 0.2 + 0.4 + 0.8 s of backoff at most
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0
HEALTH_CHECK_SECONDS = 15  # a connection idle this long is PINGed before its next command
SOCKET_TIMEOUT_SECONDS = 10  # longer than any command we block on (the turn stream reads block for ~1 s)
CONNECT_TIMEOUT_SECONDS = 3
POOL_WAIT_SECONDS = 10  # under a burst, wait this long for a free connection rather than fail


def redis_client(url: str, *, max_connections: int) -> Redis:
    """A client on a blocking pool (a burst waits for a free connection instead of failing, redis-py's default),
    retrying connection errors and timeouts, with health-checked, keep-alive connections."""
    retry = Retry(
        ExponentialWithJitterBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS),
        RETRIES,
        supported_errors=(ConnectionError, TimeoutError),
    )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        retry=retry,
        health_check_interval=HEALTH_CHECK_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_keepalive=True,
    )
    return Redis.from_pool(pool)
