"""The core's turn port for one Slack message, slash command or button click.

Progress is a "Thinking…" placeholder in the thread (ephemeral when the answer will be private), or, in a DM of
an app with Slack's AI-app surface (`assistant.py`), the thread's status, which Slack clears when the reply is
posted; the profile email comes from `users.info`; offered files are read with the bot token. The placeholder's
ts is kept so the reply can replace it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import Place
from adapters.slack.files import SlackFiles
from adapters.slack.profile import profile_email
from adapters.slack.replies import SlackReplies
from bot.attachments import FileRoom
from bot.model import ChatFile, FailedAttachment, OfferedFile, ProfileEmail


class SlackTurn:
    signs_in_itself = False

    def __init__(
        self,
        client: AsyncWebClient,
        user: str,
        *,
        place: Place | None = None,
        replies: SlackReplies | None = None,
        files: SlackFiles | None = None,
        shared_files: Sequence[dict[str, Any]] = (),
        session: Callable[[], aiohttp.ClientSession] | None = None,
        placeholder: str | None = None,
        on_placeholder: Callable[[str], Awaitable[None]] | None = None,
        status: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._client = client
        self._user = user
        self._place = place
        self._replies = replies
        self._files = files
        self._shared_files = list(shared_files)
        self._session = session
        self.placeholder = placeholder  # the ts of the public "Thinking…" message, to replace
        self._on_placeholder = on_placeholder  # told its ts at once, so a turn run again reuses it
        self._status = status  # the thread status instead of a placeholder; False: Slack refused it

    async def show_progress(self, *, private: bool) -> None:
        if self.placeholder is not None:  # a turn run again (its first worker died): its placeholder is there
            return
        if self._status is not None and await self._status():
            return
        if self._place is not None and self._replies is not None:
            self.placeholder = await self._replies.placeholder(self._place, private=private)
            if self.placeholder is not None and self._on_placeholder is not None:
                await self._on_placeholder(self.placeholder)

    async def profile_email(self) -> ProfileEmail:
        return await profile_email(self._client, self._user)

    async def download(self, file: OfferedFile, room: FileRoom) -> ChatFile | FailedAttachment:
        if self._files is None or self._session is None or not file.ref.isdigit():
            return FailedAttachment(file.name, "not read: Slack did not share it with the bot.")
        return await self._files.download(self._session(), self._shared_files[int(file.ref)], room)

    def address(self) -> str:
        """The message's channel, thread and asker say where a kept question is answered: nothing more."""
        return ""
