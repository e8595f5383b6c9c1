""""Share in thread" under a private answer: the asker shows it to everyone in the thread it was asked in.

The core decides (only the asker, once, within a day); this module posts the shared answer in the thread,
marked as shared by the asker and with its feedback buttons (which still work for the asker only), and tells
the clicker privately how it went.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.commands import identity_of
from adapters.slack.mrkdwn import commands_as_slash
from adapters.slack.render import parse_feedback_value, render_answer, text_message
from adapters.slack.replies import SlackReplies
from bot.core import Core
from bot.model import Notice

log = logging.getLogger(__name__)

SHARED = "Shared in the thread for everyone there."


class Share:
    def __init__(self, core: Core, client: AsyncWebClient, replies: SlackReplies) -> None:
        self.core = core
        self.client = client
        self.replies = replies

    async def share(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        response_url = str(body.get("response_url") or "")
        ids = parse_feedback_value(str(action.get("value") or ""))
        if ids is None:
            log.warning("a share click carried no answer ids")
            return
        shared = await self.core.share(identity_of(body), *ids)
        if isinstance(shared, Notice):
            await self.replies.respond(response_url, text_message(commands_as_slash(shared.text)))
            return
        for message in render_answer(shared.answer):
            await self.client.chat_postMessage(channel=shared.channel, thread_ts=shared.thread, **message.payload())
        await self.replies.respond(response_url, text_message(SHARED))
