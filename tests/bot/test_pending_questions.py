"""The question kept while its asker signs in again (SAML mode), against a real Redis: sealed, for the link's
lifetime, handed out once and only to its asker."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from bot.cipher import TokenCipher
from bot.model import ChatIdentity, IncomingMessage
from bot.pending_questions import PREFIX, PendingQuestions

ALICE = ChatIdentity("slack", "T1", "U-alice")
BOB = ChatIdentity("slack", "T1", "U-bob")
SECRET_QUESTION = "What is the Q3 acquisition target?"


@pytest.fixture
def pending(redis: Redis) -> PendingQuestions:
    return PendingQuestions(redis, TokenCipher([Fernet.generate_key().decode()]), keep_seconds=600)


def asked(identity: ChatIdentity = ALICE, text: str = SECRET_QUESTION) -> IncomingMessage:
    return IncomingMessage(identity, text, channel="C1", thread="1.0", message_id="1.0", shared=True,
                           profile_email="alice@example.com")


async def test_a_kept_question_comes_back_whole_and_only_once(pending: PendingQuestions) -> None:
    await pending.keep(asked(), "where to answer")
    taken = await pending.take(ALICE)
    assert taken is not None and taken.message == asked() and taken.address == "where to answer"
    assert await pending.take(ALICE) is None


async def test_the_question_is_sealed_and_lives_as_long_as_the_link(pending: PendingQuestions, redis: Redis) -> None:
    await pending.keep(asked())
    [key] = [k async for k in redis.scan_iter(PREFIX + "*")]
    assert SECRET_QUESTION.encode() not in await redis.get(key)
    assert b"U-alice" not in key
    assert 590 < await redis.ttl(key) <= 600


async def test_the_newest_question_is_the_one_kept(pending: PendingQuestions) -> None:
    await pending.keep(asked(text="first"))
    await pending.keep(asked(text="second"))
    taken = await pending.take(ALICE)
    assert taken is not None and taken.message.text == "second"


async def test_nobody_takes_another_users_question(pending: PendingQuestions, redis: Redis) -> None:
    await pending.keep(asked())
    assert await pending.take(BOB) is None
    [key] = [k async for k in redis.scan_iter(PREFIX + "*")]
    await pending.keep(asked(BOB, "bob's"))
    bobs = [k async for k in redis.scan_iter(PREFIX + "*") if k != key]
    await redis.set(bobs[0], await redis.get(key))  # Alice's sealed question copied under Bob's key
    assert await pending.take(BOB) is None
    assert await pending.take(ALICE) is not None
