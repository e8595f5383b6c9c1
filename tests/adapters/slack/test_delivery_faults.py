"""Slack failing while qbot answers: each question ends with exactly one answer in its thread, never a second
copy, and what cannot be delivered is counted. The real bot, the fake Slack on loopback failing as Slack does
(429 with Retry-After; 5xx before or after carrying a call out)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from adapters.slack.retries import MAX_RETRIES
from tests.adapters.slack.conftest import CHANNEL, SlackBot

AURORA = "What is Project Aurora?"
ALL_ATTEMPTS = 1 + MAX_RETRIES


def in_thread(bot: SlackBot, channel: str, thread: str) -> list[dict[str, Any]]:
    return bot.fake.thread(channel, thread)


def answers(bot: SlackBot, channel: str, thread: str) -> list[dict[str, Any]]:
    return [m for m in in_thread(bot, channel, thread) if "Aurora" in m["text"] and "[1]" in m["text"]]


def thinking(bot: SlackBot, channel: str, thread: str) -> list[dict[str, Any]]:
    return [m for m in in_thread(bot, channel, thread) if "Thinking" in m["text"]]


def posts(bot: SlackBot, thread: str) -> list[dict[str, Any]]:
    return [c.args for c in bot.fake.calls_to("chat.postMessage") if c.args.get("thread_ts") == thread]


def failures(bot: SlackBot, stage: str) -> float:
    metrics = bot.http.get("/metrics").text
    for labels, value in re.findall(r"^qbot_failures_total\{(.*)\} (\S+)$", metrics, re.MULTILINE):
        if f'stage="{stage}"' in labels and 'platform="slack"' in labels:
            return float(value)
    return 0.0


@pytest.fixture
def alice(slack: SlackBot) -> SlackBot:
    slack.linked("U_ALICE", "alice")
    return slack


def test_an_update_slack_applied_but_answered_500_leaves_one_answer_and_no_thinking(alice: SlackBot) -> None:
    alice.fake.update_applies_then_500()
    ts = alice.mention("U_ALICE", AURORA)
    alice.fake.wait_calls("chat.update", 2)  # the update alone is tried again: same ts, same content
    alice.answer_in(CHANNEL, ts)
    assert len(answers(alice, CHANNEL, ts)) == 1
    assert not thinking(alice, CHANNEL, ts)
    assert len(posts(alice, ts)) == 1  # the placeholder only
    assert len(in_thread(alice, CHANNEL, ts)) == 1


def test_an_update_failing_twice_with_5xx_is_retried_into_the_placeholder(alice: SlackBot) -> None:
    alice.fake.fail_next("chat.update", 503, count=2)
    ts = alice.mention("U_ALICE", AURORA)
    updates = alice.fake.wait_calls("chat.update", 3)
    assert len({c.args["ts"] for c in updates}) == 1
    alice.answer_in(CHANNEL, ts)
    [answer] = in_thread(alice, CHANNEL, ts)
    assert answer["ts"] == updates[0].args["ts"] and "[1]" in answer["text"]
    assert len(posts(alice, ts)) == 1


def test_rate_limited_calls_wait_retry_after_and_answer_once(alice: SlackBot) -> None:
    alice.fake.fail_next("chat.postMessage", 429, retry_after=1)  # the placeholder
    alice.fake.fail_next("chat.update", 429, retry_after=1)  # the answer
    ts = alice.mention("U_ALICE", AURORA)
    alice.fake.wait_calls("chat.update", 2)
    alice.answer_in(CHANNEL, ts)
    assert len(posts(alice, ts)) == 2  # refused, then posted
    [answer] = in_thread(alice, CHANNEL, ts)
    assert "[1]" in answer["text"]


def test_a_rate_limit_longer_than_the_bound_is_not_waited_out(alice: SlackBot) -> None:
    alice.fake.fail_next("chat.update", 429, retry_after=3600)
    ts = alice.mention("U_ALICE", AURORA)
    alice.fake.wait_for(lambda: answers(alice, CHANNEL, ts))  # Slack did nothing: the answer is posted instead
    assert len(alice.fake.calls_to("chat.update")) == 1
    assert len(answers(alice, CHANNEL, ts)) == 1


def test_in_a_dm_an_update_never_applied_is_read_back_posted_once_and_the_placeholder_removed(
    alice: SlackBot,
) -> None:
    alice.fake.fail_next("chat.update", 500, count=ALL_ATTEMPTS)
    ts = alice.dm("U_ALICE", AURORA)
    alice.fake.wait_calls("chat.delete")
    assert len(alice.fake.calls_to("chat.update")) == ALL_ATTEMPTS
    [read] = alice.fake.calls_to("conversations.replies")
    assert read.args["channel"] == "DU_ALICE"
    [answer] = in_thread(alice, "DU_ALICE", ts)
    assert "[1]" in answer["text"]


def test_in_a_dm_an_update_applied_but_always_500_is_read_back_and_not_posted_again(alice: SlackBot) -> None:
    alice.fake.update_applies_then_500(count=ALL_ATTEMPTS)
    ts = alice.dm("U_ALICE", AURORA)
    alice.fake.wait_calls("conversations.replies")
    alice.answer_in("DU_ALICE", ts)
    assert len(posts(alice, ts)) == 1  # the placeholder only
    [answer] = in_thread(alice, "DU_ALICE", ts)
    assert "[1]" in answer["text"]
    assert failures(alice, "deliver") == 0


def test_an_update_whose_connection_dropped_after_slack_applied_it_is_retried_not_posted(alice: SlackBot) -> None:
    alice.fake.fail_next("chat.update", 0, applied=True)
    ts = alice.mention("U_ALICE", AURORA)
    alice.fake.wait_calls("chat.update", 2)
    alice.answer_in(CHANNEL, ts)
    assert len(posts(alice, ts)) == 1
    [answer] = in_thread(alice, CHANNEL, ts)
    assert "[1]" in answer["text"]


def _delete_placeholder(bot: SlackBot, channel: str, thread: str) -> None:
    """Someone deletes the "Thinking…" message while the answer is on its way."""
    [placeholder] = bot.fake.wait_for(lambda: thinking(bot, channel, thread))
    del bot.fake.messages[(channel, placeholder["ts"])]


def test_in_a_dm_a_placeholder_deleted_while_slack_fails_is_read_back_as_gone_and_answered_anew(
    alice: SlackBot,
) -> None:
    first = alice.dm("U_ALICE", AURORA)
    alice.answer_in("DU_ALICE", first)
    alice.fake.fail_next("chat.update", 500, count=ALL_ATTEMPTS)
    alice.dm("U_ALICE", "When does it launch?", thread_ts=first)  # the thread holds the first answer
    _delete_placeholder(alice, "DU_ALICE", first)
    alice.fake.wait_calls("conversations.replies")
    alice.fake.wait_for(lambda: len(in_thread(alice, "DU_ALICE", first)) == 2)
    assert not thinking(alice, "DU_ALICE", first)

    lone = alice.dm("U_ALICE", AURORA)  # a thread of one placeholder: once deleted, Slack finds no thread
    alice.fake.fail_next("chat.update", 500, count=ALL_ATTEMPTS)
    _delete_placeholder(alice, "DU_ALICE", lone)
    alice.fake.wait_calls("conversations.replies", 2)
    [answer] = alice.fake.wait_for(lambda: in_thread(alice, "DU_ALICE", lone))
    assert "[1]" in answer["text"]
    assert failures(alice, "deliver") == 0


def test_in_a_channel_an_update_whose_outcome_cannot_be_known_is_counted_not_posted_again(alice: SlackBot) -> None:
    """The bot may not read channel history (no channels:history scope): when every update answers 500, it
    cannot know, and a new post could be a second copy."""
    alice.fake.update_applies_then_500(count=ALL_ATTEMPTS)
    ts = alice.mention("U_ALICE", AURORA)
    [read] = alice.fake.wait_calls("conversations.replies")
    assert read.args["channel"] == CHANNEL  # Slack refuses: missing_scope (channels:history)
    alice.fake.wait_for(lambda: failures(alice, "deliver") == 1)
    assert len(alice.fake.calls_to("chat.update")) == ALL_ATTEMPTS
    assert len(posts(alice, ts)) == 1
    [answer] = in_thread(alice, CHANNEL, ts)
    assert "[1]" in answer["text"]


def test_a_failed_placeholder_still_gets_the_answer_posted_once(alice: SlackBot) -> None:
    alice.fake.fail_next("chat.postMessage", 500)
    ts = alice.mention("U_ALICE", AURORA)
    alice.answer_in(CHANNEL, ts)
    [refused, answer] = posts(alice, ts)
    assert "Thinking" in refused["text"] and "[1]" in answer["text"]
    assert not alice.fake.calls_to("chat.update")
    assert len(in_thread(alice, CHANNEL, ts)) == 1


def test_a_placeholder_post_slack_may_have_applied_is_never_sent_again(alice: SlackBot) -> None:
    alice.fake.fail_next("chat.postMessage", 502, applied=True)
    ts = alice.mention("U_ALICE", AURORA)
    alice.answer_in(CHANNEL, ts)
    assert len([p for p in posts(alice, ts) if "Thinking" in p["text"]]) == 1
    assert len(answers(alice, CHANNEL, ts)) == 1


def test_when_telling_the_user_fails_too_it_is_logged_and_counted(
    alice: SlackBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="adapters.slack")
    alice.fake.fail_next("chat.postMessage", 500, count=3)  # the placeholder, the answer, the error message
    ts = alice.mention("U_ALICE", AURORA)
    alice.fake.wait_for(lambda: failures(alice, "deliver") == 1)
    assert len(posts(alice, ts)) == 3 and not in_thread(alice, CHANNEL, ts)
    assert any("could not tell a Slack user" in r.getMessage() for r in caplog.records)
    follow_up = alice.mention("U_ALICE", AURORA)  # nothing escaped: the bot answers the next question
    alice.answer_in(CHANNEL, follow_up)
    assert failures(alice, "deliver") == 1
