"""A DM or @mention, handed to the core with a Slack turn, and the reply placed in its thread.

Runs after Slack has been acknowledged. One Slack message is one question, whatever Slack redelivers: the
core admits each delivery once across processes, under both its names (the `event_id`, which Slack's retries
repeat, and the message's channel and ts, should it arrive under another event id); the core's message id is
the ts, so even a redelivery that got past both would be one Q turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import Asked, Place
from adapters.slack.files import SlackFiles, offered
from adapters.slack.replies import SlackReplies
from adapters.slack.turn import SlackTurn
from bot.core import Core
from bot.errors import QBotError
from bot.model import IncomingMessage, Notice, NoticeKind
from bot.pending_questions import PendingQuestion

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
        await self._answer(message_of(asked), asked.place, asked.files)

    async def resume(self, pending: PendingQuestion) -> None:
        """A question kept while its asker signed in again: answered now, in the thread it was asked in."""
        message = pending.message
        place = Place(message.channel, message.thread, message.identity.user, is_dm=not message.shared)
        await self._answer(message, place)

    async def _answer(self, message: IncomingMessage, place: Place, files: Sequence[dict[str, Any]] = ()) -> None:
        turn = SlackTurn(
            self.client, place.user, place=place, replies=self.replies, files=self.files,
            shared_files=files, session=self._session,
        )
        try:
            reply = await self.core.handle(message, turn)
            if reply is not None:
                await self.replies.deliver(place, reply, turn.placeholder)
        except Exception:
            log.exception("answering a Slack message failed")
            await self._error(place, QBotError.user_message, turn.placeholder)

    async def _error(self, place: Place, text: str, placeholder: str | None) -> None:
        """Never silent: the failure replaces the placeholder (or is posted); if Slack fails that too, the loss is
        logged and counted (`deliver` in /metrics), and nothing is raised."""
        try:
            await self.replies.deliver(place, Notice(NoticeKind.ERROR, text), placeholder)
        except Exception:
            self.replies.undelivered("could not tell a Slack user that answering failed", exc_info=True)
