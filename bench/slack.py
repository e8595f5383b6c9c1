"""Benchmark the Slack adapter: signed events for many linked users into /slack/events of one bot process.

Run by hand (`.venv/bin/python -m bench.slack`); it prints its figures and asserts nothing. Three processes: the
sandbox stand-ins (a child), the bot with the Slack adapter (a child, so its figures are its own), and this
one, which runs the fake Slack Web API and sends the events. Figures:
  - answered messages per second with an instant back end (event posted -> answer's chat.update received), and
    the bot process's CPU time per answered message;
  - the bot's RSS before and after that phase, and after a minute idle; Redis commands per answered message;
  - ack latency p50/p99 of /slack/events under a steady 110 questions/s against a Q taking 2 s (so ~200
    conversations in flight), for the acks sent while at least 200 were in flight;
  - the time for a burst of 2,000 questions against the 2 s back end, until the last answer lands in Slack, and
    the most ChatSync calls the Q stand-in had in flight at once;
  - IdP refreshes and STS calls per user over the run.
It ends with a table of each figure, its target (1,000 users, 5,000 questions: <= 2 ms CPU per answer, <= 50 MB
RSS growth, back within 20% after 60 s idle; 2,000 questions vs a 2 s Q within 3 s, >= 1,000 in flight; ack p99
<= 50 ms; 1 refresh and 1 STS call per user) and the figure measured before the work on capacity.
`--py-spy FILE` samples the bot during the instant phase (collapsed stacks; `pip install py-spy`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench.chain import pct
from bench.slack_world import start_slack_world
from qbot.cli import run_async
from sandbox.slack import (
    BOT_USER,
    TEAM,
    FakeSlack,
    signed_headers,
)


def redis_commands(url: str) -> Counter[str]:
    """Commands Redis has run so far, by name (INFO commandstats)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})


# -- the load ---------------------------------------------------------------------------------------------------


