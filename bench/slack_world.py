"""The world a Slack bench runs in, each part in a process of its own where it matters: Redis, the sandbox
stand-ins (a child), the bot (a child, driven over a pipe, so its CPU and memory figures are its own) and the
fake Slack Web API on the bench's own loop."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench.chain import SandboxChild, link_user
from qbot.cli import run_async
from qbot.embedded_redis import EmbeddedRedis
from sandbox.serving import Served, bind, url_of
from sandbox.slack import BOT_TOKEN, SIGNING_SECRET, TEAM, FakeSlack

# -- the bot, in a child process --------------------------------------------------------------------------------


def resident_memory(*, reset_peak: bool = False) -> tuple[int, int]:
    """This process's resident size and its peak since start (or the last reset), in bytes (Linux /proc)."""
    import gc

    gc.collect()
    if reset_peak:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # the peak resident size (VmHWM) starts again from now
    with open("/proc/self/status") as status_file:
        status = dict(line.split(":", 1) for line in status_file.read().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024


def _bot_process(conn: Connection, env: dict[str, str], port: int) -> None:
    run_async(_bot_main(conn, env, port))


async def _bot_main(conn: Connection, env: dict[str, str], port: int) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="bot %(levelname)s %(name)s: %(message)s")
    from adapters.slack.app import slack_adapter
    from bot.config import Settings
    from bot.model import ChatIdentity
    from qbot.app import GRAPH, build_app

    settings = Settings.from_env(env)
    app = build_app(settings, [slack_adapter])
    served = Served(app, bind("127.0.0.1", port))
    await served.start()
    core = app[GRAPH].core
    conn.send(served.url)
    loop = asyncio.get_running_loop()
    while True:
        command, arg = await loop.run_in_executor(None, conn.recv)
        if command == "link":  # Slack users U001.. linked as the IdP's user001.., through the real sign-in
            identities = [ChatIdentity("slack", TEAM, f"U{n:03d}") for n in range(1, arg + 1)]
            async with httpx.AsyncClient(follow_redirects=False, timeout=30) as http:
                for start in range(0, len(identities), 8):
                    await asyncio.gather(*(
                        link_user(core, http, identity, f"user{n:03d}")
                        for n, identity in enumerate(identities[start:start + 8], start + 1)
                    ))
            conn.send([i.user for i in identities])
        elif command == "rss":  # (resident now, peak since the last reset) in bytes; arg True resets the peak
            conn.send(resident_memory(reset_peak=bool(arg)))
        elif command == "downloads":  # the file budget: (total, per user, high-water mark, held now)
            budget = app[GRAPH].core.downloads
            conn.send((budget.total_bytes, budget.per_user_bytes, budget.high_water, budget.held))
        elif command == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(usage.ru_utime + usage.ru_stime)
        elif command == "tasks":  # a stall's diagnosis: where every task of the bot waits, printed
            for task in asyncio.all_tasks():
                task.print_stack(limit=6)
            conn.send(len(asyncio.all_tasks()))
        elif command == "pid":
            conn.send(os.getpid())
        elif command == "threads":
            import threading

            conn.send(threading.active_count())
        elif command == "profile" and arg:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            conn.send(None)
        elif command == "profile":
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            conn.send(None)
        elif command == "stop":
            await served.stop()
            conn.send(None)
            return


class BotChild:
    """The bot process; its pipe is waited on off the event loop, which serves the fake Slack meanwhile."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=_bot_process, args=(child, env, port), daemon=True
        )
        self.process.start()
        self.url = ""

    async def started(self) -> None:
        self.url = await asyncio.to_thread(self.conn.recv)

    async def call(self, command: str, arg: Any = None) -> Any:
        self.conn.send((command, arg))
        return await asyncio.to_thread(self.conn.recv)


@dataclass
class SlackWorld:
    """Everything a Slack bench runs, each part in a process of its own where it matters: Redis, the sandbox,
    the bot; the fake Slack Web API on this process's loop."""

    redis_server: EmbeddedRedis
    sandbox: SandboxChild
    fake: FakeSlack
    fake_served: Served
    bot: BotChild
    worker: BotChild | None = None  # --split: the bot above is `--role web`, this one `--role worker`

    async def cpu(self) -> float:
        """CPU seconds of every bot process together."""
        return sum([await child.call("cpu") for child in (self.bot, self.worker) if child is not None])

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.call("stop")
        await self.bot.call("stop")
        self.sandbox.call("stop")
        await self.fake_served.stop()
        self.redis_server.stop()


async def start_slack_world(
    users: int, env_extra: dict[str, str] | None = None, *, split: bool = False
) -> SlackWorld:
    redis_server = EmbeddedRedis().start()
    probe = bind("127.0.0.1", 0)
    port = probe.getsockname()[1]
    bot_url = url_of(probe)
    probe.close()
    sandbox = SandboxChild(bot_url, users)
    fake = FakeSlack()
    fake_served = Served(fake.app(), bind("127.0.0.1", 0))
    await fake_served.start()
    fake.url = fake_served.url
    env = {
        **sandbox.env, "QBOT_REDIS_URL": redis_server.url, "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(),
        "QBOT_PUBLIC_URL": bot_url, "QBOT_SLACK_BOT_TOKEN": BOT_TOKEN, "QBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "QBOT_SLACK_API_URL": fake.api_url(),
        "QBOT_CHANNEL_REPLY_MODE": "thread",  # answers land as chat.update of the placeholder: what is counted
        **(env_extra or {}),
    }
    if not split:
        bot = BotChild(env, port)
        await bot.started()
        return SlackWorld(redis_server, sandbox, fake, fake_served, bot)
    bot = BotChild({**env, "QBOT_ROLE": "web"}, port)
    await bot.started()
    probe = bind("127.0.0.1", 0)
    worker_port = probe.getsockname()[1]
    probe.close()
    worker = BotChild({**env, "QBOT_ROLE": "worker"}, worker_port)
    await worker.started()
    return SlackWorld(redis_server, sandbox, fake, fake_served, bot, worker)
