"""A whole bot with the Slack adapter (real aiohttp server, real Redis, fresh sandbox), a fake Slack Web API
on loopback, and a client that posts Slack's requests to `/slack/events` signed with the real v0 scheme."""

from __future__ import annotations

import itertools
import json
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from adapters.slack.app import SlackAdapter, slack_adapter
from bot.config import Settings
from bot.tls import tls_context
from bot.turn_queue import STREAM
from qbot.app import GRAPH, BotGraph, build_app
from sandbox.serving import Served, bind, url_of
from sandbox.slack import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    TEAM,
    FakeSlack,
    signed_headers,
)
from sandbox.world import Sandbox
from tests.conftest import LoopThread, until
from tests.signin import follow_link

CHANNEL = "C0GENERAL"
_ts = itertools.count(1)
_ids = itertools.count(1)  # event ids and response_url hooks, unique across the bots of a test


def new_ts() -> str:
    return f"1700000000.{next(_ts):06d}"


@dataclass
class SlackBot:
    url: str
    graph: BotGraph
    sandbox: Sandbox
    servers: LoopThread
    fake: FakeSlack
    http: httpx.Client

    def settle(self) -> None:
        """Until the bot has nothing left to do: no question in the turn stream (waiting or in work: an entry is
        deleted only once answered, whichever process took it) and no spawned task (a command, a click) running.
        What it would still do is then done: how a test knows nothing else happened, without sleeping."""
        adapters = [a for a in self.graph.adapters if isinstance(a, SlackAdapter)]

        async def idle() -> bool:
            return not await self.graph.redis.xlen(STREAM) and not any(a.in_work for a in adapters)

        self.run(until(idle))

    # -- raw requests ----------------------------------------------------------------------------------------

    def post(self, body: str, content_type: str, *, headers: dict[str, str] | None = None,
             secret: str = SIGNING_SECRET, timestamp: int | None = None) -> httpx.Response:
        signed = signed_headers(body, content_type, secret=secret, timestamp=timestamp)
        return self.http.post("/slack/events", content=body, headers={**signed, **(headers or {})})

    def event(self, event: dict[str, Any], *, event_id: str | None = None,
              headers: dict[str, str] | None = None) -> httpx.Response:
        response = self.post(event_body(event, event_id), "application/json", headers=headers)
        assert response.status_code == 200, response.text
        return response

    # -- what users do -----------------------------------------------------------------------------------------

    def mention(self, user: str, text: str, *, channel: str = CHANNEL, ts: str | None = None,
                thread_ts: str | None = None, files: list[dict[str, Any]] | None = None,
                event_id: str | None = None, **extra: Any) -> str:
        ts = ts or new_ts()
        event: dict[str, Any] = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}", "ts": ts,
                                 "channel": channel, "event_ts": ts, "team": TEAM, **extra}
        if thread_ts:
            event["thread_ts"] = thread_ts
        if files:
            event["files"] = files
        self.event(event, event_id=event_id)
        return ts

    def dm(self, user: str, text: str, *, ts: str | None = None, thread_ts: str | None = None,
           files: list[dict[str, Any]] | None = None, **extra: Any) -> str:
        ts = ts or new_ts()
        event: dict[str, Any] = {"type": "message", "channel_type": "im", "channel": "D" + user, "user": user,
                                 "text": text, "ts": ts, "event_ts": ts, "team": TEAM, **extra}
        if thread_ts:
            event["thread_ts"] = thread_ts
        if files:
            event["files"] = files
            event["subtype"] = "file_share"
        self.event(event)
        return ts

    def command(self, user: str, command: str, text: str = "", *, channel: str = CHANNEL) -> str:
        """A slash command; returns the hook id its response_url posts to."""
        hook = f"cmd{next(_ids)}"
        form = {
            "token": "unused", "team_id": TEAM, "team_domain": "test", "channel_id": channel, "channel_name": "x",
            "user_id": user, "user_name": user.lower(), "command": command, "text": text,
            "api_app_id": "A0TEST", "response_url": f"{self.fake.url}/response/{hook}",
            "trigger_id": f"trig-{hook}",
        }
        response = self.post(urllib.parse.urlencode(form), "application/x-www-form-urlencoded")
        assert response.status_code == 200, response.text
        return hook

    def click(self, user: str, action: dict[str, Any], *, message: dict[str, Any] | None,
              channel: str = CHANNEL, message_ts: str = "", ephemeral: bool = False) -> str:
        """A button click (block_actions); returns the hook id of its response_url."""
        hook = f"act{next(_ids)}"
        payload: dict[str, Any] = {
            "type": "block_actions", "team": {"id": TEAM, "domain": "test"},
            "user": {"id": user, "team_id": TEAM, "username": user.lower()},
            "api_app_id": "A0TEST", "trigger_id": f"trig-{hook}",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": ephemeral},
            "channel": {"id": channel, "name": "x"},
            "response_url": f"{self.fake.url}/response/{hook}",
            "actions": [{**action, "block_id": action.get("block_id", "b"), "type": "button",
                         "action_ts": str(time.time())}],
        }
        if message is not None:
            payload["message"] = message
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        response = self.post(body, "application/x-www-form-urlencoded")
        assert response.status_code == 200, response.text
        return hook

    # -- reading what the bot did ------------------------------------------------------------------------------

    def responses(self, hook: str, count: int = 1) -> list[dict[str, Any]]:
        def arrived() -> list[dict[str, Any]] | None:
            found = [c.args for c in self.fake.calls_to("response") if c.args["hook"] == hook]
            return found if len(found) >= count else None

        result: list[dict[str, Any]] = self.fake.wait_for(arrived)
        return result

    def link(self, user: str, username: str) -> httpx.Response:
        """/qlink -> the ephemeral link -> sign in at the IdP as `username`; returns the callback page."""
        hook = self.command(user, "/qlink")
        response = self.responses(hook)[0]
        assert response["response_type"] == "ephemeral"
        return follow_link(link_url(response), username)

    def linked(self, user: str, username: str) -> None:
        page = self.link(user, username)
        assert page.status_code == 200, page.text
        self.fake.wait_for(lambda: any(c.args.get("channel") == "D" + user for c in self.fake.calls_to(
            "chat.postMessage")))

    def answer_in(self, channel: str, thread_ts: str, timeout: float = 10.0) -> dict[str, Any]:
        """The final text of the bot's placeholder in this thread, once it is no longer "Thinking…"."""
        def done() -> dict[str, Any] | None:
            for (ch, _ts), message in list(self.fake.messages.items()):
                if ch == channel and message.get("thread_ts") == thread_ts and "Thinking" not in message["text"]:
                    return message
            return None

        result: dict[str, Any] = self.fake.wait_for(done, timeout)
        return result

    def run(self, coro: Any) -> Any:
        return self.servers.run(coro)


