"""Another bot process that takes a lease and works until it is killed: how the tests make a holder die for
real (SIGKILL, no release, no more renewals) rather than pretend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, sys
from redis.asyncio import Redis
from bot.redis_lock import RedisLock
from bot.turn_lock import TurnLock

async def main() -> None:
    url, lease, what = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    client = Redis.from_url(url)
    if what[0] == "turn":  # a thread's turn: identity, channel, thread
        async with TurnLock(client, lease_seconds=lease).hold(*what[1:]):
            print("held", flush=True)
            await asyncio.Event().wait()
    lock = RedisLock(client, what[0], ttl_seconds=lease, renew=True)
    assert await lock.acquire()
    print("held", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def hold_in_another_process(redis_url: str, lease_seconds: float, *what: str) -> subprocess.Popen[str]:
    """A process holding the lease on the key `what` (or, for `"turn", identity, channel, thread`, that thread's
    turn), returned once it holds it. The caller kills it."""
    holder = subprocess.Popen(  # this interpreter, a fixed script
        [sys.executable, "-c", SCRIPT, redis_url, str(lease_seconds), *what],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None
    if holder.stdout.readline() != "held\n":
        holder.kill()
        holder.wait()
        raise AssertionError("the holder process did not take the lease")
    return holder
