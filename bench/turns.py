"""Benchmark the turn stream's hop: a question appended to the Redis Stream until a worker's handler starts it.

Run by hand (`.venv/bin/python -m bench.turns`); it prints its figures and asserts nothing. Three processes: a
redis-server (the embedded one), the worker (a child: `TurnWorkers` reading the stream, its handler noting when
each turn starts), and this one, which submits turns as the web role does (one atomic de-duplicate + append).
Figures: the hop latency p50/p99 at a steady rate and for a burst, and the submit (ack path) latency p50/p99.
The hop is what durable turns add to every answer compared with answering in the receiving process.
Target (issue 13): queue-to-answer no worse than the in-process path by more than 1 ms at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from multiprocessing.connection import Connection

from bench.chain import pct
from bot.cipher import TokenCipher
from bot.turn_queue import QueuedTurn, TurnQueue, TurnWorkers
from qbot.cli import run_async
from qbot.embedded_redis import EmbeddedRedis
from qbot.redis_client import redis_client

KEY = "YJVFa0J64VG9PA82DKfh78bIfcheKETGwTLuOD8bKao="  # a fixed Fernet key: nothing here is secret


def _worker_process(conn: Connection, url: str, key: str) -> None:
    run_async(_worker_main(conn, url, key))


async def _worker_main(conn: Connection, url: str, key: str) -> None:
    redis = redis_client(url, max_connections=64)  # as qbot builds it
    queue = TurnQueue(redis, TokenCipher([key]))
    hops: list[float] = []
    arrived = asyncio.Event()

    async def handle(turn: QueuedTurn) -> None:
        hops.append(time.time() - float(turn.payload))
        arrived.set()

    workers = TurnWorkers(queue, {"bench": handle}, concurrency=256)
    await workers.start()
    conn.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        command, arg = await loop.run_in_executor(None, conn.recv)
        if command == "hops":
            while len(hops) < arg:
                arrived.clear()
                await arrived.wait()
            conn.send(hops[:arg])
            del hops[:arg]
        elif command == "stop":
            await workers.stop()
            await redis.aclose()
            conn.send("stopped")
            return


async def _submit(queue: TurnQueue, count: int, rate: float | None, first: int) -> list[float]:
    """Submit `count` turns (at `rate` per second, or all at once); returns each submit's latency."""
    latencies: list[float] = []
    start = time.perf_counter()

    async def one(n: int) -> None:
        began = time.perf_counter()
        await queue.submit("bench", [f"event:{n}"], repr(time.time()))
        latencies.append(time.perf_counter() - began)

    tasks = []
    for n in range(count):
        if rate:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(first + n)))
    await asyncio.gather(*tasks)
    return latencies


def ms(value: float) -> str:
    return f"{value * 1000:.2f} ms"


async def main(steady: int, rate: float, burst: int) -> None:
    with EmbeddedRedis() as server:
        parent, child = multiprocessing.Pipe()
        worker = multiprocessing.Process(target=_worker_process, args=(child, server.url, KEY), daemon=True)
        worker.start()
        assert parent.recv() == "ready"
        redis = redis_client(server.url, max_connections=64)
        queue = TurnQueue(redis, TokenCipher([KEY]))
        try:
            await _submit(queue, 200, 500.0, 10_000_000)  # warm up both sides
            parent.send(("hops", 200))
            parent.recv()
            print(f"qbot bench.turns — the turn stream hop (submit -> a worker's handler starts), Redis {server.url}")
            submits = await _submit(queue, steady, rate, 0)
            parent.send(("hops", steady))
            hops = parent.recv()
            print(f"steady {rate:.0f}/s, {steady} turns: hop p50 {ms(pct(hops, 0.5))}, p99 {ms(pct(hops, 0.99))}; "
                  f"submit (the ack path) p50 {ms(pct(submits, 0.5))}, p99 {ms(pct(submits, 0.99))}")
            submits = await _submit(queue, burst, None, steady)
            parent.send(("hops", burst))
            hops = parent.recv()
            print(f"burst of {burst}: hop p50 {ms(pct(hops, 0.5))}, p99 {ms(pct(hops, 0.99))}; "
                  f"submit p50 {ms(pct(submits, 0.5))}, p99 {ms(pct(submits, 0.99))}")
            print("target: the hop adds <= 1 ms at p50 to an answer (issue 13)")
        finally:
            parent.send(("stop", None))
            parent.recv()
            worker.join(timeout=10)
            await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steady", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    run_async(main(args.steady, args.rate, args.burst))
