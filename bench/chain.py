"""Benchmark the spine: many linked users asking through one bot process, against the sandbox stand-ins.

Run by hand (`.venv/bin/python -m bench.chain`); it prints its figures and asserts nothing. The stand-ins run
in a child process, so the bot's process measures only itself. Figures:
  - bot overhead per answered message on the warm path (Q answering instantly): handle() latency minus the
    time the Q stand-in spent serving that request (p50/p99);
  - 300 questions from 50 users against a Q that takes 2 s: wall time until all are answered, and the most
    ChatSync calls in flight at once;
  - IdP refreshes and STS calls per user;
  - memory per linked idle user: Redis used_memory and the bot's RSS, before and after linking more users.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import statistics
import threading
import time
import tracemalloc
from multiprocessing.connection import Connection
from typing import Any

import httpx
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.fernet import Fernet

from bot.config import Settings
from bot.model import Answer, ChatIdentity, IncomingMessage
from qbot.app import GRAPH, build_app
from qbot.cli import run_async
from qbot.embedded_redis import EmbeddedRedis
from sandbox.idp.pages import login_form
from sandbox.serving import Served, bind, url_of

# -- the stand-ins, in a child process ------------------------------------------------------------------


def _sandbox_process(conn: Connection, bot_url: str, users: int) -> None:
    run_async(_sandbox_main(conn, bot_url, users))


async def _sandbox_main(conn: Connection, bot_url: str, users: int) -> None:
    from sandbox.directory import sample_directory
    from sandbox.world import Sandbox, SandboxPorts

    world = Sandbox(ports=SandboxPorts(0, 0, 0), bot_public_url=bot_url, directory=sample_directory(users))
    served_q = world._served[2]  # the Q Business stand-in: time how long it spends on each request
    timings: list[float] = []

    @web.middleware
    async def timer(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            timings.append(time.perf_counter() - started)

    served_q.app.middlewares.append(timer)
    await world.start()
    conn.send(world.env())
    loop = asyncio.get_running_loop()
    while True:
        command, arg = await loop.run_in_executor(None, conn.recv)
        if command == "delay":
            world.q.faults.delay_seconds = arg
            timings.clear()
            conn.send(None)
        elif command == "timings":
            conn.send(list(timings))
            timings.clear()
        elif command == "stats":
            conn.send({
                "max_in_flight": world.q.stats.max_in_flight,
                "refreshes": dict(world.idp.stats.refreshes),
                "sts": dict(world.sts.stats.calls),
            })
            world.q.stats.max_in_flight = 0
        elif command == "stop":
            await world.stop()
            conn.send(None)
            return


class SandboxChild:
    def __init__(self, bot_url: str, users: int) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=_sandbox_process, args=(child, bot_url, users), daemon=True
        )
        self.process.start()
        self.env: dict[str, str] = self.conn.recv()

    def call(self, command: str, arg: Any = None) -> Any:
        self.conn.send((command, arg))
        return self.conn.recv()


# -- helpers --------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def link_user(core: Any, http: httpx.AsyncClient, identity: ChatIdentity, username: str) -> None:
    # The sandbox directory's users are <username>@example.com: the link names that profile email.
    notice = await core.accounts.create_link(identity, f"{username}@example.com")
    start = await http.get(notice.url)
    page = await http.get(start.headers["location"])
    action, fields = login_form(page.text, username)
    redirect = await http.post(str(page.url.join(action)), data=fields)
    done = await http.get(redirect.headers["location"])
    assert done.status_code == 200, done.text


async def link_many(core: Any, first: int, count: int) -> list[ChatIdentity]:
    identities = [ChatIdentity("bench", "T", f"U{n:03d}") for n in range(first, first + count)]
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as http:
        async def one(n: int, identity: ChatIdentity) -> None:
            async with limit:
                await link_user(core, http, identity, f"user{n:03d}")

        await asyncio.gather(*(one(first + i, ident) for i, ident in enumerate(identities)))
    return identities


def ask(identity: ChatIdentity, n: int, thread: str) -> IncomingMessage:
    return IncomingMessage(identity, "How many vacation days do I get?", "bench", thread, f"{identity.user}-{n}")


async def q_client_phase(graph: Any, child: SandboxChild, identities: list[ChatIdentity], questions: int) -> None:
    """ChatSync through the app's one QBusinessClient for every user in turn: the bot's CPU per call, its RSS
    and threads, then `questions` calls at once against a 2 s Q (the client's semaphore is the only bound)."""
    people = [await graph.broker.credentials(identity) for identity in identities]
    q = graph.core._q

    async def chat(n: int, label: str) -> Answer:
        return await q.chat(people[n % len(people)], text="How many vacation days do I get?", conversation=None,
                            files=(), client_token=f"{label}-{n}")

    child.call("delay", 0.0)
    calls = 5 * len(people)
    gc.collect()
    rss_before, cpu_before = rss_bytes(), time.process_time()
    limit = asyncio.Semaphore(64)

    async def limited(n: int) -> Answer:
        async with limit:
            return await chat(n, "qc")

    started = time.perf_counter()
    await asyncio.gather(*(limited(n) for n in range(calls)))
    wall = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu_before) / calls * 1000
    served_ms = statistics.mean(child.call("timings")) * 1000
    gc.collect()
    print(f"Q client, instant Q: {calls} ChatSync from {len(people)} distinct users in {wall:.2f} s; bot CPU "
          f"{cpu_ms:.2f} ms per call (Q stand-in {served_ms:.2f} ms each, in its own process); RSS "
          f"{rss_before / 2**20:.0f} -> {rss_bytes() / 2**20:.0f} MB "
          f"(+{(rss_bytes() - rss_before) / 2**20:.0f} MB); {threading.active_count()} threads")
    child.call("delay", 2.0)
    child.call("stats")
    started = time.perf_counter()
    answers = await asyncio.gather(*(chat(n, "qs") for n in range(questions)), return_exceptions=True)
    wall = time.perf_counter() - started
    stats = child.call("stats")
    child.call("delay", 0.0)
    print(f"Q client, 2 s Q: {sum(isinstance(a, Answer) for a in answers)}/{questions} ChatSync from "
          f"{len(people)} users answered in {wall:.2f} s; max in flight {stats['max_in_flight']}; "
          f"{threading.active_count()} threads (target: within 3 s, >= 1,000 in flight)")


