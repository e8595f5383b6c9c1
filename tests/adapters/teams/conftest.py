"""A whole bot with the Teams adapter on (real aiohttp server, real Redis, fresh sandbox), a local Bot
Framework (connector + signing keys) as every activity's serviceUrl, and helpers that post signed activities
the way Teams does and wait for what the bot sends back."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.tls import tls_context
from sandbox.botframework import Call, FakeBotFramework, Member, Room
from sandbox.serving import Served, bind, url_of
from sandbox.world import APP_ID as APP_ID_OF_Q
from sandbox.world import Sandbox
from tests.conftest import LoopThread
from tests.e2e.conftest import RunningBot, start_bot
from tests.signin import follow_link

APP_ID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
TENANT = "72f988bf-0000-4000-8000-000000000001"
BOT = {"id": f"28:{APP_ID}", "name": "qbot"}
TEAM = "19:team-engineering@thread.tacv2"
CHANNEL = "19:general@thread.tacv2"
GROUP_CHAT = "19:group-launch@thread.v2"
MENTION = "<at>qbot</at>"


@dataclass(frozen=True)
class TeamsUser:
    id: str
    aad: str
    name: str
    username: str  # at the sandbox IdP
    email: str

    @property
    def personal_chat(self) -> str:
        return f"a:personal-{self.id}"


ALICE = TeamsUser("29:alice", "aad-alice-0001", "Alice Anders", "alice", "alice@example.com")
BOB = TeamsUser("29:bob", "aad-bob-0002", "Bob Brown", "bob", "bob@example.com")
CAROL = TeamsUser("29:carol", "aad-carol-0003", "Carol Chen", "carol", "carol@example.com")

_ids = itertools.count(1_700_000_000_000)


def next_id() -> str:
    return str(next(_ids))


@dataclass
class TeamsBot:
    url: str
    bot: RunningBot
    bf: FakeBotFramework
    sandbox: Sandbox
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=15, verify=tls_context()))

    # -- activities as Teams builds them --------------------------------------------------------------

    def message(
        self,
        user: TeamsUser,
        text: str,
        *,
        scope: str = "personal",
        conversation_id: str | None = None,
        mention: bool = False,
        activity_id: str | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        activity_id = activity_id or next_id()
        channel_data: dict[str, Any] = {"tenant": {"id": TENANT}}
        if scope == "channel":
            conversation_id = conversation_id or f"{CHANNEL};messageid={activity_id}"
            channel_data.update({"team": {"id": TEAM}, "channel": {"id": CHANNEL}})
        elif scope == "groupChat":
            conversation_id = conversation_id or GROUP_CHAT
        else:
            conversation_id = conversation_id or user.personal_chat
        entities = []
        if mention:
            text = f"{MENTION} {text}"
            entities.append({"type": "mention", "text": MENTION, "mentioned": BOT})
        return {
            "type": "message",
            "id": activity_id,
            "channelId": "msteams",
            "serviceUrl": self.bf.url + "/",
            "from": {"id": user.id, "name": user.name, "aadObjectId": user.aad},
            "recipient": BOT,
            "conversation": {"id": conversation_id, "conversationType": scope, "tenantId": TENANT},
            "text": text,
            "textFormat": "plain",
            "entities": entities,
            "channelData": channel_data,
            "attachments": attachments or [],
        }

    def click(self, user: TeamsUser, answer: Call, useful: bool) -> dict[str, Any]:
        """The invoke Teams sends when `user` presses 👍/👎 on the answer card the bot posted in `answer`."""
        action = next(a for a in answer.cards[-1]["actions"] if a["data"].get("useful") is useful)
        return self.press(user, answer, action)

    def share(self, user: TeamsUser, answer: Call) -> dict[str, Any]:
        """The invoke Teams sends when `user` presses "Share in thread" on the card the bot posted in `answer`."""
        action = next(a for a in answer.cards[-1]["actions"] if a["verb"] == "qbot.share")
        return self.press(user, answer, action)

    def press(self, user: TeamsUser, answer: Call, action: dict[str, Any]) -> dict[str, Any]:
        """The `adaptiveCard/action` invoke for `action` on the card in `answer`, from the conversation it is in."""
        source = answer.body
        return {
            "type": "invoke",
            "name": "adaptiveCard/action",
            "id": f"f:{next_id()}",
            "channelId": "msteams",
            "serviceUrl": self.bf.url + "/",
            "from": {"id": user.id, "name": user.name, "aadObjectId": user.aad},
            "recipient": BOT,
            "conversation": source["conversation"] | {"tenantId": TENANT},
            "replyToId": answer.response_id,
            "channelData": {"tenant": {"id": TENANT}},
            "value": {"action": {"type": "Action.Execute", "verb": action["verb"], "data": action["data"]}},
        }

    # -- the wire -------------------------------------------------------------------------------------

    def post(self, activity: dict[str, Any], *, token: str | None = "valid", **claims: Any) -> httpx.Response:
        headers = {}
        if token == "valid":
            headers["Authorization"] = f"Bearer {self.bf.token(APP_ID, **claims)}"
        elif token is not None:
            headers["Authorization"] = token
        return self.http.post(self.url + "/api/messages", json=activity, headers=headers)

    def ask(self, activity: dict[str, Any], *, count: int = 1) -> list[Call]:
        """Post a message and wait for the bot's first `count` messages replying to it."""
        before = len(self.bf.calls)
        response = self.post(activity)
        assert response.status_code == 202, response.text
        return self.bf.wait_for(
            lambda calls: (
                found
                if len(found := [c for c in calls[before:] if c.type == "message" and c.kind in ("reply", "send")])
                >= count
                else None
            )
        )

    def answer(self, activity: dict[str, Any]) -> Call:
        """Post a question and wait for the answer card replying to it."""
        before = len(self.bf.calls)
        response = self.post(activity)
        assert response.status_code == 202, response.text
        return self.bf.wait_for(
            lambda calls: next(
                (c for c in calls[before:] if c.kind == "reply" and c.activity_id == activity["id"] and c.cards), None
            )
        )

    def link(self, user: TeamsUser, *, scope: str = "personal") -> httpx.Response:
        """qlink (in personal chat by default), open the sign-in card's URL, sign in at the IdP as the user."""
        self.bf.members[user.id] = self.bf.members.get(user.id) or Member(user.id, user.aad, user.name, user.email)
        before = len(self.bf.calls)
        activity = self.message(user, "qlink", scope=scope, mention=scope != "personal")
        assert self.post(activity).status_code == 202
        card = self.bf.wait_for(
            lambda calls: next((c for c in calls[before:] if c.cards and sign_in_url(c)), None)
        )
        assert card.conversation_id == user.personal_chat
        page = follow_link(sign_in_url(card), user.username)
        return page

    def linked(self, user: TeamsUser) -> None:
        page = self.link(user)
        assert page.status_code == 200 and f"Linked as {user.email}" in page.text, page.text


