"""Slash commands (`/qlink`, `/qunlink`, `/qstatus`, `/qnew`) and the "Link my account" button.

The core parses and runs the command (and, for a link, asks the turn for the Slack profile's email, which the
sign-in must match); this module builds the IncomingMessage and answers through the command's or click's
`response_url`: ephemeral, so a one-time link is only ever shown to the person who asked for it. A command
Slack delivers twice (Socket Mode may) runs once: its trigger id is the delivery id.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import SlackMessage
from adapters.slack.events import PLATFORM
from adapters.slack.render import render_answer, render_notice
from adapters.slack.replies import SlackReplies
from adapters.slack.turn import SlackTurn
from bot.core import Core
from bot.model import Answer, ChatIdentity, IncomingMessage, Reply

log = logging.getLogger(__name__)


def identity_of(body: dict[str, Any]) -> ChatIdentity:
    """The clicking or commanding user, the same identity their events carry."""
    user = body.get("user")
    if isinstance(user, dict):  # interactivity payloads
        team = (body.get("team") or {}).get("id") or user.get("team_id") or ""
        return ChatIdentity(PLATFORM, str(team), str(user.get("id") or ""))
    return ChatIdentity(PLATFORM, str(body.get("team_id") or ""), str(body.get("user_id") or ""))


def messages_of(reply: Reply | None) -> list[SlackMessage]:
    if reply is None:
        return []
    return render_answer(reply) if isinstance(reply, Answer) else [render_notice(reply)]


class SlashCommands:
    def __init__(self, core: Core, client: AsyncWebClient, replies: SlackReplies) -> None:
        self.core = core
        self.client = client
        self.replies = replies

    async def handle(
        self, identity: ChatIdentity, text: str, *, channel: str, thread: str, message_id: str, delivery_id: str = ""
    ) -> Reply | None:
        """Run a command for `identity` (None: a redelivery, already handled)."""
        return await self.core.handle(
            IncomingMessage(
                identity, text, channel=channel, thread=thread, message_id=message_id,
                delivery_ids=(delivery_id,) if delivery_id else (),
            ),
            SlackTurn(self.client, identity.user),
        )

    async def slash(self, body: dict[str, Any]) -> None:
        """`/qlink` and friends: answered privately through the command's response_url."""
        text = f"{body.get('command') or ''} {body.get('text') or ''}".strip()
        trigger = str(body.get("trigger_id") or "")
        reply = await self.handle(
            identity_of(body), text, channel=str(body.get("channel_id") or ""), thread="", message_id=trigger,
            delivery_id=f"command:{trigger}" if trigger else "",
        )
        for message in messages_of(reply):
            await self.replies.respond(str(body["response_url"]), message)

    async def link_button(self, body: dict[str, Any]) -> None:
        """The unlinked prompt's button: the prompt (only its owner sees it) becomes their sign-in link."""
        container = body.get("container") or {}
        channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "")
        trigger = str(body.get("trigger_id") or "")
        reply = await self.handle(
            identity_of(body), "qlink", channel=channel, thread="", message_id=trigger,
            delivery_id=f"action:{trigger}" if trigger else "",
        )
        private = bool(container.get("is_ephemeral")) or channel.startswith("D")
        for message in messages_of(reply):
            await self.replies.respond(str(body["response_url"]), message, replace_original=private)
