"""A linked user asking while AWS STS fails: one short message saying what happened and what to do, the link kept,
nothing asked of Q; once STS is back the same link answers."""

from __future__ import annotations

from typing import Any

from bot.model import Answer, Notice, NoticeKind
from tests.e2e.conftest import RunningBot
from tests.e2e.test_chain import ALICE, AURORA, link


def assert_told_to_try_again(bot: RunningBot, reply: Any, text: str) -> None:
    assert isinstance(reply, Notice) and reply.kind is NoticeKind.ERROR
    assert reply.text.startswith(text), reply.text
    assert bot.run(bot.core.accounts.vault.load(ALICE)) is not None  # still linked: nothing to redo
    assert bot.run(bot.core.accounts.vault.load_credentials(ALICE)) is None
    assert sum(bot.sandbox.q.stats.chat_calls.values()) == 0


def test_sts_answering_503_tells_the_user_to_try_again_and_keeps_the_link(bot: RunningBot) -> None:
    assert link(bot, ALICE, "alice").status_code == 200
    bot.sandbox.sts.faults.outage = "ServiceUnavailable"
    reply = bot.ask(ALICE, AURORA)
    assert_told_to_try_again(bot, reply, "AWS is not issuing credentials right now. Please try again in a minute.")
    assert isinstance(reply, Notice) and reply.text.endswith(f"(request id {reply.details['request_id']})")
    bot.sandbox.sts.faults.outage = None
    assert isinstance(bot.ask(ALICE, AURORA), Answer)


def test_sts_unreachable_tells_the_user_to_try_again_and_keeps_the_link(make_bot: Any, refused_url: str) -> None:
    bot = make_bot(QBOT_STS_ENDPOINT_URL=refused_url)
    assert link(bot, ALICE, "alice").status_code == 200
    reply = bot.ask(ALICE, AURORA)
    assert_told_to_try_again(bot, reply, "AWS STS cannot be reached. Please try again in a minute.")
    assert isinstance(reply, Notice) and reply.text == "AWS STS cannot be reached. Please try again in a minute."
