"""Conversation mappings against a real Redis: per identity and thread, expiring, bounded, owned."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from redis.asyncio import Redis

from bot.conversations import Conversations
from bot.model import ChatIdentity, ConversationRef
from bot.redis_lock import RedisLock
from tests.conftest import expire_now

ALICE = ChatIdentity("slack", "T1", "U-alice")
BOB = ChatIdentity("slack", "T1", "U-bob")
DAY = 24 * 3600


def cid(n: int) -> str:
    return f"{n:08d}-0000-4000-8000-000000000000"


async def test_save_then_get_continues_the_thread(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    assert await conversations.get(ALICE, "C1", "171.1") is None
    await conversations.save(ALICE, "C1", "171.1", cid(1), "m-1")
    assert await conversations.get(ALICE, "C1", "171.1") == ConversationRef(cid(1), "m-1")
    await conversations.save(ALICE, "C1", "171.1", cid(1), "m-2")  # next turn moves the parent on
    assert await conversations.get(ALICE, "C1", "171.1") == ConversationRef(cid(1), "m-2")
    assert await conversations.get(ALICE, "C1", "171.2") is None  # a new thread starts a new one
    assert await conversations.get(ALICE, "C2", "171.1") is None


async def test_two_identities_in_one_thread_never_share(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    await conversations.save(ALICE, "C1", "t", cid(1), "m-a")
    assert await conversations.get(BOB, "C1", "t") is None
    await conversations.save(BOB, "C1", "t", cid(2), "m-b")
    assert await conversations.get(ALICE, "C1", "t") == ConversationRef(cid(1), "m-a")
    assert await conversations.get(BOB, "C1", "t") == ConversationRef(cid(2), "m-b")
    assert await conversations.owner(cid(1)) == ALICE.key
    assert await conversations.owner(cid(2)) == BOB.key


async def test_channel_and_thread_cannot_collide(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    await conversations.save(ALICE, "a:b", "c", cid(1), "m")
    assert await conversations.get(ALICE, "a", "b:c") is None
    await conversations.save(ALICE, "DM", "", cid(2), "m")  # a DM without threads
    assert await conversations.get(ALICE, "DM", "") == ConversationRef(cid(2), "m")


async def test_owner_is_unknown_for_strangers(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    assert await conversations.owner(cid(9)) is None
    assert await conversations.owner("") is None
    assert await conversations.owner("x" * 10_000) is None


async def test_expiry_is_set_and_refreshed_on_use(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    await conversations.save(ALICE, "C1", "t", cid(1), "m")
    key = Conversations.threads_key(ALICE)
    assert DAY - 5 <= await redis.ttl(key) <= DAY
    assert DAY - 5 <= await redis.ttl(Conversations.owner_key(cid(1))) <= DAY
    await redis.expire(key, 100)
    assert await conversations.get(ALICE, "C1", "t") is not None
    assert DAY - 5 <= await redis.ttl(key) <= DAY


async def test_mappings_expire(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=1)
    await conversations.save(ALICE, "C1", "t", cid(1), "m")
    threads, owner = Conversations.threads_key(ALICE), Conversations.owner_key(cid(1))
    assert 0 < await redis.pttl(threads) <= 1000 and 0 < await redis.pttl(owner) <= 1000
    await expire_now(redis, threads, owner)
    assert await conversations.get(ALICE, "C1", "t") is None
    assert await conversations.owner(cid(1)) is None


async def test_an_entry_expires_even_while_its_identity_stays_active(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    await conversations.save(ALICE, "C1", "old", cid(1), "m")
    import bot.conversations as module

    real_time = module.time.time
    monkeypatch.setattr(module.time, "time", lambda: real_time() + DAY + 60)
    await conversations.save(ALICE, "C1", "new", cid(2), "m")  # keeps the hash alive
    assert await conversations.get(ALICE, "C1", "old") is None
    assert await conversations.get(ALICE, "C1", "new") == ConversationRef(cid(2), "m")


async def test_forget_drops_one_thread_and_keeps_ownership(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    await conversations.save(ALICE, "C1", "t1", cid(1), "m")
    await conversations.save(ALICE, "C1", "t2", cid(2), "m")
    assert await conversations.forget(ALICE, "C1", "t1") == cid(1)
    assert await conversations.forget(ALICE, "C1", "t1") is None
    assert await conversations.get(ALICE, "C1", "t1") is None
    assert await conversations.get(ALICE, "C1", "t2") == ConversationRef(cid(2), "m")
    assert await conversations.owner(cid(1)) == ALICE.key  # feedback on earlier answers still works


async def test_forget_all_removes_every_mapping_of_that_identity_only(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    for n in range(3):
        await conversations.save(ALICE, "C1", f"t{n}", cid(n), "m")
    await conversations.save(ALICE, "C1", "t0", cid(0), "m-later")  # same conversation, later turn
    await conversations.save(BOB, "C1", "t0", cid(10), "m")
    await redis.set(Conversations.owner_key(cid(2)), BOB.key)  # an owner record that is not alice's
    assert sorted(await conversations.forget_all(ALICE)) == [cid(0), cid(1), cid(2)]
    for n in range(3):
        assert await conversations.get(ALICE, "C1", f"t{n}") is None
    assert await conversations.owner(cid(0)) is None
    assert await conversations.owner(cid(1)) is None
    assert await conversations.owner(cid(2)) == BOB.key  # not alice's to delete
    assert await conversations.get(BOB, "C1", "t0") == ConversationRef(cid(10), "m")
    assert await conversations.owner(cid(10)) == BOB.key
    assert await conversations.forget_all(ALICE) == []


async def test_threads_per_identity_are_bounded(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY, max_threads=8)
    for n in range(30):
        await conversations.save(ALICE, "C1", f"t{n}", cid(n), "m")
        await asyncio.sleep(0.002)  # distinct save times
        assert await redis.hlen(Conversations.threads_key(ALICE)) <= 8
    assert await conversations.get(ALICE, "C1", "t29") == ConversationRef(cid(29), "m")
    assert await conversations.get(ALICE, "C1", "t28") == ConversationRef(cid(28), "m")
    assert await conversations.get(ALICE, "C1", "t0") is None


async def test_works_with_decoded_responses(redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        conversations = Conversations(client, ttl_seconds=DAY, max_threads=2)
        for n in range(4):
            await conversations.save(ALICE, "C1", f"t{n}", cid(n), "m")
        assert await conversations.get(ALICE, "C1", "t3") == ConversationRef(cid(3), "m")
        assert await conversations.owner(cid(3)) == ALICE.key
        assert await conversations.forget(ALICE, "C1", "t3") == cid(3)
        # one entry is left of the two kept (which one depends on same-millisecond saves), read back as text
        (left,) = await conversations.forget_all(ALICE)
        assert left in {cid(n) for n in range(3)}
        assert await conversations.forget_all(ALICE) == []
    finally:
        await client.aclose()


async def test_pin_turn_keeps_the_first_deliverys_conversation(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    store = Conversations(client, 3600)
    first = ConversationRef("c" * 36, "m" * 36)
    assert await store.pin_turn("tok-1", first) == first
    later = ConversationRef("c" * 36, "n" * 36)
    assert await store.pin_turn("tok-1", later) == first  # the redelivery repeats the first request
    assert await store.pin_turn("tok-2", None) is None
    assert await store.pin_turn("tok-2", later) is None
    await client.aclose()


async def test_begin_turn_pins_the_threads_conversation_for_the_turn_in_one_step(redis: Redis) -> None:
    store = Conversations(redis, ttl_seconds=DAY)
    assert await store.begin_turn(ALICE, "C1", "t", "tok-new") is None  # no conversation yet: a new one
    await store.save(ALICE, "C1", "t", cid(1), "m-1")
    assert await store.begin_turn(ALICE, "C1", "t", "tok-1") == ConversationRef(cid(1), "m-1")
    await store.save(ALICE, "C1", "t", cid(1), "m-2")  # tok-1's answer moved the thread on
    assert await store.begin_turn(ALICE, "C1", "t", "tok-1") == ConversationRef(cid(1), "m-1")  # its redelivery
    assert await store.begin_turn(ALICE, "C1", "t", "tok-2") == ConversationRef(cid(1), "m-2")  # the next turn
    assert await store.begin_turn(ALICE, "C1", "t", "tok-new") is None  # pinned as new, stays new
    assert await store.begin_turn(BOB, "C1", "t", "tok-bob") is None  # another identity: its own thread
    assert 0 < await redis.ttl(Conversations.threads_key(ALICE)) <= DAY


async def test_begin_turn_treats_an_expired_or_broken_entry_as_a_new_conversation(redis: Redis) -> None:
    store = Conversations(redis, ttl_seconds=DAY)
    day_ago_ms = int((time.time() - DAY - 60) * 1000)
    key = Conversations.threads_key(ALICE)
    await redis.hset(key, "C1:old", json.dumps([cid(1), "m-1", day_ago_ms]))
    await redis.hset(key, "C1:broken", "not json")
    await redis.hset(key, "C1:wrong", json.dumps([1, 2, 3]))
    assert await store.begin_turn(ALICE, "C1", "old", "tok-old") is None
    assert await store.begin_turn(ALICE, "C1", "broken", "tok-broken") is None
    assert await store.begin_turn(ALICE, "C1", "wrong", "tok-wrong") is None


async def test_saving_a_turns_answer_lets_its_lock_go_in_the_same_step_only_if_still_ours(redis: Redis) -> None:
    conversations = Conversations(redis, ttl_seconds=DAY)
    lock = RedisLock(redis, "qbot:lock:turn:test", ttl_seconds=10, renew=True)
    assert await lock.acquire()
    await conversations.save(ALICE, "C1", "t", cid(1), "m-1", turn=lock)
    assert await redis.exists(lock.key) == 0  # the thread's next turn may start: its parent is saved
    assert await conversations.get(ALICE, "C1", "t") == ConversationRef(cid(1), "m-1")
    assert not await lock.release()  # nothing left to let go

    lapsed = RedisLock(redis, "qbot:lock:turn:test", ttl_seconds=10)
    assert await lapsed.acquire()
    await redis.set(lapsed.key, "another holder's token")  # it lapsed and another turn took the thread
    await conversations.save(ALICE, "C1", "t", cid(1), "m-2", turn=lapsed)
    assert await redis.get(lapsed.key) == b"another holder's token"  # not ours: left alone
    assert await conversations.get(ALICE, "C1", "t") == ConversationRef(cid(1), "m-2")