def questions_seen_by_q(sandbox: Sandbox, email: str) -> list[str]:
    """Every user message Q Business received from `email`, oldest conversation first."""
    conversations = sandbox.q.conversations.of(APP_ID_OF_Q, email)
    return [m.body for c in reversed(conversations) for m in c.messages if m.type == "USER"]


def sign_in_url(call: Call) -> str:
    for card in call.cards:
        for action in card.get("actions", []):
            if action.get("type") == "Action.OpenUrl" and "/auth/start?t=" in action.get("url", ""):
                return str(action["url"])
    return ""


def link_token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["t"][0]


@pytest.fixture
def bot_framework(servers: LoopThread) -> Iterator[FakeBotFramework]:
    fake = FakeBotFramework()
    sock = bind("127.0.0.1", 0)
    fake.url = url_of(sock)
    served = Served(fake.app(), sock)
    servers.run(served.start())
    for user in (ALICE, BOB, CAROL):
        fake.members[user.id] = Member(user.id, user.aad, user.name, user.email)
    everyone = {ALICE.id, BOB.id, CAROL.id}
    fake.rooms[CHANNEL] = Room("channel", set(everyone))
    fake.rooms[GROUP_CHAT] = Room("groupChat", set(everyone))
    yield fake
    servers.run(served.stop())


def teams_env(bf: FakeBotFramework, **extra: str) -> dict[str, str]:
    return {
        "QBOT_TEAMS_APP_ID": APP_ID,
        "QBOT_TEAMS_ALLOW_ANONYMOUS": "true",  # replies unsigned (no MSAL here); tokens in are still checked
        "QBOT_TEAMS_OPENID_METADATA_URL": bf.url + "/v1/.well-known/openidconfiguration",
        **extra,
    }


@pytest.fixture
def make_teams(
    servers: LoopThread, sandbox: Sandbox, bot_socket: socket.socket, redis_url: str, bot_framework: FakeBotFramework
) -> Iterator[Callable[..., TeamsBot]]:
    started: list[TeamsBot] = []
    sockets = [bot_socket]

    def make(**env: str) -> TeamsBot:
        sock = sockets.pop() if sockets else bind("127.0.0.1", 0)
        running = start_bot(servers, sandbox, sock, redis_url, **env)
        teams = TeamsBot(running.url, running, bot_framework, sandbox)
        started.append(teams)
        return teams

    yield make
    while started:
        teams = started.pop()
        teams.http.close()
        servers.run(teams.bot._served.stop())  # type: ignore[attr-defined]


@pytest.fixture
def teams(make_teams: Callable[..., TeamsBot], bot_framework: FakeBotFramework) -> TeamsBot:
    return make_teams(**teams_env(bot_framework))
