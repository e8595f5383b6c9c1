"""Transport: signatures, fast acks, de-duplicated retries (across processes), ignored events, Socket Mode."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from typing import Any

import pytest

from adapters.slack.app import slack_adapter
from adapters.slack.settings import SlackSettings
from bot.config import Settings
from bot.errors import ConfigError
from sandbox.slack import APP_TOKEN, BOT_ID, BOT_USER, SIGNING_SECRET, TEAM, signature
from tests.adapters.slack.conftest import CHANNEL, SlackBot, link_url, new_ts
from tests.signin import follow_link

AURORA = "What is Project Aurora?"


def web_api_calls(bot: SlackBot) -> list[str]:
    """Every call the bot made to Slack after start-up (auth.test)."""
    return [c.method for c in bot.fake.calls if c.method != "auth.test"]


def placeholders(bot: SlackBot) -> list[dict[str, Any]]:
    return [c.args for c in bot.fake.calls_to("chat.postMessage", "chat.postEphemeral") if "Thinking" in c.args["text"]]


def event_body(event: dict[str, Any], event_id: str = "Ev1") -> str:
    return json.dumps({"team_id": TEAM, "type": "event_callback", "event_id": event_id, "event": event,
                       "api_app_id": "A0TEST", "event_time": int(time.time())})


def test_unsigned_badly_signed_and_stale_requests_get_401_and_nothing_happens(slack: SlackBot) -> None:
    body = event_body({"type": "app_mention", "user": "U_ALICE", "text": f"<@{BOT_USER}> hi", "ts": new_ts(),
                       "channel": CHANNEL})
    now = str(int(time.time()))
    cases = {
        "unsigned": {"Content-Type": "application/json"},
        "no timestamp": {"Content-Type": "application/json", "X-Slack-Signature": signature(SIGNING_SECRET, now, body)},
        "bad signature": {"Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                          "X-Slack-Signature": "v0=" + "0" * 64},
        "other secret": {"Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                         "X-Slack-Signature": signature("not-the-secret", now, body)},
        "tampered body": {"Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                          "X-Slack-Signature": signature(SIGNING_SECRET, now, body.replace("hi", "ho"))},
    }
    for name, headers in cases.items():
        response = slack.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 401, name
    stale = int(time.time()) - 6 * 60
    assert slack.post(body, "application/json", timestamp=stale).status_code == 401
    form = urllib.parse.urlencode({"command": "/qlink", "user_id": "U_ALICE", "team_id": TEAM,
                                   "response_url": f"{slack.fake.url}/response/x", "trigger_id": "t"})
    assert slack.post(form, "application/x-www-form-urlencoded", secret="wrong").status_code == 401
    slack.settle()
    assert web_api_calls(slack) == []
    assert slack.run(slack.graph.deliveries.first("slack", "event:Ev1"))  # not even de-duplicated


def test_garbage_is_refused_before_parsing_and_never_an_error(
    slack: SlackBot, caplog: pytest.LogCaptureFixture
) -> None:
    """The signature is checked over the raw body first: unsigned garbage is a 401 without being parsed (a
    deeply nested body used to be a 500 with a traceback), a signed body that isn't JSON or a form is a 400."""
    deep = "[" * 100_000 + "]" * 100_000
    deep_form = urllib.parse.urlencode({"payload": deep})
    now = str(int(time.time()))
    caplog.set_level("INFO")
    unsigned = {
        "deep JSON": (deep, {"Content-Type": "application/json", "Authorization": "Bearer x"}),
        "deep form payload": (deep_form, {"Content-Type": "application/x-www-form-urlencoded"}),
        "timestamp not a number": (deep, {"Content-Type": "application/json", "X-Slack-Request-Timestamp": "soon",
                                          "X-Slack-Signature": signature(SIGNING_SECRET, "soon", deep)}),
        "timestamp with a fraction": ("{}", {"Content-Type": "application/json",
                                             "X-Slack-Request-Timestamp": f"{now}.0",
                                             "X-Slack-Signature": signature(SIGNING_SECRET, f"{now}.0", "{}")}),
        "not UTF-8": (b"\xff\xfe{}", {"Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                                       "X-Slack-Signature": "v0=" + "0" * 64}),
    }
    for name, (body, headers) in unsigned.items():
        response = slack.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 401, name
    for body, content_type in ((deep, "application/json"), (deep_form, "application/x-www-form-urlencoded"),
                               ("not json", "application/json")):
        assert slack.post(body, content_type).status_code == 400, body[:20]
    slack.settle()
    assert web_api_calls(slack) == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info or r.exc_text] == []


def test_url_verification_and_unknown_events_are_acknowledged(slack: SlackBot) -> None:
    challenge = slack.post(json.dumps({"type": "url_verification", "challenge": "c-123", "token": "x"}),
                           "application/json")
    assert challenge.status_code == 200 and "c-123" in challenge.text
    slack.event({"type": "reaction_added", "user": "U_ALICE", "reaction": "tada"})  # asserts 200: no retry
    assert web_api_calls(slack) == []


def test_every_request_is_acked_before_the_work_is_done(slack: SlackBot) -> None:
    """Slack retries what isn't acked within 3 s: the ack never waits for Q (observed, not timed: when the
    mention's 200 arrives, Q is still working on it) nor for a command's reply."""
    slack.linked("U_ALICE", "alice")
    slack.sandbox.q.faults.held.add("alice@example.com")  # Q works on her question until the test lets go
    ts = slack.mention("U_ALICE", AURORA)  # asserts the 200
    assert not any(m.get("thread_ts") == ts and "[1]" in m["text"] for m in slack.fake.messages.values())
    slack.fake.wait_for(lambda: slack.sandbox.q.stats.in_flight == 1 or None)
    hook = slack.command("U_ALICE", "/qstatus")  # acked while the question is still being answered
    assert "Linked as alice@example.com" in slack.responses(hook)[0]["text"]
    slack.sandbox.q.faults.held.clear()
    answer = slack.answer_in(CHANNEL, ts)
    assert "[1]" in answer["text"]


def test_a_retried_event_is_answered_once_even_by_two_processes(make_slack_bot: Any) -> None:
    first = make_slack_bot()
    second = make_slack_bot()  # another bot process on the same Redis
    first.linked("U_ALICE", "alice")
    ts = new_ts()
    event = {"type": "app_mention", "user": "U_ALICE", "text": f"<@{BOT_USER}> {AURORA}", "ts": ts,
             "channel": CHANNEL, "event_ts": ts}
    first.event(event, event_id="EvRetry")
    for n, bot in enumerate((second, first, second), 1):
        bot.event(event, event_id="EvRetry",
                  headers={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
    first.answer_in(CHANNEL, ts)
    # The same message under another event id is one question too (de-duplicated on channel and ts).
    second.event(event, event_id="EvOther")
    first.settle()
    assert len(placeholders(first)) == 1
    assert len(first.fake.calls_to("chat.update")) == 1
    assert first.sandbox.q.stats.chat_calls["alice@example.com"] == 1


def test_bots_edits_deletions_and_other_subtypes_are_ignored(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    before = len(slack.fake.calls)
    dm = {"type": "message", "channel_type": "im", "channel": "DU_ALICE", "text": AURORA}
    ignored: list[dict[str, Any]] = [
        {**dm, "user": BOT_USER, "bot_id": BOT_ID, "ts": new_ts()},  # the bot's own message
        {**dm, "bot_id": "B0OTHER", "subtype": "bot_message", "ts": new_ts()},  # another bot
        {**dm, "user": "U_ALICE", "bot_id": "B0OTHER", "ts": new_ts()},  # a bot posting as a user
        {**dm, "subtype": "message_changed", "ts": new_ts(),
         "message": {"user": "U_ALICE", "text": AURORA, "ts": "1.2", "edited": {"user": "U_ALICE"}}},
        {**dm, "subtype": "message_deleted", "ts": new_ts(), "previous_message": {"user": "U_ALICE"}},
        {**dm, "user": "U_ALICE", "subtype": "channel_join", "ts": new_ts()},
        {**dm, "user": "U_ALICE", "subtype": "me_message", "ts": new_ts()},
        {"type": "message", "channel_type": "channel", "channel": CHANNEL, "user": "U_ALICE", "text": AURORA,
         "ts": new_ts()},  # a channel message without a mention
        {"type": "app_mention", "user": "U_ALICE", "text": f"<@{BOT_USER}> {AURORA}", "ts": new_ts(),
         "channel": CHANNEL, "edited": {"user": "U_ALICE", "ts": "1.3"}},  # an edit re-delivered as a mention
        {"type": "app_mention", "user": "U_ALICE", "text": f"<@{BOT_USER}> {AURORA}", "ts": new_ts(),
         "channel": "DU_ALICE"},  # a mention in a DM: its message.im twin is the one handled
    ]
    for event in ignored:
        slack.event(event)
    real = slack.dm("U_ALICE", AURORA)  # a real message afterwards is answered, and alone
    slack.answer_in("DU_ALICE", real)
    assert len(placeholders(slack)) == 1
    assert slack.sandbox.q.stats.chat_calls["alice@example.com"] == 1
    assert [c.method for c in slack.fake.calls[before:] if c.method != "file"] == ["chat.postMessage", "chat.update"]


def test_socket_mode_serves_the_same_listeners_and_dedups_retry_attempts(make_slack_bot: Any) -> None:
    slack = make_slack_bot(QBOT_SLACK_APP_TOKEN=APP_TOKEN, QBOT_SLACK_SIGNING_SECRET="")
    fake = slack.fake
    fake.wait_for(lambda: fake.socket_connected)
    assert fake.calls_to("apps.connections.open")[0].token == APP_TOKEN
    assert slack.http.post("/slack/events", content="{}").status_code == 404  # no HTTP route in Socket Mode

    command = {"team_id": TEAM, "channel_id": CHANNEL, "user_id": "U_ALICE", "command": "/qlink", "text": "",
               "response_url": f"{fake.url}/response/sock1", "trigger_id": "trig-sock1"}
    slack.run(fake.send_envelope({"envelope_id": "env-1", "type": "slash_commands", "payload": command,
                                  "accepts_response_payload": True}))
    [response] = slack.responses("sock1")
    assert follow_link(link_url(response), "alice").status_code == 200

    ts = new_ts()
    callback = {"team_id": TEAM, "type": "event_callback", "event_id": "EvSock", "api_app_id": "A0TEST",
                "event": {"type": "app_mention", "user": "U_ALICE", "text": f"<@{BOT_USER}> {AURORA}", "ts": ts,
                          "channel": CHANNEL, "event_ts": ts}}
    for attempt in range(3):
        slack.run(fake.send_envelope({"envelope_id": f"env-ev{attempt}", "type": "events_api",
                                      "payload": callback, "accepts_response_payload": False,
                                      "retry_attempt": attempt, "retry_reason": "timeout" if attempt else ""}))
    assert "[1]" in slack.answer_in(CHANNEL, ts)["text"]
    fake.wait_for(lambda: {a.get("envelope_id") for a in fake.socket_acks} >= {"env-1", "env-ev0", "env-ev1",
                                                                                 "env-ev2"})
    slack.settle()
    assert len(placeholders(slack)) == 1 and slack.sandbox.q.stats.chat_calls["alice@example.com"] == 1


def test_settings_turn_slack_on_only_with_its_credentials() -> None:
    assert SlackSettings.from_env({}) is None
    assert slack_adapter(None, Settings(), None) is None  # type: ignore[arg-type]
    http_mode = SlackSettings.from_env({"QBOT_SLACK_BOT_TOKEN": "xoxb-1", "QBOT_SLACK_SIGNING_SECRET": "s"})
    assert http_mode is not None and not http_mode.socket_mode and http_mode.api_url == "https://slack.com/api/"
    socket = SlackSettings.from_env({"QBOT_SLACK_BOT_TOKEN": "xoxb-1", "QBOT_SLACK_APP_TOKEN": "xapp-1",
                                     "QBOT_SLACK_API_URL": "http://127.0.0.1:9/api"})
    assert socket is not None and socket.socket_mode and socket.api_url == "http://127.0.0.1:9/api/"
    for half in (
        {"QBOT_SLACK_SIGNING_SECRET": "s"},
        {"QBOT_SLACK_BOT_TOKEN": "xoxb-1"},
        {"QBOT_SLACK_BOT_TOKEN": "xoxb-1", "QBOT_SLACK_APP_TOKEN": "xoxb-not-an-app-token"},
        {"QBOT_SLACK_BOT_TOKEN": "xoxb-1", "QBOT_SLACK_SIGNING_SECRET": "s", "QBOT_SLACK_API_URL": "slack.com"},
    ):
        with pytest.raises(ConfigError):
            SlackSettings.from_env(half)
