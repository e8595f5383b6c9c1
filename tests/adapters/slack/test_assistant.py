"""Slack's AI-app surface (QBOT_SLACK_ASSISTANT): suggested prompts, the thread status instead of a placeholder,
the thread title, answers in the thread through the durable turn stream; the classic DM and mentions unchanged."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from adapters.slack.assistant import PROMPTS_TITLE, STATUS
from adapters.slack.render import THINKING
from adapters.slack.settings import DEFAULT_SUGGESTED_PROMPTS, SlackSettings
from bot.config import problems_of
from bot.errors import ConfigError
from qbot.embedded_redis import EmbeddedRedis
from sandbox.slack import BOT_TOKEN, SIGNING_SECRET, TEAM, FakeSlack
from sandbox.world import Sandbox
from tests.adapters.slack.conftest import CHANNEL, SlackBot, event_body, new_ts, start_slack_bot
from tests.conftest import LoopThread

AURORA = "What is Project Aurora?"


@pytest.fixture
def assistant(make_slack_bot: Callable[..., SlackBot]) -> SlackBot:
    return make_slack_bot(QBOT_SLACK_ASSISTANT="true")


def posted_in(bot: SlackBot, channel: str, thread: str) -> list[dict[str, Any]]:
    return [c.args for c in bot.fake.calls_to("chat.postMessage")
            if c.args.get("channel") == channel and c.args.get("thread_ts") == thread]


def open_thread(bot: SlackBot, user: str) -> tuple[str, str]:
    started = bot.fake.start_assistant_thread(user)
    bot.event(started)
    thread = started["assistant_thread"]
    return thread["channel_id"], thread["thread_ts"]


def test_an_assistant_thread_gets_prompts_then_status_title_and_the_answer_in_it(assistant: SlackBot) -> None:
    assistant.linked("U_ALICE", "alice")
    channel, thread = open_thread(assistant, "U_ALICE")
    shown = assistant.fake.wait_for(lambda: assistant.fake.shown(channel, thread).prompts or None)
    assert [p["message"] for p in shown] == list(DEFAULT_SUGGESTED_PROMPTS)
    assert assistant.fake.shown(channel, thread).prompts_title == PROMPTS_TITLE

    assistant.dm("U_ALICE", AURORA, thread_ts=thread)
    answer = assistant.answer_in(channel, thread)
    assert "Aurora" in answer["text"]
    [status] = assistant.fake.calls_to("assistant.threads.setStatus")
    assert (status.args["channel_id"], status.args["thread_ts"], status.args["status"]) == (channel, thread, STATUS)
    order = [c.method for c in assistant.fake.calls
             if c.method == "assistant.threads.setStatus" or c.args.get("thread_ts") == thread]
    assert order.index("assistant.threads.setStatus") < order.index("chat.postMessage")  # status, then answer
    assert not [m for m in posted_in(assistant, channel, thread) if m["text"] == THINKING]  # no placeholder
    assert not assistant.fake.calls_to("chat.update")
    shown_now = assistant.fake.shown(channel, thread)
    assert shown_now.status == "" and shown_now.title == AURORA  # the reply cleared the status; titled

    assistant.dm("U_ALICE", "When does it launch?", thread_ts=thread)  # the second question keeps the title
    assistant.fake.wait_for(lambda: len(posted_in(assistant, channel, thread)) >= 2 or None)
    assert len(assistant.fake.calls_to("assistant.threads.setTitle")) == 1
    assert assistant.fake.shown(channel, thread).title == AURORA


def test_prompts_come_from_the_setting_and_agent_view_dms_get_them_when_opened(
    make_slack_bot: Callable[..., SlackBot],
) -> None:
    bot = make_slack_bot(QBOT_SLACK_ASSISTANT="true",
                         QBOT_SLACK_SUGGESTED_PROMPTS="Who approves travel? | What is Project Aurora?")
    bot.event({"type": "app_home_opened", "user": "U_BOB", "channel": "DU_BOB", "tab": "home",
               "event_ts": new_ts()})
    bot.event({"type": "app_home_opened", "user": "U_ALICE", "channel": "DU_ALICE", "tab": "messages",
               "event_ts": new_ts()})
    shown = bot.fake.wait_for(lambda: bot.fake.shown("DU_ALICE", None).prompts or None)
    assert shown == [{"title": "Who approves travel?", "message": "Who approves travel?"},
                     {"title": AURORA, "message": AURORA}]
    [call] = bot.fake.calls_to("assistant.threads.setSuggestedPrompts")  # not for the Home tab
    assert "thread_ts" not in call.args  # an agent-view DM ignores prompts named for a thread


def test_an_agent_view_dm_shows_the_status_and_is_answered_in_its_thread(assistant: SlackBot) -> None:
    assistant.linked("U_ALICE", "alice")
    ts = assistant.dm("U_ALICE", AURORA)
    answer = assistant.answer_in("DU_ALICE", ts)
    assert "Aurora" in answer["text"]
    [status] = assistant.fake.calls_to("assistant.threads.setStatus")
    assert status.args["thread_ts"] == ts
    assert [m["text"] for m in posted_in(assistant, "DU_ALICE", ts)] == [answer["text"]]
    assert not assistant.fake.calls_to("assistant.threads.setTitle")  # not an assistant thread Slack opened


def test_without_the_setting_a_dm_is_the_classic_placeholder_and_assistant_events_are_only_acknowledged(
    slack: SlackBot,
) -> None:
    slack.linked("U_ALICE", "alice")
    channel, thread = open_thread(slack, "U_ALICE")
    ts = slack.dm("U_ALICE", AURORA)
    answer = slack.answer_in("DU_ALICE", ts)
    assert [m["text"] for m in posted_in(slack, "DU_ALICE", ts)] == [THINKING]  # then updated with the answer
    assert "Aurora" in answer["text"] and slack.fake.calls_to("chat.update")
    assert not [c for c in slack.fake.calls if c.method.startswith("assistant.")]
    assert slack.fake.shown(channel, thread).prompts == []


def test_where_slack_refuses_the_status_the_placeholder_is_shown_and_channels_keep_it(assistant: SlackBot) -> None:
    assistant.linked("U_ALICE", "alice")
    assistant.fake.scopes -= {"chat:write", "assistant:write"}  # an app installed without the AI-app surface
    ts = assistant.dm("U_ALICE", AURORA)
    answer = assistant.answer_in("DU_ALICE", ts)
    assert "Aurora" in answer["text"]
    assert [m["text"] for m in posted_in(assistant, "DU_ALICE", ts)] == [THINKING]
    assert assistant.fake.calls_to("assistant.threads.setStatus")  # asked, refused

    assistant.fake.scopes |= {"chat:write", "assistant:write"}
    asked = assistant.mention("U_ALICE", AURORA)
    assistant.answer_in(CHANNEL, asked)
    assert [m["text"] for m in posted_in(assistant, CHANNEL, asked)] == [THINKING]
    assert len(assistant.fake.calls_to("assistant.threads.setStatus")) == 1  # none for the channel


def test_a_question_in_an_assistant_thread_redis_cannot_take_is_not_acknowledged(
    servers: LoopThread, sandbox: Sandbox, bot_socket: socket.socket, fake_slack: FakeSlack,
    private_redis: EmbeddedRedis,
) -> None:
    bot, served = start_slack_bot(servers, sandbox, bot_socket, private_redis.url, fake_slack,
                                  QBOT_SLACK_ASSISTANT="true")
    try:
        channel, thread = open_thread(bot, "U_ALICE")
        ts = new_ts()
        event = {"type": "message", "channel_type": "im", "channel": channel, "user": "U_ALICE", "text": AURORA,
                 "ts": ts, "thread_ts": thread, "event_ts": ts, "team": TEAM}
        body = event_body(event, "EvASSISTANTDOWN")
        private_redis.stop()
        assert bot.post(body, "application/json").status_code >= 500  # no ack: Slack retries
        private_redis.start()
        bot.linked("U_ALICE", "alice")
        assert bot.post(body, "application/json", headers={"X-Slack-Retry-Num": "1"}).status_code == 200
        assert "Aurora" in bot.answer_in(channel, thread)["text"]
    finally:
        bot.http.close()
        servers.run(served.stop())


def test_the_settings_refuse_more_prompts_than_slack_shows_and_a_malformed_flag() -> None:
    base = {"QBOT_SLACK_BOT_TOKEN": BOT_TOKEN, "QBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET}
    default = SlackSettings.from_env(base)
    assert default is not None and default.assistant is False
    with pytest.raises(ConfigError) as refused:
        SlackSettings.from_env({**base, "QBOT_SLACK_ASSISTANT": "sometimes",
                                "QBOT_SLACK_SUGGESTED_PROMPTS": "a|b|c|d|e"})
    problems = problems_of(refused.value)
    assert any("QBOT_SLACK_ASSISTANT" in p for p in problems)
    assert any("at most 4 prompts" in p for p in problems)
    with pytest.raises(ConfigError):
        SlackSettings.from_env({**base, "QBOT_SLACK_SUGGESTED_PROMPTS": "x" * 151})
    four = SlackSettings.from_env({**base, "QBOT_SLACK_ASSISTANT": "on", "QBOT_SLACK_SUGGESTED_PROMPTS": "a|b|c|d"})
    assert four is not None and four.assistant and four.suggested_prompts == ("a", "b", "c", "d")
