"""A DM or @mention, handed to the core with a Slack turn, and the reply placed in its thread.

Runs in a turn-stream worker, after Slack was acknowledged. One Slack message is one question, whatever Slack
redelivers: the stream admits each delivery once across processes, under both its names (see
`events.delivery_names`); the core's message id is the ts, so even a turn run again (its first worker died) is
one Q turn, and it reuses the placeholder the first run posted (remembered as soon as it was posted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.ports import Memory
from adapters.slack.assistant import SlackAssistant
from adapters.slack.events import PLATFORM, Asked, Place
from adapters.slack.files import SlackFiles, offered
from adapters.slack.render import THINKING
from adapters.slack.replies import SlackReplies
from adapters.slack.turn import SlackTurn
from bot.core import Core
from bot.errors import QBotError
from bot.model import IncomingMessage, Notice, NoticeKind
from bot.pending_questions import PendingQuestion

log = logging.getLogger(__name__)

PLACEHOLDER_MEMORY_SECONDS = 3600  # longer than a turn can wait in the stream and be claimed again


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
    )


class Questions:
    def __init__(
        self,
        core: Core,
        client: AsyncWebClient,
        replies: SlackReplies,
        files: SlackFiles,
        session: Callable[[], aiohttp.ClientSession],
        memory: Memory,
        assistant: SlackAssistant | None = None,
    ) -> None:
        self.core = core
        self.client = client
        self.replies = replies
        self.files = files
        self._session = session
        self._memory = memory
        self._assistant = assistant  # the thread status instead of a placeholder in DMs (QBOT_SLACK_ASSISTANT)

    async def answer(self, asked: Asked, *, again: bool = False) -> None:
        """Answer a question; `again`: its first run may have posted a placeholder before its worker died."""
        await self._answer(message_of(asked), asked.place, asked.files, again=again)

    async def resume(self, pending: PendingQuestion) -> None:
        """A question kept while its asker signed in again: answered now, in the thread it was asked in."""
        message = pending.message
        place = Place(message.channel, message.thread, message.identity.user, is_dm=not message.shared)
        await self._answer(message, place)

    async def _answer(
        self, message: IncomingMessage, place: Place, files: Sequence[dict[str, Any]] = (), *, again: bool = False
    ) -> None:
        key = f"placeholder:{place.channel}:{message.message_id}"
        known: str | None = None
        if again:
            remembered = await self._memory.get(PLATFORM, key)
            known = str(remembered["ts"]) if remembered and remembered.get("ts") else None
            known = known or await self._placeholder_left(place, message.message_id)

        async def remember(ts: str) -> None:
            await self._memory.put(PLATFORM, key, {"ts": ts}, PLACEHOLDER_MEMORY_SECONDS)

        turn = SlackTurn(
            self.client, place.user, place=place, replies=self.replies, files=self.files,
            shared_files=files, session=self._session, placeholder=known, on_placeholder=remember,
            status=self._assistant.progress(place, message.text) if self._assistant else None,
        )
        try:
            reply = await self.core.handle(message, turn)
            if reply is not None:
                await self.replies.deliver(place, reply, turn.placeholder)
        except Exception:
            log.exception("answering a Slack message failed")
            await self._error(place, QBotError.user_message, turn.placeholder)

    async def _placeholder_left(self, place: Place, message_ts: str) -> str | None:
        """The placeholder a dead worker posted but had no time to remember: the thread's first "Thinking…"
        after the question, read back from Slack (where the bot may read the thread's history)."""
        try:
            response = await self.client.conversations_replies(
                channel=place.channel, ts=place.thread, oldest=message_ts, inclusive=False, limit=100
            )
        except SlackApiError as exc:
            log.info("no read-back of the thread for a turn run again: %s", exc.response.get("error"))
            return None
        for posted in response.get("messages") or ():
            if posted.get("bot_id") and posted.get("text") == THINKING and str(posted.get("ts")) > message_ts:
                return str(posted["ts"])
        return None

    async def _error(self, place: Place, text: str, placeholder: str | None) -> None:
        """Never silent: the failure replaces the placeholder (or is posted); if Slack fails that too, the loss is
        logged and counted (`deliver` in /metrics), and nothing is raised."""
        try:
            await self.replies.deliver(place, Notice(NoticeKind.ERROR, text), placeholder)
        except Exception:
            self.replies.undelivered("could not tell a Slack user that answering failed", exc_info=True)
