"""A DM or @mention, answered in its thread: de-duplicated, progress shown, files attached, reply placed.

Runs after Slack has been acknowledged. One Slack message is one question, whatever Slack redelivers:
`core.first_delivery` (Redis, across processes) admits each `event_id` once (Slack's retries repeat it), and
each message (channel, ts) once, should the same message ever arrive under another event id. The core's
message id is the message's ts, so even a redelivery that got past both would be one Q turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp

from adapters.slack.commands import SlashCommands
from adapters.slack.events import PLATFORM, Asked
from adapters.slack.files import NOTHING, SlackFiles
from adapters.slack.replies import SlackReplies
from bot.attachments import DownloadBudget
from bot.commands import parse_command
from bot.core import Core
from bot.errors import QBotError
from bot.model import FailedAttachment, IncomingMessage, Notice, NoticeKind, Reply

log = logging.getLogger(__name__)


class Questions:
    def __init__(
        self,
        core: Core,
        replies: SlackReplies,
        files: SlackFiles,
        commands: SlashCommands,
        session: Callable[[], aiohttp.ClientSession],
        downloads: DownloadBudget,
    ) -> None:
        self.core = core
        self.replies = replies
        self.files = files
        self.commands = commands
        self._session = session
        self.downloads = downloads

    async def first_time(self, asked: Asked) -> bool:
        return await self.core.first_delivery(
            PLATFORM, f"event:{asked.event_id}", f"message:{asked.place.channel}:{asked.message_ts}"
        )

    async def answer(self, asked: Asked) -> None:
        placeholders: list[str] = []
        try:
            if not await self.first_time(asked):
                log.info("ignored a redelivered Slack event %s", asked.event_id)
                return
            await self._answer(asked, placeholders)
        except QBotError as exc:
            await self._error(asked, exc.user_message, placeholders)
        except Exception:
            log.exception("answering a Slack message failed")
            await self._error(asked, QBotError.user_message, placeholders)

    async def _error(self, asked: Asked, text: str, placeholders: list[str]) -> None:
        """Never silent: the failure replaces the placeholder (or is posted), unless Slack itself is failing."""
        try:
            await self.replies.deliver(
                asked.place, Notice(NoticeKind.ERROR, text), placeholders[0] if placeholders else None
            )
        except Exception:
            log.exception("could not tell a Slack user that answering failed")

    async def _answer(self, asked: Asked, placeholders: list[str]) -> None:
        place = asked.place
        text = asked.text
        is_question = parse_command(text, with_files=bool(asked.files)) is None
        if not is_question:
            reply = await self.commands.handle(
                asked.identity, text, channel=place.channel, thread=place.thread, message_id=asked.message_ts
            )
            await self.replies.deliver(place, reply)
            return
        placeholder: str | None = None
        # Only a linked user sees progress (and has files fetched): an unlinked one gets a private prompt.
        linked = await self.core.is_linked(asked.identity)
        if linked:
            placeholder = await self.replies.placeholder(place)
            if placeholder is not None:
                placeholders.append(placeholder)
        reply, skipped = await self._ask(asked, fetch=linked)
        await self.replies.deliver(place, reply, placeholder, skipped)

    async def _ask(self, asked: Asked, *, fetch: bool) -> tuple[Reply, tuple[FailedAttachment, ...]]:
        """The core's reply, with the files read under the download budget; their bytes (and the room reserved
        for them) are let go as soon as the core has answered, before the reply is rendered."""
        place = asked.place
        async with self.downloads.turn(asked.identity.key) as allowance:
            fetched = NOTHING
            if fetch and asked.files:
                fetched = await self.files.fetch(self._session(), asked.files, allowance)
            if fetch and not asked.text.strip() and not fetched.files:
                nothing = Notice(NoticeKind.INFO, "None of your files could be read, so there was nothing to ask.")
                return nothing, fetched.skipped
            reply = await self.core.handle(
                IncomingMessage(
                    identity=asked.identity, text=asked.text, channel=place.channel, thread=place.thread,
                    message_id=asked.message_ts, files=fetched.files,
                )
            )
            return reply, fetched.skipped
