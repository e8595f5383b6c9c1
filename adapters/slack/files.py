"""Files shared with a question: chosen under the core's attachment policy, downloaded with the bot token.

Which files go to Q (how many, which types, how large) is `bot.attachments`' call, the same for every
platform; the size cap is enforced again while reading, whatever Slack's metadata says. Every file left out
becomes a FailedAttachment that says why, rendered like a file Q itself refused. The bot token is only ever
sent to Slack's own hosts over https (or to the configured Web API's host, which tests point at a local
fake), never to a URL elsewhere, and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.attachments import MAX_FILE_BYTES, MAX_FILES, file_problem, too_large, too_many
from bot.model import ChatFile, FailedAttachment

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    files: tuple[ChatFile, ...]
    skipped: tuple[FailedAttachment, ...]


NOTHING = Fetched((), ())


def _name(file: dict[str, Any]) -> str:
    return str(file.get("name") or file.get("title") or "file")


class SlackFiles:
    def __init__(self, *, bot_token: str, api_url: str) -> None:
        self._token = bot_token
        self._api_host = (urlsplit(api_url).hostname or "").lower()

    def may_carry_token(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host and host == self._api_host:
            return parts.scheme in ("http", "https")
        return parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))

    async def fetch(self, session: aiohttp.ClientSession, shared: Sequence[dict[str, Any]]) -> Fetched:
        skipped: list[FailedAttachment] = []
        wanted: list[dict[str, Any]] = []
        for file in shared:
            size = file.get("size")
            problem = file_problem(_name(file), size if isinstance(size, int) else None)
            if file.get("mode") == "tombstone" or file.get("file_access") == "file_not_found":
                skipped.append(FailedAttachment(_name(file), "not read: it was deleted."))
            elif problem:
                skipped.append(FailedAttachment(_name(file), f"not read: {problem}"))
            elif len(wanted) >= MAX_FILES:
                skipped.append(too_many(_name(file)))
            else:
                wanted.append(file)
        results = await asyncio.gather(*(self._download(session, file) for file in wanted))
        files = tuple(r for r in results if isinstance(r, ChatFile))
        skipped.extend(r for r in results if isinstance(r, FailedAttachment))
        return Fetched(files, tuple(skipped))

    async def _download(self, session: aiohttp.ClientSession, file: dict[str, Any]) -> ChatFile | FailedAttachment:
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
                data = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    data.extend(chunk)
                    if len(data) > MAX_FILE_BYTES:
                        return FailedAttachment(name, f"not read: {too_large()}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Slack file download failed: %s", type(exc).__name__)
            return FailedAttachment(name, "not read: the download failed. Try sending it again.")
        return ChatFile(name=name, data=bytes(data), mime_type=mime_type)
