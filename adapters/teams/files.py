"""Fetching the files a user attaches in personal chat, under the core's attachment policy.

Teams hands the bot a short-lived, pre-authorised `downloadUrl` per file (no bot token is sent with it). Only
https URLs are fetched (plain http only on loopback, for local stand-ins), never following redirects, and a
download stops as soon as it passes the size cap: Teams does not say a file's size up front.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import mimetypes
from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp

from adapters.teams.activities import FileOffer
from bot.attachments import MAX_FILE_BYTES, MAX_FILES, file_problem, too_large, too_many
from bot.model import ChatFile, FailedAttachment

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024


def is_loopback_url(url: str) -> bool:
    """http(s) to localhost or a loopback address: where local stand-ins of Microsoft services run."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _fetchable(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (parts.scheme == "https" and bool(parts.hostname)) or is_loopback_url(url)


async def _download(http: aiohttp.ClientSession, offer: FileOffer) -> ChatFile | FailedAttachment:
    problem = file_problem(offer.name)
    if problem:
        return FailedAttachment(offer.name, f"not read: {problem}")
    if not _fetchable(offer.download_url):
        return FailedAttachment(offer.name, "not read: Teams gave no secure download link for it.")
    try:
        async with http.get(offer.download_url, allow_redirects=False) as response:
            if response.status != 200:
                log.warning("file download answered HTTP %s", response.status)
                return FailedAttachment(offer.name, f"not read: the download failed (HTTP {response.status}).")
            data = bytearray()
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                data.extend(chunk)
                if len(data) > MAX_FILE_BYTES:
                    return FailedAttachment(offer.name, f"not read: {too_large()}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("file download failed: %s", type(exc).__name__)
        return FailedAttachment(offer.name, "not read: the download failed. Try sending it again.")
    mime_type = mimetypes.guess_type(offer.name)[0] or "application/octet-stream"
    return ChatFile(offer.name, bytes(data), mime_type)


async def fetch_files(
    http: aiohttp.ClientSession, offers: Sequence[FileOffer]
) -> tuple[tuple[ChatFile, ...], tuple[FailedAttachment, ...]]:
    """The files to send to Q, and a note for each file left out (and why)."""
    results = await asyncio.gather(*(_download(http, offer) for offer in offers[:MAX_FILES]))
    files = tuple(r for r in results if isinstance(r, ChatFile))
    notes = [r for r in results if isinstance(r, FailedAttachment)]
    notes.extend(too_many(offer.name) for offer in offers[MAX_FILES:])
    return files, tuple(notes)
