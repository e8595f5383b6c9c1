"""👍/👎 under an answer: the core records the rating (PutFeedback) if the clicker is the asker.

The core decides who may rate (the owner of the Q conversation); anyone else gets a private note and nothing
changes. After a rating the buttons become "Thanks for the feedback" in place: `chat.update` for a message
in a thread or DM, the click's `response_url` for an ephemeral answer (which `chat.update` can't reach).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import SlackMessage
from adapters.slack.commands import identity_of
from adapters.slack.mrkdwn import commands_as_slash
from adapters.slack.render import FEEDBACK_UP, THANKS, parse_feedback_value, text_message, thanked
from adapters.slack.replies import SlackReplies
from bot.core import Core
from bot.model import NoticeKind, Usefulness

log = logging.getLogger(__name__)


class Feedback:
    def __init__(self, core: Core, client: AsyncWebClient, replies: SlackReplies) -> None:
        self.core = core
        self.client = client
        self.replies = replies

    async def rate(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        response_url = str(body.get("response_url") or "")
        ids = parse_feedback_value(str(action.get("value") or ""))
        if ids is None:
            log.warning("a feedback click carried no answer ids")
            return
        useful = action.get("action_id") == FEEDBACK_UP
        usefulness = Usefulness.USEFUL if useful else Usefulness.NOT_USEFUL
        rated = await self.core.feedback(identity_of(body), *ids, usefulness)
        if rated.kind is not NoticeKind.INFO:
            await self.replies.respond(response_url, text_message(commands_as_slash(rated.text)))
            return
        await self._thank(body, response_url, useful)

    async def _thank(self, body: dict[str, Any], response_url: str, useful: bool) -> None:
        container = body.get("container") or {}
        message = body.get("message") or {}
        blocks = message.get("blocks")
        if isinstance(blocks, list) and blocks:
            redrawn = SlackMessage(str(message.get("text") or THANKS), thanked(blocks, useful))
            if container.get("is_ephemeral"):
                await self.replies.respond(response_url, redrawn, replace_original=True)
            else:
                await self.client.chat_update(
                    channel=str(container.get("channel_id") or (body.get("channel") or {}).get("id")),
                    ts=str(container.get("message_ts") or message.get("ts")),
                    **redrawn.payload(),
                )
            return
        # Slack sent no copy of the message (ephemeral answers): say thanks without touching the answer.
        await self.replies.respond(response_url, text_message(THANKS))
