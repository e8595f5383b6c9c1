"""Teams messages go through the turn stream: stored before Teams hears back. Teams seldom redelivers, so a
message Redis cannot take is answered at once with a plain "ask again" (through the connector, which needs no
Redis), and once Redis is back the next message is answered as usual."""

from __future__ import annotations

import pytest

from qbot.embedded_redis import EmbeddedRedis
from tests.adapters.teams.conftest import ALICE, TeamsBot

AURORA = "What is Project Aurora?"


@pytest.fixture
def redis_url(private_redis: EmbeddedRedis) -> str:
    """This module's bots use a Redis of their own, which the tests stop and start."""
    return private_redis.url


def test_a_message_redis_cannot_take_gets_ask_again_and_the_next_one_is_answered(
    teams: TeamsBot, private_redis: EmbeddedRedis
) -> None:
    private_redis.stop()
    before = len(teams.bf.calls)
    question = teams.message(ALICE, AURORA)
    assert teams.post(question).status_code == 503
    told = teams.bf.wait_for(lambda calls: next((c for c in calls[before:] if "ask it again" in c.text), None))
    assert told.conversation_id == ALICE.personal_chat and not told.cards

    private_redis.start()  # same port, empty (no persistence here): Alice links, then asks again
    teams.linked(ALICE)
    answer = teams.answer(teams.message(ALICE, AURORA))
    assert "Aurora" in "\n".join(b.get("text", "") for b in answer.cards[-1].get("body", []))