# -- the benchmark --------------------------------------------------------------------------------------


async def main(users: int, questions: int, idle_users: int, warm_samples: int, q_max_concurrency: int = 0) -> None:
    redis_server = EmbeddedRedis().start()
    sock = bind("127.0.0.1", 0)
    child = SandboxChild(url_of(sock), users + idle_users)
    settings = Settings.from_env({
        **child.env, "QBOT_REDIS_URL": redis_server.url, "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(),
        "QBOT_PUBLIC_URL": url_of(sock),
        **({"QBOT_Q_MAX_CONCURRENCY": str(q_max_concurrency)} if q_max_concurrency else {}),
    })
    app = build_app(settings)
    served = Served(app, sock)
    await served.start()
    core = app[GRAPH].core
    try:
        print(f"qbot bench — {users} users, {questions} questions; Q max concurrency {settings.q_max_concurrency}")
        identities = await link_many(core, 1, users)
        warm: list[Any] = []
        for start in range(0, len(identities), 64):  # every user's first credentials, a batch at a time
            warm += await asyncio.gather(*(core.handle(ask(i, 0, "warmup")) for i in identities[start:start + 64]))
        assert all(isinstance(r, Answer) for r in warm), [r for r in warm if not isinstance(r, Answer)][:1]

        # 1. warm-path overhead, one message at a time, Q answering at once
        child.call("delay", 0.0)
        totals = []
        for n in range(warm_samples):
            identity = identities[n % len(identities)]
            started = time.perf_counter()
            reply = await core.handle(ask(identity, n + 1, f"warm-{n}"))
            totals.append(time.perf_counter() - started)
            assert isinstance(reply, Answer)
        served_times = child.call("timings")
        overhead = [(t - s) * 1000 for t, s in zip(totals, served_times, strict=True)]
        slow = sorted(range(len(overhead)), key=overhead.__getitem__)[-6:]
        print("slowest samples (index: ms):", ", ".join(f"{i}: {overhead[i]:.1f}" for i in slow))
        print(f"warm path: bot overhead p50 {pct(overhead, 0.5):.2f} ms, p99 {pct(overhead, 0.99):.2f} ms "
              f"(whole answer p50 {pct([t * 1000 for t in totals], 0.5):.2f} ms; "
              f"Q stand-in p50 {pct([s * 1000 for s in served_times], 0.5):.2f} ms)")

        # 2. the Q client alone, as every distinct user (the core's Redis, locks and Web API calls left out)
        await q_client_phase(app[GRAPH], child, identities, questions)

        # 3. a burst against a slow Q
        child.call("delay", 2.0)
        child.call("stats")
        per_user = questions // len(identities)
        started = time.perf_counter()
        burst = await asyncio.gather(*(
            core.handle(ask(identity, 1000 + k, f"burst-{k}"))
            for identity in identities for k in range(per_user)
        ), return_exceptions=True)
        wall = time.perf_counter() - started
        answered = sum(isinstance(r, Answer) for r in burst)
        stats = child.call("stats")
        print(f"burst: {answered}/{len(burst)} answered in {wall:.2f} s against a 2 s Q; "
              f"max ChatSync in flight {stats['max_in_flight']}; {threading.active_count()} threads "
              f"(target: 2,000 questions from 1,000 users within 3 s, >= 1,000 in flight)")
        refreshes = [stats["refreshes"].get(f"user{n:03d}", 0) for n in range(1, users + 1)]
        sts = [stats["sts"].get(f"user{n:03d}@example.com", 0) for n in range(1, users + 1)]
        print(f"per user over the run: IdP refreshes min/max {min(refreshes)}/{max(refreshes)}, "
              f"STS calls min/max {min(sts)}/{max(sts)}")
        child.call("delay", 0.0)

        # 4. memory per linked idle user
        client = aioredis.Redis.from_url(redis_server.url)
        before_redis = (await client.info("memory"))["used_memory"]
        before_rss = rss_bytes()
        gc.collect()
        tracemalloc.start()
        heap_before = tracemalloc.take_snapshot()
        await link_many(core, users + 1, idle_users)
        gc.collect()
        heap_after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        retained = sum(stat.size_diff for stat in heap_after.compare_to(heap_before, "filename"))
        after_redis = (await client.info("memory"))["used_memory"]
        after_rss = rss_bytes()
        vault_bytes = [await client.memory_usage(key) or 0 async for key in client.scan_iter("qbot:vault:*")]
        await client.aclose()
        redis_kb = (after_redis - before_redis) / idle_users / 1024
        rss_kb = (after_rss - before_rss) / idle_users / 1024
        # used_memory deltas mostly show the allocator reusing what earlier phases freed: report it, but the
        # vault entries' own MEMORY USAGE is the figure that grows with each linked user.
        vault_kb = statistics.mean(vault_bytes) / 1024
        print(f"memory per linked idle user ({idle_users} linked): Redis vault entry {vault_kb:.2f} KB "
              f"(used_memory delta {redis_kb:.2f} KB); "
              f"bot heap retained {retained / idle_users / 1024:.2f} KB (tracemalloc), RSS growth {rss_kb:.2f} KB")
        metrics = app[GRAPH].metrics.render().decode()
        errors = [line for line in metrics.splitlines() if line.startswith("qbot_chatsync_errors_total")]
        print("ChatSync errors:", errors or "none")
    finally:
        await served.stop()
        child.call("stop")
        redis_server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--idle-users", type=int, default=300)
    parser.add_argument("--warm-samples", type=int, default=500)
    parser.add_argument("--q-max-concurrency", type=int, default=0, help="QBOT_Q_MAX_CONCURRENCY (0: the default)")
    args = parser.parse_args()
    run_async(main(args.users, args.questions, args.idle_users, args.warm_samples, args.q_max_concurrency))