class Load:
    def __init__(self, bot_url: str, fake: FakeSlack) -> None:
        self.url = bot_url + "/slack/events"
        self.fake = fake
        self._n = 0
        self.on_stall: Callable[[], Awaitable[Any]] | None = None

    def _event(self, user: str) -> tuple[str, str]:
        self._n += 1
        ts = f"1700000000.{self._n:06d}"
        body = json.dumps({
            "team_id": TEAM, "type": "event_callback", "event_id": f"EvB{self._n:07d}", "api_app_id": "A0",
            "event_time": int(time.time()),
            "event": {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> How many vacation days do I get?",
                      "ts": ts, "channel": f"C{user}", "event_ts": ts},
        })
        return ts, body

    def answered(self) -> int:
        return len(self.fake.calls_to("chat.update"))

    async def burst(self, session: aiohttp.ClientSession, users: list[str], count: int,
                    concurrency: int) -> tuple[list[float], list[int], float]:
        """Post `count` events round-robin over users; returns ack latencies (ms), in-flight at each send, start."""
        latencies: list[float] = []
        in_flight: list[int] = []
        queue = [self._event(users[k % len(users)]) for k in range(count)]
        before = self.answered()
        sent = 0
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal sent
            while queue:
                _ts, body = queue.pop(0)
                in_flight.append(sent - (self.answered() - before))
                sent += 1
                headers = signed_headers(body, "application/json")
                t0 = time.perf_counter()
                async with session.post(self.url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, in_flight, started

    async def paced(self, session: aiohttp.ClientSession, users: list[str], rate: float,
                    seconds: float) -> tuple[list[float], list[int]]:
        """Events at a steady `rate` per second for `seconds`: ack latencies (ms) and in-flight at each send."""
        latencies: list[float] = []
        in_flight: list[int] = []
        before = self.answered()
        count = int(rate * seconds)
        started = time.perf_counter()

        async def one(k: int) -> None:
            _ts, body = self._event(users[k % len(users)])
            in_flight.append(k - (self.answered() - before))
            t0 = time.perf_counter()
            async with session.post(self.url, data=body, headers=signed_headers(body, "application/json")) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append((time.perf_counter() - t0) * 1000)

        posts = []
        for k in range(count):
            await asyncio.sleep(max(0.0, started + k / rate - time.perf_counter()))
            posts.append(asyncio.create_task(one(k)))
        await asyncio.gather(*posts)
        return latencies, in_flight

    async def until_answered(self, target: int, patience: float = 120) -> float:
        deadline = time.perf_counter() + patience
        while self.answered() < target:
            if time.perf_counter() > deadline:
                if self.on_stall is not None:
                    await self.on_stall()
                methods = sorted({c.method for c in self.fake.calls})
                raise TimeoutError(f"{self.answered()}/{target} answered; Slack saw {methods}")
            await asyncio.sleep(0.005)
        return time.perf_counter()


async def main(users: int, fast_questions: int, slow_questions: int, rate: float, profile: bool = False,
               idle_seconds: float = 60.0, q_max_concurrency: int = 0, split: bool = False,
               py_spy: str = "", slow_seconds: float = 2.0) -> None:
    world = await start_slack_world(
        users, {"QBOT_Q_MAX_CONCURRENCY": str(q_max_concurrency)} if q_max_concurrency else None, split=split
    )
    sandbox, fake, bot = world.sandbox, world.fake, world.bot
    load = Load(bot.url, fake)
    load.on_stall = lambda: bot.call("tasks")
    connector = aiohttp.TCPConnector(limit=256)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            shape = "a web and a worker process (--split)" if split else "one bot process"
            print(f"qbot Slack bench — {users} linked users, {shape}")
            linked: list[str] = await bot.call("link", users)

            # warm up: every user's credentials minted once
            await load.burst(session, linked, len(linked), 32)
            await load.until_answered(len(linked))

            # 1. instant back end: answered messages per second
            sandbox.call("delay", 0.0)
            target = load.answered() + fast_questions
            if profile:
                await bot.call("profile", True)
            sampler = None
            if py_spy:  # a sampling profile of the bot process (collapsed stacks), without cProfile's overhead
                sampler = await asyncio.create_subprocess_exec(
                    "py-spy", "record", "--pid", str(await bot.call("pid")), "--format", "raw", "--rate", "250",
                    "--nonblocking", "--output", py_spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            rss_before, _ = await bot.call("rss", True)
            commands_before = redis_commands(world.redis_server.url)
            cpu_before = await world.cpu()
            acks, _, started = await load.burst(session, linked, fast_questions, 64)
            done = await load.until_answered(target)
            cpu = (await world.cpu() - cpu_before) / fast_questions * 1000
            burst_ack_p99 = pct(acks, 0.99)
            if profile:
                await bot.call("profile", False)
            if sampler is not None:
                sampler.send_signal(signal.SIGINT)
                await sampler.wait()
            commands = redis_commands(world.redis_server.url) - commands_before
            print(f"instant Q: {fast_questions} answered in {done - started:.2f} s = "
                  f"{fast_questions / (done - started):.0f} answered/s (ack p50 {pct(acks, 0.5):.1f} ms, "
                  f"p99 {pct(acks, 0.99):.1f} ms); the bot process spent {cpu:.2f} ms CPU per answered message "
                  f"(= {1000 / cpu:.0f}/s per core), the rest of the machine ran the Q stand-in and this load")
            rss_after, rss_peak = await bot.call("rss")
            print(f"  target <= 2 ms CPU per answer with {users} distinct users: {cpu:.2f} ms; bot RSS "
                  f"{rss_before / 2**20:.0f} MB before, {rss_after / 2**20:.0f} MB after (peak "
                  f"{rss_peak / 2**20:.0f} MB): growth {(rss_after - rss_before) / 2**20:.0f} MB (target <= 50 MB); "
                  f"{await bot.call('threads')} threads")
            print(f"  Redis: {sum(commands.values()) / fast_questions:.1f} commands per answered message ("
                  + ", ".join(f"{name} {n / fast_questions:.2f}" for name, n in commands.most_common()) + ")")

            # 2. a 2 s back end and a steady stream of questions: ack latency with ~200 conversations in flight
            sandbox.call("delay", 2.0)
            target = load.answered() + int(rate * 4)
            acks, in_flight = await load.paced(session, linked, rate, 4)
            await load.until_answered(target)
            loaded = [a for a, n in zip(acks, in_flight, strict=True) if n >= 200]
            paced_ack_p99 = pct(loaded or acks, 0.99)
            print(f"2 s Q, {rate:.0f} questions/s for 4 s: ack p50 {pct(acks, 0.5):.1f} ms, "
                  f"p99 {pct(acks, 0.99):.1f} ms"
                  + (f"; with >= 200 in flight ({len(loaded)} acks): p50 {pct(loaded, 0.5):.1f} ms, "
                     f"p99 {pct(loaded, 0.99):.1f} ms" if loaded else "; never 200 in flight"))

            # 3. a burst of questions against the slow back end, until the last answer is in Slack
            sandbox.call("delay", slow_seconds)
            sandbox.call("stats")
            target = load.answered() + slow_questions
            acks, _, started = await load.burst(session, linked, slow_questions, 16)
            done = await load.until_answered(target)
            stats = sandbox.call("stats")
            slow_wall = done - started
            print(f"{slow_seconds:g} s Q: {slow_questions} questions answered in {slow_wall:.2f} s (ack p50 "
                  f"{pct(acks, 0.5):.1f} ms, p99 {pct(acks, 0.99):.1f} ms); max ChatSync in flight "
                  f"{stats['max_in_flight']} (target: 2,000 from 1,000 users within 3 s, "
                  f">= 1,000 in flight); {await bot.call('threads')} threads")
            sandbox.call("delay", 0.0)

            # 4. idle: does the memory go back down?
            rss_idle = rss_after
            if idle_seconds > 0:
                await asyncio.sleep(idle_seconds)
                rss_idle, _ = await bot.call("rss")
                print(f"after {idle_seconds:.0f} s idle: bot RSS {rss_idle / 2**20:.0f} MB "
                      f"({(rss_idle / rss_before - 1) * 100:+.0f}% of the {rss_before / 2**20:.0f} MB before the "
                      f"instant phase; target within 20%); {await bot.call('threads')} threads")

            refreshes = [stats["refreshes"].get(f"user{n:03d}", 0) for n in range(1, users + 1)]
            sts = [stats["sts"].get(f"user{n:03d}@example.com", 0) for n in range(1, users + 1)]
            mb = 2**20
            rows = [
                (f"bot CPU per answer, {users} users", "<= 2 ms", f"{cpu:.2f} ms", "20.5 ms (1,000 users)"),
                ("RSS growth over the instant phase", "<= 50 MB", f"{(rss_after - rss_before) / mb:.0f} MB",
                 "127 MB (120 -> 247 MB)"),
                (f"RSS after {idle_seconds:.0f} s idle", "within 20%", f"{(rss_idle / rss_before - 1) * 100:+.0f}%",
                 "+106% (stayed at 247 MB)"),
                (f"{slow_questions} questions vs a {slow_seconds:g} s Q", f"<= {slow_seconds + 1:g} s",
                 f"{slow_wall:.1f} s", "-"),
                ("ChatSync in flight at once", ">= 1,000", f"{stats['max_in_flight']}",
                 "320 (one thread each)"),
                ("ack p99, 2 s Q, >= 200 in flight", "<= 50 ms", f"{paced_ack_p99:.0f} ms", "229 ms (30 at once)"),
                ("ack p99, instant Q, CPU saturated", "<= 50 ms", f"{burst_ack_p99:.0f} ms", "-"),
                ("IdP refreshes / STS calls per user", "1 / 1",
                 f"{min(refreshes)}-{max(refreshes)} / {min(sts)}-{max(sts)}", "1 / 1"),
            ]
            print("\nfigure                                  target       today        before (issue 14's bench)")
            for figure, goal, today, before in rows:
                print(f"{figure:<40}{goal:<13}{today:<13}{before}")
    finally:
        await world.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--fast-questions", type=int, default=5000)
    parser.add_argument("--slow-questions", type=int, default=2000)
    parser.add_argument("--slow-seconds", type=float, default=2.0,
                        help="how long Q takes in the burst phase (longer: more ChatSync in flight at once)")
    parser.add_argument("--rate", type=float, default=110.0, help="questions per second in the ack phase")
    parser.add_argument("--profile", action="store_true", help="print the bot's cProfile of the instant phase")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle time before the last RSS reading")
    parser.add_argument("--q-max-concurrency", type=int, default=0, help="QBOT_Q_MAX_CONCURRENCY (0: the default)")
    parser.add_argument("--py-spy", default="", metavar="FILE",
                        help="sample the bot with py-spy (pip install py-spy) during the instant phase into FILE")
    parser.add_argument("--split", action="store_true", help="a --role web process takes events, a worker answers")
    args = parser.parse_args()
    run_async(main(args.users, args.fast_questions, args.slow_questions, args.rate, args.profile, args.idle_seconds,
                   args.q_max_concurrency, args.split, args.py_spy, args.slow_seconds))
