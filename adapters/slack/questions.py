"""A DM or @mention, handed to the core with a Slack turn, and the reply placed in its thread.

Runs after Slack has been acknowledged. One Slack message is one question, whatever Slack redelivers: the
core admits each delivery once across processes, under both its names (the `event_id`, which Slack's retries
repeat, and the message's channel and ts, should it arrive under another event id); the core's message id is
the ts, so even a redelivery that got past both would be one Q turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import Asked
from adapters.slack.files import SlackFiles, offered
from adapters.slack.replies import SlackReplies
from adapters.slack.turn import SlackTurn
from bot.core import Core
from bot.errors import QBotError
from bot.model import IncomingMessage, Notice, NoticeKind

log = logging.getLogger(__name__)


def message_of(asked: Asked) -> IncomingMessage:
    place = asked.place
    return IncomingMessage(
        identity=asked.identity,
        text=asked.text,
        channel=place.channel,
        thread=place.thread,
        message_id=asked.message_ts,
        shared=not place.is_dm,
        offered=offered(asked.files),
        delivery_ids=(f"event:{asked.event_id}", f"message:{place.channel}:{asked.message_ts}"),
    )


class Questions:
    def __init__(
        self,
        core: Core,
        client: AsyncWebClient,
        replies: SlackReplies,
        files: SlackFiles,
        session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.core = core
        self.client = client
        self.replies = replies
        self.files = files
        self._session = session

    async def answer(self, asked: Asked) -> None:
        turn = SlackTurn(
            self.client, asked.place.user, place=asked.place, replies=self.replies, files=self.files,
            shared_files=asked.files, session=self._session,
        )
        try:
            reply = await self.core.handle(message_of(asked), turn)
            if reply is not None:
                await self.replies.deliver(asked.place, reply, turn.placeholder)
        except Exception:
            log.exception("answering a Slack message failed")
            await self._error(asked, QBotError.user_message, turn.placeholder)

    async def _error(self, asked: Asked, text: str, placeholder: str | None) -> None:
        """Never silent: the failure replaces the placeholder (or is posted), unless Slack itself is failing."""
        try:
            await self.replies.deliver(asked.place, Notice(NoticeKind.ERROR, text), placeholder)
        except Exception:
            log.exception("could not tell a Slack user that answering failed")
