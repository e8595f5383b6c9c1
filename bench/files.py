"""Benchmark the file-download budget: a burst of DMs with big files into one bot process.

Run by hand (`.venv/bin/python -m bench.files`); it prints its figures and asserts nothing. Three processes:
the sandbox stand-ins (a child; Q Business reads the attachments), the bot with the Slack adapter (a child,
so its memory is its own), and this one, which runs the fake Slack Web API and file server and sends the
events. The burst: 20 linked users each send one DM with 5 files of 10 MB at once (the review's case: the bot
went from 117 MB to 2.7 GB RSS). Figures: the bot's resident memory before the burst and at its peak, the
budget's high-water mark, and how the 20 DMs were answered. Target: the peak at most 400 MB above the start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp

from bench.slack_world import start_slack_world
from qbot.cli import run_async
from sandbox.slack import TEAM, FakeSlack, signed_headers

MB = 1024 * 1024
TARGET_GROWTH = 400 * MB


def _file_bytes(n: int, size: int) -> bytes:
    line = f"Report {n}: the Zephyr launch codename is BLUEBIRD; the budget is {n} thousand euros.\n".encode()
    return (line * (size // len(line) + 1))[:size]


def _dm(user: str, ts: str, files: list[dict[str, Any]]) -> str:
    event: dict[str, Any] = {"type": "message", "channel_type": "im", "channel": "D" + user, "user": user,
                             "text": "What is the Zephyr launch codename?", "ts": ts, "event_ts": ts, "team": TEAM}
    if files:
        event.update(subtype="file_share", files=files)
    return json.dumps({"team_id": TEAM, "type": "event_callback", "event_id": f"Ev{user}{ts}", "api_app_id": "A0",
                       "event_time": int(time.time()), "event": event})


def _answered(fake: FakeSlack, asked: set[tuple[str, str]]) -> list[dict[str, Any]]:
    return [m for (channel, _ts), m in list(fake.messages.items())
            if (channel, m.get("thread_ts")) in asked and "Thinking" not in m["text"]]


async def _until_answered(fake: FakeSlack, asked: set[tuple[str, str]], patience: float) -> list[dict[str, Any]]:
    deadline = time.perf_counter() + patience
    for _ in range(int(patience * 20)):
        done = _answered(fake, asked)
        if len(done) == len(asked) or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.05)
    return _answered(fake, asked)


async def main(users: int, files_per_dm: int, file_mb: int, env_extra: dict[str, str]) -> None:
    world = await start_slack_world(users, env_extra)
    sandbox, fake, bot = world.sandbox, world.fake, world.bot
    shared = [fake.add_file(f"F{k}", f"report{k}.txt", _file_bytes(k, file_mb * MB)) for k in range(files_per_dm)]
    try:
        async with aiohttp.ClientSession() as session:
            linked: list[str] = await bot.call("link", users)
            # warm up: every user's credentials minted and a small answer given, as in normal operation
            warm: set[tuple[str, str]] = set()
            for n, user in enumerate(linked):
                ts = f"1600000000.{n:06d}"
                warm.add(("D" + user, ts))
                body = _dm(user, ts, [])
                async with session.post(bot.url + "/slack/events", data=body,
                                        headers=signed_headers(body, "application/json")) as response:
                    assert response.status == 200, response.status
            await _until_answered(fake, warm, 120)
            before, _ = await bot.call("rss", True)
            budget = await bot.call("downloads")
            print(f"qbot file burst — {users} users x 1 DM x {files_per_dm} files x {file_mb} MB, one bot process; "
                  + (f"budget {budget[0] // MB} MB in all, {budget[1] // MB} MB per user" if budget else "no budget"))
            sandbox.call("timings")  # from here on: the Q stand-in's time per request
            asked: set[tuple[str, str]] = set()
            posts = []
            started = time.perf_counter()
            for n, user in enumerate(linked, 1):
                ts = f"1700000000.{n:06d}"
                asked.add(("D" + user, ts))
                body = _dm(user, ts, shared)
                posts.append(session.post(bot.url + "/slack/events", data=body,
                                          headers=signed_headers(body, "application/json")))
            for response in await asyncio.gather(*posts):
                assert response.status == 200, response.status
                response.release()
            done = await _until_answered(fake, asked, 900)
            elapsed = time.perf_counter() - started
            now, peak = await bot.call("rss")
            budget = await bot.call("downloads")
            q_seconds = sorted(t for t in sandbox.call("timings") if t > 0.5)  # the ChatSyncs with files
            with_notes = sum(1 for m in done if "not read" in json.dumps(m.get("blocks") or []))
            from_files = sum(1 for m in done if "BLUEBIRD" in m["text"])
            print(f"answered {len(done)}/{len(asked)} DMs in {elapsed:.1f} s: {from_files} from their files, "
                  f"{with_notes} with a note about files left out")
            if q_seconds:
                print(f"the Q stand-in took {q_seconds[len(q_seconds) // 2]:.1f} s (median) per ChatSync with "
                      f"{files_per_dm * file_mb} MB of files; DMs waiting longer than QBOT_FILE_WAIT_SECONDS for "
                      "room were answered without their files, with a note")
            held = f"; file bytes held at most {budget[2] / MB:.0f} MB, now {budget[3] / MB:.0f} MB" if budget else ""
            print(f"bot RSS before the burst {before / MB:.0f} MB, peak {peak / MB:.0f} MB "
                  f"(+{(peak - before) / MB:.0f} MB; target +{TARGET_GROWTH // MB} MB), after {now / MB:.0f} MB{held}")
    finally:
        await world.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--files", type=int, default=5, help="files per DM")
    parser.add_argument("--file-mb", type=int, default=10)
    parser.add_argument("--budget-mb", help="QBOT_FILE_BUDGET_MB for the bot (its default otherwise)")
    args = parser.parse_args()
    extra = {"QBOT_FILE_BUDGET_MB": args.budget_mb} if args.budget_mb else {}
    run_async(main(args.users, args.files, args.file_mb, extra))
