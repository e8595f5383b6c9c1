"""Where a reply goes in Slack, and the Web API calls that put it there.

The placement rules, in one place:
- answers and public notices go into the thread of the asking message, replacing the "Thinking…"
  placeholder; an answer the core made private (a channel that answers privately) is ephemeral to the asker;
- private notices (a one-time sign-in link, the link prompt, status) are only ever shown to their owner:
  as an ephemeral message in a channel (falling back to a DM), in the DM itself, or through the
  `response_url` of the owner's own slash command or button click;
- a DM is never ephemeral.

Exactly once in the thread: the client retries 429s, and 5xx or lost connections only for calls that may be
repeated (`retries`). An update of the placeholder whose outcome Slack never told (5xx, timeout) is retried as an
update (same ts, same content), then the placeholder is read back; a new message is posted only where the
placeholder is gone, refused the update, or still says "Thinking…" (then removed). When even that cannot be
known, nothing more is posted: the failure is logged and counted (`deliver`), never shown twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import SlackMessage
from adapters.slack.events import PLATFORM, Place
from adapters.slack.origins import SlackOrigins
from adapters.slack.render import render_answer, render_notice, thinking
from bot.model import Answer, Notice, Reply

log = logging.getLogger(__name__)

RESPONSE_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)
GONE = frozenset({"thread_not_found", "channel_not_found"})  # a read-back finding nothing to update


class Shown(Enum):
    """What the placeholder shows after an update was attempted."""

    MESSAGE = "the message"
    GONE = "nothing: there is no placeholder (any more)"
    REFUSED = "what it showed before, if it is still there: Slack refused the update"
    THINKING = "still Thinking…: the update was not applied"
    UNKNOWN = "unknown"


class SlackReplies:
    def __init__(
        self, client: AsyncWebClient, *, api_url: str, count_failure: Callable[[str, str], None] | None = None
    ) -> None:
        self.client = client
        self._origins = SlackOrigins(api_url)
        self._count_failure = count_failure
        self.session: aiohttp.ClientSession | None = None  # the adapter's, set when it starts

    def undelivered(self, what: str, *, exc_info: bool = False) -> None:
        """Slack lost something the user should have seen: logged and counted (stage `deliver`), never raised."""
        log.error("Slack delivery failed: %s", what, exc_info=exc_info)
        if self._count_failure is not None:
            self._count_failure("deliver", PLATFORM)

    # -- the asking message's thread ------------------------------------------------------------------------

    async def placeholder(self, place: Place, *, private: bool = False) -> str | None:
        """Show progress at once; returns the ts of a placeholder to update later (None when ephemeral)."""
        message = thinking()
        if private and not place.is_dm:
            await self.ephemeral(place, message)
            return None
        response = await self.client.chat_postMessage(
            channel=place.channel, thread_ts=place.thread, **message.payload()
        )
        return str(response["ts"])

    async def deliver(self, place: Place, reply: Reply, placeholder: str | None = None) -> None:
        """Put the reply where it belongs."""
        if isinstance(reply, Answer):
            messages = render_answer(reply)
            if reply.private and not place.is_dm:
                if placeholder is not None:  # (an action review is private even where answers are not)
                    await self._delete(place.channel, placeholder)
                for message in messages:
                    await self.ephemeral(place, message)
                return
            await self.in_thread(place, messages[0], placeholder)
            for message in messages[1:]:
                await self.in_thread(place, message, None)
            return
        await self.notice(place, reply, placeholder)

    async def notice(self, place: Place, notice: Notice, placeholder: str | None = None) -> None:
        message = render_notice(notice)
        if place.is_dm or not notice.private:
            await self.in_thread(place, message, placeholder)
            return
        if placeholder is not None:  # a private notice must not stay behind a public placeholder
            await self._delete(place.channel, placeholder)
        await self.private(place, message)

    async def in_thread(self, place: Place, message: SlackMessage, placeholder: str | None) -> None:
        """Into the placeholder when there is one, else (or when it is gone) as a new message in the thread."""
        shown = Shown.GONE if placeholder is None else await self._replace(place, placeholder, message)
        if shown is Shown.MESSAGE:
            return
        if shown is Shown.UNKNOWN:  # posting could show it twice; an error message could hide the answer
            self.undelivered(f"the placeholder {placeholder} in {place.channel} may not show its reply")
            return
        await self.client.chat_postMessage(channel=place.channel, thread_ts=place.thread, **message.payload())
        if shown is Shown.THINKING and placeholder is not None:
            await self._delete(place.channel, placeholder)

    async def _replace(self, place: Place, ts: str, message: SlackMessage) -> Shown:
        try:
            await self.client.chat_update(channel=place.channel, ts=ts, **message.payload())
            return Shown.MESSAGE
        except SlackApiError as exc:
            if exc.response.status_code < 500:  # Slack answered: nothing changed (the placeholder may be gone)
                log.warning("chat.update refused (%s); posting instead", exc.response.get("error"))
                return Shown.REFUSED
            log.warning("chat.update answered %s; reading the placeholder back", exc.response.status_code)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("chat.update got no answer (%s); reading the placeholder back", type(exc).__name__)
        return await self._read_back(place, ts, message)

    async def _read_back(self, place: Place, ts: str, message: SlackMessage) -> Shown:
        """What the placeholder shows now, from the thread (the bot reads DMs; channels need a history scope it
        is not granted, so there it stays unknown)."""
        try:
            response = await self.client.conversations_replies(
                channel=place.channel, ts=place.thread, oldest=ts, latest=ts, inclusive=True
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in GONE:
                return Shown.GONE
            log.warning("reading the placeholder back failed (%s)", error or exc.response.status_code)
            return Shown.UNKNOWN
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("reading the placeholder back failed (%s)", type(exc).__name__)
            return Shown.UNKNOWN
        found = [m for m in response.get("messages") or [] if isinstance(m, dict) and m.get("ts") == ts]
        if not found:
            return Shown.GONE
        text = found[0].get("text")
        if text == message.text:
            return Shown.MESSAGE
        return Shown.THINKING if text == thinking().text else Shown.UNKNOWN

    async def ephemeral(self, place: Place, message: SlackMessage) -> None:
        await self.client.chat_postEphemeral(
            channel=place.channel, user=place.user, thread_ts=place.thread, **message.payload()
        )

    async def private(self, place: Place, message: SlackMessage) -> None:
        """Ephemeral in the channel; if Slack refuses (bot not in the channel, say), in a DM."""
        if place.is_dm:
            await self.in_thread(place, message, None)
            return
        try:
            await self.ephemeral(place, message)
        except SlackApiError as exc:
            log.warning("chat.postEphemeral failed (%s); sending a DM instead", exc.response.get("error"))
            await self.dm(place.user, message)

    async def _delete(self, channel: str, ts: str) -> None:
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except SlackApiError as exc:
            log.warning("chat.delete of a placeholder failed: %s", exc.response.get("error"))

    # -- DMs and response_url ---------------------------------------------------------------------------------

    async def dm(self, user: str, message: SlackMessage) -> None:
        opened = await self.client.conversations_open(users=user)
        channel = opened["channel"]["id"]
        await self.client.chat_postMessage(channel=channel, **message.payload())

    async def respond(
        self, response_url: str, message: SlackMessage, *, replace_original: bool = False
    ) -> None:
        """Answer a slash command or button click privately through its `response_url`."""
        if not self._is_slack(response_url):
            raise ValueError("response_url is not a Slack URL")
        body: dict[str, Any] = {
            **message.payload(),
            "response_type": "ephemeral",
            "replace_original": replace_original,
        }
        session = self.session
        if session is None:
            raise RuntimeError("the Slack adapter has not started")
        async with session.post(response_url, json=body, timeout=RESPONSE_TIMEOUT) as response:
            if response.status != 200:
                log.warning("response_url answered %s: %s", response.status, (await response.text())[:200])

    def _is_slack(self, url: str) -> bool:
        return self._origins.trusts(url)
