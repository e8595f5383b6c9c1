"""Slash commands (`/qlink`, `/qunlink`, `/qstatus`, `/qnew`), the same words in a DM or mention, and the
"Link my account" button.

The core parses and runs the command; this module only builds its IncomingMessage and, for a link, reads the
chat profile's email from `users.info` (scope `users:read.email`) for the core's email-match rule. When that
email can't be read and the rule is on (`QBOT_REQUIRE_EMAIL_MATCH`, the default), no link is made and the
user is told why, as the Teams adapter does; with the rule off the link is made and the user is told their
sign-in won't be checked. Slash commands and button clicks are answered through their `response_url`:
ephemeral, so a one-time link is only ever shown to the person who asked for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import PLATFORM
from adapters.slack.render import SlackMessage, render_answer, render_notice
from adapters.slack.replies import SlackReplies
from bot.commands import Command, parse_command
from bot.core import Core
from bot.errors import ProfileEmailUnknown
from bot.model import Answer, ChatIdentity, IncomingMessage, Notice, NoticeKind, Reply

log = logging.getLogger(__name__)

_SCOPE_ERRORS = {"missing_scope", "not_allowed_token_type", "no_permission"}


@dataclass(frozen=True)
class ProfileEmail:
    email: str | None
    problem: str = ""  # why it could not be read, in words a user can pass on to an administrator


async def profile_email(client: AsyncWebClient, user: str) -> ProfileEmail:
    try:
        response = await client.users_info(user=user)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "unknown_error")
        log.warning("users.info for a link failed: %s", error)
        if error in _SCOPE_ERRORS:
            return ProfileEmail(None, "the Slack app lacks the users:read.email scope")
        return ProfileEmail(None, f"Slack answered {error}")
    except Exception as exc:  # Slack unreachable: a connection error or a timeout
        log.warning("users.info for a link failed: %s", type(exc).__name__)
        return ProfileEmail(None, "Slack did not answer")
    profile = (response.get("user") or {}).get("profile") or {}
    email = profile.get("email")
    if isinstance(email, str) and email.strip():
        return ProfileEmail(email.strip())
    return ProfileEmail(None, "your Slack profile shows no email address (the app needs users:read.email)")


def identity_of(body: dict[str, Any]) -> ChatIdentity:
    """The clicking or commanding user, the same identity their events carry."""
    user = body.get("user")
    if isinstance(user, dict):  # interactivity payloads
        team = (body.get("team") or {}).get("id") or user.get("team_id") or ""
        return ChatIdentity(PLATFORM, str(team), str(user.get("id") or ""))
    return ChatIdentity(PLATFORM, str(body.get("team_id") or ""), str(body.get("user_id") or ""))


def messages_of(reply: Reply) -> list[SlackMessage]:
    return render_answer(reply) if isinstance(reply, Answer) else [render_notice(reply)]


class SlashCommands:
    def __init__(self, core: Core, client: AsyncWebClient, replies: SlackReplies) -> None:
        self.core = core
        self.client = client
        self.replies = replies

    async def handle(self, identity: ChatIdentity, text: str, *, channel: str, thread: str, message_id: str) -> Reply:
        """Run a command (from a slash command, a DM or a mention) for `identity`."""
        linking = parse_command(text) is Command.LINK
        profile = await profile_email(self.client, identity.user) if linking else ProfileEmail(None)
        if linking and profile.email is None:  # the core would refuse it too: say why in Slack's terms
            return Notice(NoticeKind.ERROR, f"{ProfileEmailUnknown.user_message} ({profile.problem}.)", private=True)
        return await self.core.handle(
            IncomingMessage(identity, text, channel=channel, thread=thread, message_id=message_id,
                            profile_email=profile.email)
        )

    async def slash(self, body: dict[str, Any]) -> None:
        """`/qlink` and friends: answered privately through the command's response_url."""
        text = f"{body.get('command') or ''} {body.get('text') or ''}".strip()
        reply = await self.handle(
            identity_of(body), text, channel=str(body.get("channel_id") or ""), thread="",
            message_id=str(body.get("trigger_id") or ""),
        )
        for message in messages_of(reply):
            await self.replies.respond(str(body["response_url"]), message)

    async def link_button(self, body: dict[str, Any]) -> None:
        """The unlinked prompt's button: the prompt (only its owner sees it) becomes their sign-in link."""
        container = body.get("container") or {}
        channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "")
        reply = await self.handle(
            identity_of(body), "qlink", channel=channel, thread="", message_id=str(body.get("trigger_id") or "")
        )
        private = bool(container.get("is_ephemeral")) or channel.startswith("D")
        for message in messages_of(reply):
            await self.replies.respond(str(body["response_url"]), message, replace_original=private)
