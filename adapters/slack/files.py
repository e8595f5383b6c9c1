"""Files shared with a question: what Slack says of them, and reading one with the bot token.

Which files are read (how many, which types, how large, when, and within what budget) is the core's call
(`bot.attachments`, `Core.handle`); this module only describes Slack's files as `OfferedFile`s and downloads
the one the core asks for, asking its `FileRoom` as bytes arrive (Slack's announced size may be wrong). The bot
token is only ever sent to Slack's own origins (`SlackOrigins`: https to Slack's hosts, or exactly the
configured Web API's scheme, host and port), and redirects are not followed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

from adapters.slack.origins import SlackOrigins
from bot.attachments import FileRoom
from bot.model import ChatFile, FailedAttachment, OfferedFile

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)
CHUNK_BYTES = 64 * 1024
DELETED = "not read: it was deleted."


def _name(file: dict[str, Any]) -> str:
    return str(file.get("name") or file.get("title") or "file")


def offered(shared: Sequence[dict[str, Any]]) -> tuple[OfferedFile, ...]:
    """Slack's file objects as the core sees them; `ref` is the file's position in the event."""
    files = []
    for position, file in enumerate(shared):
        size = file.get("size")
        deleted = file.get("mode") == "tombstone" or file.get("file_access") == "file_not_found"
        files.append(
            OfferedFile(
                _name(file), size if isinstance(size, int) else None, DELETED if deleted else None, str(position)
            )
        )
    return tuple(files)


class SlackFiles:
    def __init__(self, *, bot_token: str, api_url: str) -> None:
        self._token = bot_token
        self._origins = SlackOrigins(api_url)

    def may_carry_token(self, url: str) -> bool:
        return self._origins.trusts(url)

    async def download(
        self, session: aiohttp.ClientSession, file: dict[str, Any], room: FileRoom
    ) -> ChatFile | FailedAttachment:
        """Read one file within its room; a note says why it was not read."""
        name = _name(file)
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        if not url or not self.may_carry_token(url):
            return FailedAttachment(name, "not read: Slack did not share it with the bot.")
        mime_type = str(file.get("mimetype") or "application/octet-stream")
        try:
            async with session.get(
                url, headers={"Authorization": f"Bearer {self._token}"}, timeout=DOWNLOAD_TIMEOUT,
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    log.warning("Slack file download answered HTTP %s", response.status)
                    return FailedAttachment(name, f"not read: the download failed (HTTP {response.status}).")
                served = response.headers.get("Content-Type", "")
                if served.startswith("text/html") and not mime_type.startswith("text/html"):
                    # Slack answers a download it won't authorize with its sign-in page, not an error.
                    return FailedAttachment(name, "not read: Slack refused the download (the app needs files:read).")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    size += len(chunk)
                    if refusal := room.refuse(size):
                        return FailedAttachment(name, refusal)
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Slack file download failed: %s", type(exc).__name__)
            return FailedAttachment(name, "not read: the download failed. Try sending it again.")
        return ChatFile(name=name, data=b"".join(chunks), mime_type=mime_type)
