"""Reading a file a user attached in personal chat, when the core asks (it picks the files and keeps the budget).

Teams hands the bot a short-lived, pre-authorised `downloadUrl` per file (no bot token is sent with it). The URL
comes inside the activity, so it is fetched only from Microsoft's file hosts (`FileHosts`: https on port 443 to
a host on `QBOT_TEAMS_FILE_HOSTS`, by default `*.sharepoint.com`, where Teams keeps chat files); plain http
and loopback addresses only in anonymous development mode (`QBOT_TEAMS_ALLOW_ANONYMOUS`, for local stand-ins).
Redirects are never followed. Teams does not say a file's size up front, so the core reserves the per-file
maximum for it, and a download stops as soon as its `FileRoom` refuses more.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from adapters.hosts import is_loopback_host
from adapters.teams.activities import FileOffer
from bot.attachments import FileRoom
from bot.errors import ConfigError
from bot.model import ChatFile, FailedAttachment

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
DEFAULT_FILE_HOSTS = ("*.sharepoint.com",)
NOT_FROM_MICROSOFT = "not read: its download link doesn't point to Microsoft's file storage."


def is_loopback_url(url: str) -> bool:
    """http(s) to localhost or a loopback address: where local stand-ins of Microsoft services run."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and is_loopback_host(parts.hostname or "")


def parse_file_hosts(raw: str | None) -> tuple[str, ...]:
    """`QBOT_TEAMS_FILE_HOSTS`: comma-separated host names, `*.` for any subdomain; empty means the default."""
    hosts = tuple(h.strip().lower() for h in (raw or "").split(",") if h.strip())
    for host in hosts:
        name = host.removeprefix("*.")
        if not name or "*" in name or "/" in name or ":" in name or "." not in name:
            raise ConfigError(
                f"QBOT_TEAMS_FILE_HOSTS: {host!r} is not a host name (e.g. contoso-my.sharepoint.com or "
                "*.sharepoint.com)"
            )
    return hosts or DEFAULT_FILE_HOSTS


@dataclass(frozen=True)
class FileHosts:
    """Where a downloadUrl may point. `development` (anonymous mode) also allows http and loopback."""

    patterns: tuple[str, ...] = DEFAULT_FILE_HOSTS
    development: bool = False

    def allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port
        except ValueError:
            return False
        if not host or parts.scheme not in ("http", "https"):
            return False
        if self.development and is_loopback_host(host):
            return True
        if parts.scheme != "https" and not self.development:
            return False
        if port not in (None, 443):
            return False
        return any(host.endswith(p[1:]) if p.startswith("*.") else host == p for p in self.patterns)


async def download(
    http: aiohttp.ClientSession, offer: FileOffer, hosts: FileHosts, room: FileRoom
) -> ChatFile | FailedAttachment:
    """Read one file within its room; a note says why it was not read."""
    if not hosts.allows(offer.download_url):
        log.warning("refused a Teams file download outside the allowed file hosts")
        return FailedAttachment(offer.name, NOT_FROM_MICROSOFT)
    try:
        async with http.get(offer.download_url, allow_redirects=False) as response:
            if response.status != 200:
                log.warning("file download answered HTTP %s", response.status)
                return FailedAttachment(offer.name, f"not read: the download failed (HTTP {response.status}).")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                size += len(chunk)
                if refusal := room.refuse(size):
                    return FailedAttachment(offer.name, refusal)
                chunks.append(chunk)
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("file download failed: %s", type(exc).__name__)
        return FailedAttachment(offer.name, "not read: the download failed. Try sending it again.")
    mime_type = mimetypes.guess_type(offer.name)[0] or "application/octet-stream"
    return ChatFile(offer.name, b"".join(chunks), mime_type)