def event_body(event: dict[str, Any], event_id: str | None = None) -> str:
    """The Events API envelope Slack posts around `event` (as JSON text, to sign and post)."""
    return json.dumps({
        "token": "unused", "team_id": TEAM, "api_app_id": "A0TEST", "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):08d}", "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}], "event": event,
    })


def link_url(message: dict[str, Any]) -> str:
    for block in message.get("blocks") or []:
        for element in block.get("elements", []):
            if element.get("url"):
                return str(element["url"])
    raise AssertionError(f"no link button in {message}")


def start_slack_bot(servers: LoopThread, sandbox: Sandbox, sock: socket.socket, redis_url: str, fake: FakeSlack,
                    **env: str) -> tuple[SlackBot, Served]:
    settings = Settings.from_env({
        **sandbox.env(),
        "QBOT_REDIS_URL": redis_url,
        "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(),
        "QBOT_PUBLIC_URL": url_of(sock),
        "QBOT_SLACK_BOT_TOKEN": BOT_TOKEN,
        "QBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "QBOT_SLACK_API_URL": fake.api_url(),
        # Most tests look at answers in channel threads, as a channel whose policy is "thread" gets them; the
        # private default is tested with QBOT_CHANNEL_REPLY_MODE="" (unset).
        "QBOT_CHANNEL_REPLY_MODE": "thread",
        **env,
    })
    app = build_app(settings, [slack_adapter])
    served = Served(app, sock)
    servers.run(served.start())
    http = httpx.Client(base_url=served.url, timeout=10, verify=tls_context())
    return SlackBot(served.url, app[GRAPH], sandbox, servers, fake, http), served


@pytest.fixture
def fake_slack(servers: LoopThread) -> Iterator[FakeSlack]:
    fake = FakeSlack()
    served = Served(fake.app(), bind("127.0.0.1", 0))
    servers.run(served.start())
    fake.url = served.url
    yield fake
    servers.run(fake.close_sockets())
    servers.run(served.stop())
    served.sock.close()


@pytest.fixture
def make_slack_bot(
    servers: LoopThread, sandbox: Sandbox, bot_socket: socket.socket, redis_url: str, fake_slack: FakeSlack
) -> Iterator[Callable[..., SlackBot]]:
    started: list[tuple[SlackBot, Served]] = []
    keys = Fernet.generate_key().decode()  # the bots of one test are processes of one deployment: one key

    def make(**env: str) -> SlackBot:
        sock = bot_socket if not started else bind("127.0.0.1", 0)
        bot, served = start_slack_bot(servers, sandbox, sock, redis_url, fake_slack, **{"QBOT_TOKEN_KEYS": keys, **env})
        started.append((bot, served))
        return bot

    yield make
    for bot, served in reversed(started):
        bot.http.close()
        servers.run(served.stop())


@pytest.fixture
def slack(make_slack_bot: Callable[..., SlackBot]) -> SlackBot:
    return make_slack_bot()


__all__ = ["APP_TOKEN", "CHANNEL", "SlackBot", "link_url", "new_ts"]
