"""The durable turn stream against a real Redis: taken once per delivery, sealed, run by one worker, claimed
from a worker that died (and only then), never more in work than a process allows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.cipher import TokenCipher
from bot.turn_queue import GROUP, STREAM, QueuedTurn, TurnQueue, TurnWorkers
from tests.conftest import until

SECRET = "What is the Q3 acquisition target?"


@pytest.fixture
def queue(redis: Redis) -> TurnQueue:
    return TurnQueue(redis, TokenCipher.ephemeral(), claim_idle_seconds=0.3)


async def test_a_delivery_is_taken_once_under_any_of_its_names_and_sealed(queue: TurnQueue, redis: Redis) -> None:
    assert await queue.submit("slack", ["event:E1", "message:C1:1.0"], SECRET)
    assert not await queue.submit("slack", ["event:E2", "message:C1:1.0"], SECRET)  # a retry under a new event id
    assert not await queue.submit("slack", ["event:E1"], SECRET)
    assert await queue.submit("teams", ["event:E1"], "another platform's E1")
    entries: Any = await redis.xrange(STREAM)
    assert len(entries) == 2
    assert all(SECRET.encode() not in value for _id, fields in entries for value in fields.values())


async def test_a_worker_runs_each_turn_once_and_removes_it(queue: TurnQueue, redis: Redis) -> None:
    ran: list[QueuedTurn] = []

    async def handle(turn: QueuedTurn) -> None:
        ran.append(turn)

    workers = TurnWorkers(queue, {"slack": handle}, block_seconds=0.1)
    await workers.start()
    try:
        for n in range(5):
            await queue.submit("slack", [f"event:{n}"], f"question {n}")
        await until(lambda: len(ran) == 5)
        await until(lambda: workers.in_work == 0)
    finally:
        await workers.stop()
    assert sorted(t.payload for t in ran) == [f"question {n}" for n in range(5)]
    assert all(t.attempt == 1 and t.platform == "slack" for t in ran)
    assert await redis.xlen(STREAM) == 0
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_the_turn_of_a_worker_that_died_is_claimed_and_run_again(queue: TurnQueue, redis: Redis) -> None:
    await queue.ensure_group()
    await queue.submit("slack", ["event:E1"], SECRET)
    taken: Any = await redis.xreadgroup(GROUP, "dead-worker", {STREAM: ">"}, count=1)  # read, then it died
    assert taken and taken[0][1]
    ran: list[QueuedTurn] = []

    async def handle(turn: QueuedTurn) -> None:
        ran.append(turn)

    claimed: list[int] = []
    workers = TurnWorkers(queue, {"slack": handle}, block_seconds=0.1, on_claimed=claimed.append)
    await workers.start()
    try:
        await until(lambda: len(ran) == 1)
        await until(lambda: workers.in_work == 0)
    finally:
        await workers.stop()
    assert ran[0].payload == SECRET and ran[0].attempt == 2 and claimed == [1]
    assert await redis.xlen(STREAM) == 0


async def test_a_live_workers_long_turn_is_not_taken_from_it(queue: TurnQueue, redis: Redis) -> None:
    release = asyncio.Event()
    first: list[QueuedTurn] = []
    second: list[QueuedTurn] = []

    async def slow(turn: QueuedTurn) -> None:
        first.append(turn)
        await release.wait()

    async def fast(turn: QueuedTurn) -> None:
        second.append(turn)

    busy = TurnWorkers(queue, {"slack": slow}, consumer="busy", block_seconds=0.1)
    await busy.start()
    await queue.submit("slack", ["event:E1"], SECRET)
    await until(lambda: len(first) == 1)
    other = TurnWorkers(queue, {"slack": fast}, consumer="other", block_seconds=0.1)
    await other.start()
    try:
        await asyncio.sleep(queue.claim_idle_seconds * 5)  # five leases pass while the turn is worked on
        [pending] = await redis.xpending_range(STREAM, GROUP, "-", "+", 10)
        assert pending["consumer"] == b"busy" and second == []
        release.set()
        await until(lambda: busy.in_work == 0)
    finally:
        await busy.stop()
        await other.stop()
    assert await redis.xlen(STREAM) == 0 and second == []


async def test_no_more_turns_are_in_work_than_the_process_allows(queue: TurnQueue, redis: Redis) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def handle(turn: QueuedTurn) -> None:
        started.append(turn.payload)
        await release.wait()

    workers = TurnWorkers(queue, {"slack": handle}, concurrency=2, block_seconds=0.1)
    await workers.start()
    try:
        for n in range(5):
            await queue.submit("slack", [f"event:{n}"], f"q{n}")
        await until(lambda: len(started) == 2)
        assert (await redis.xpending(STREAM, GROUP))["pending"] == 2  # the other three wait in the stream
        assert workers.in_work == 2
        release.set()
        await until(lambda: len(started) == 5)
        await until(lambda: workers.in_work == 0)
    finally:
        await workers.stop()
    assert await redis.xlen(STREAM) == 0


async def test_an_entry_that_cannot_be_opened_is_dropped_not_run(queue: TurnQueue, redis: Redis) -> None:
    await queue.ensure_group()
    await redis.xadd(STREAM, {"p": "slack", "b": b"forged", "t": "0"})
    ran: list[QueuedTurn] = []

    async def handle(turn: QueuedTurn) -> None:
        ran.append(turn)

    workers = TurnWorkers(queue, {"slack": handle}, block_seconds=0.1)
    await workers.start()
    try:
        await queue.submit("slack", ["event:after"], "a real one")
        await until(lambda: len(ran) == 1)
        await until(lambda: workers.in_work == 0)
    finally:
        await workers.stop()
    assert [t.payload for t in ran] == ["a real one"]
    assert await redis.xlen(STREAM) == 0


async def test_metrics_show_the_backlog_and_the_turns_claimed_from_dead_workers(
    queue: TurnQueue, redis: Redis
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from bot.turn_metrics import TurnStreamMetrics

    await queue.ensure_group()
    for n in range(3):
        await queue.submit("slack", [f"event:{n}"], f"q{n}")
    await redis.xreadgroup(GROUP, "dead-worker", {STREAM: ">"}, count=1)
    ran: list[QueuedTurn] = []

    async def handle(turn: QueuedTurn) -> None:
        ran.append(turn)

    workers = TurnWorkers(queue, {"slack": handle}, block_seconds=0.1)
    figures = TurnStreamMetrics(queue, workers)
    registry = CollectorRegistry()
    registry.register(figures)
    await figures.refresh()
    text = generate_latest(registry).decode()
    assert "qbot_turn_stream_length 3.0" in text and "qbot_turn_stream_pending 1.0" in text
    assert "qbot_turns_claimed_total 0.0" in text
    await workers.start()
    try:
        await until(lambda: len(ran) == 3)
        await until(lambda: workers.in_work == 0)
    finally:
        await workers.stop()
    await figures.refresh()
    text = generate_latest(registry).decode()
    assert "qbot_turn_stream_length 0.0" in text and "qbot_turn_stream_pending 0.0" in text
    assert "qbot_turns_claimed_total 1.0" in text


async def test_dead_workers_turns_behind_a_live_workers_are_claimed_too(queue: TurnQueue, redis: Redis) -> None:
    """XAUTOCLAIM looks at a bounded number of pending entries (10 x COUNT): claiming only from the start of the
    pending list would never reach dead workers' turns behind a long run of live ones."""
    await queue.ensure_group()
    for n in range(25):
        await queue.submit("slack", [f"live:{n}"], f"live {n}")
    live: Any = await redis.xreadgroup(GROUP, "busy", {STREAM: ">"}, count=25)
    live_ids = [entry_id for entry_id, _ in live[0][1]]
    for n in range(2):
        await queue.submit("slack", [f"dead:{n}"], f"dead {n}")
    await redis.xreadgroup(GROUP, "dead-worker", {STREAM: ">"}, count=2)

    async def keep_busy_alive() -> None:
        while True:
            await redis.xclaim(STREAM, GROUP, "busy", 0, live_ids, justid=True)
            await asyncio.sleep(0.02)

    renewing = asyncio.create_task(keep_busy_alive())
    ran: list[str] = []

    async def handle(turn: QueuedTurn) -> None:
        ran.append(turn.payload)

    workers = TurnWorkers(queue, {"slack": handle}, concurrency=1, block_seconds=0.1)
    await workers.start()
    try:
        await until(lambda: len(ran) == 2)
    finally:
        await workers.stop()
        renewing.cancel()
    assert sorted(ran) == ["dead 0", "dead 1"]


async def test_a_turn_taken_over_is_not_claimed_back_by_its_slow_first_worker(
    queue: TurnQueue, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def slow(turn: QueuedTurn) -> None:
        await release.wait()

    first = TurnWorkers(queue, {"slack": slow}, consumer="first", block_seconds=0.1)
    await first.start()
    try:
        await queue.submit("slack", ["event:E1"], SECRET)
        await until(lambda: first.in_work == 1)
        [entry] = await redis.xpending_range(STREAM, GROUP, "-", "+", 1)
        await redis.xclaim(STREAM, GROUP, "second", 0, [entry["message_id"]])  # judged dead, taken over
        await until(lambda: "taken over by another worker" in caplog.text)  # the first one's next renewal
        [after] = await redis.xpending_range(STREAM, GROUP, "-", "+", 1)
        assert after["consumer"] == b"second"
    finally:
        release.set()
        await first.stop()
