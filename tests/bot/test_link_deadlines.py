"""The deadline registry against a real Redis: each overdue link is claimed once, deadlines only move later."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.link_deadlines import LinkDeadlines
from bot.model import ChatIdentity

ODD = ChatIdentity("web", "t:1/%", "u:é 2")


async def test_only_overdue_links_are_claimed_and_identities_come_back_whole(redis: Redis) -> None:
    deadlines = LinkDeadlines(redis)
    await deadlines.set(ODD, 100.0)
    await deadlines.set(ChatIdentity("web", "", "later"), 200.0)
    assert await deadlines.claim_due(99.0) == []
    assert await deadlines.claim_due(150.0) == [ODD]
    assert await deadlines.claim_due(150.0) == []  # claimed means removed
    assert await deadlines.claim_due(200.0) == [ChatIdentity("web", "", "later")]


async def test_a_deadline_only_moves_later(redis: Redis) -> None:
    deadlines = LinkDeadlines(redis)
    await deadlines.set(ODD, 100.0)
    await deadlines.set(ODD, 50.0)  # an older cookie's use must not end a session early
    assert await deadlines.claim_due(99.0) == []
    await deadlines.set(ODD, 300.0)
    assert await deadlines.claim_due(299.0) == []
    assert await deadlines.claim_due(300.0) == [ODD]


async def test_concurrent_sweepers_claim_each_link_once(redis: Redis) -> None:
    deadlines = LinkDeadlines(redis)
    everyone = [ChatIdentity("web", "", f"s{n}") for n in range(250)]
    for identity in everyone:
        await deadlines.set(identity, 10.0)
    batches = await asyncio.gather(*(deadlines.claim_due(20.0, limit=7) for _ in range(60)))
    claimed = [identity for batch in batches for identity in batch]
    assert sorted(claimed, key=lambda i: i.user) == sorted(everyone, key=lambda i: i.user)
