"""Files shared with a question: chosen under the core's attachment policy, downloaded with the bot token.

Which files go to Q (how many, which types, how large) is `bot.attachments`' call, the same for every
platform; the size cap is enforced again while reading, whatever Slack's metadata says. Every byte is reserved
in the turn's `FileAllowance` before it is read (Slack announces each file's size; a file that turns out larger
must find room at once or is left out), so the process never holds more file bytes than its budget. Every file
left out becomes a FailedAttachment that says why, rendered like a file Q itself refused. The bot token is only
ever sent to Slack's own origins (`SlackOrigins`: https to Slack's hosts, or exactly the configured Web API's
scheme, host and port), and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.slack.origins import SlackOrigins
from bot.attachments import BUSY, MAX_FILE_BYTES, MAX_FILES, FileAllowance, file_problem, too_large, too_many
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


def _announced(file: dict[str, Any]) -> int:
    size = file.get("size")
    return size if isinstance(size, int) and 0 <= size <= MAX_FILE_BYTES else MAX_FILE_BYTES


class SlackFiles:
    def __init__(self, *, bot_token: str, api_url: str) -> None:
        self._token = bot_token
        self._origins = SlackOrigins(api_url)

    def may_carry_token(self, url: str) -> bool:
        return self._origins.trusts(url)

    async def fetch(
        self, session: aiohttp.ClientSession, shared: Sequence[dict[str, Any]], allowance: FileAllowance
    ) -> Fetched:
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
        admitted = await allowance.reserve([_announced(f) for f in wanted])
        skipped.extend(admitted.notes([_name(f) for f in wanted]))
        wanted = wanted[: admitted.count]
        results = await asyncio.gather(*(self._download(session, file, allowance) for file in wanted))
        files = tuple(r for r in results if isinstance(r, ChatFile))
        skipped.extend(r for r in results if isinstance(r, FailedAttachment))
        return Fetched(files, tuple(skipped))

    async def _download(
        self, session: aiohttp.ClientSession, file: dict[str, Any], allowance: FileAllowance
    ) -> ChatFile | FailedAttachment:
        """Read one file within the room reserved for it; whatever is not kept goes back to the budget."""
        name = _name(file)
        room = _announced(file)
        kept = 0
        try:
            url = str(file.get("url_private_download") or file.get("url_private") or "")
            if not url or not self.may_carry_token(url):
                return FailedAttachment(name, "not read: Slack did not share it with the bot.")
            mime_type = str(file.get("mimetype") or "application/octet-stream")
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
                    if size > MAX_FILE_BYTES:
                        return FailedAttachment(name, f"not read: {too_large()}")
                    if size > room:  # larger than Slack said: only with room to spare right now
                        if not allowance.try_more(size - room):
                            return FailedAttachment(name, BUSY)
                        room = size
                    chunks.append(chunk)
            kept = size
            return ChatFile(name=name, data=b"".join(chunks), mime_type=mime_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Slack file download failed: %s", type(exc).__name__)
            return FailedAttachment(name, "not read: the download failed. Try sending it again.")
        finally:
            allowance.give_back(room - kept)
