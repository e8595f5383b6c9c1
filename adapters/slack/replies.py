"""Where a reply goes in Slack, and the Web API calls that put it there.

The placement rules, in one place:
- answers and public notices go into the thread of the asking message, replacing the "Thinking…"
  placeholder; an answer the core made private (a channel that answers privately) is ephemeral to the asker;
- private notices (a one-time sign-in link, the link prompt, status) are only ever shown to their owner:
  as an ephemeral message in a channel (falling back to a DM), in the DM itself, or through the
  `response_url` of the owner's own slash command or button click;
- a DM is never ephemeral.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import SlackMessage
from adapters.slack.events import Place
from adapters.slack.origins import SlackOrigins
from adapters.slack.render import render_answer, render_notice, thinking
from bot.model import Answer, Notice, Reply

log = logging.getLogger(__name__)

RESPONSE_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)


class SlackReplies:
    def __init__(self, client: AsyncWebClient, *, api_url: str) -> None:
        self.client = client
        self._origins = SlackOrigins(api_url)
        self.session: aiohttp.ClientSession | None = None  # the adapter's, set when it starts

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
        if placeholder is not None:
            try:
                await self.client.chat_update(channel=place.channel, ts=placeholder, **message.payload())
                return
            except SlackApiError as exc:  # the placeholder was deleted meanwhile: post anew
                log.warning("chat.update failed (%s); posting instead", exc.response.get("error"))
        await self.client.chat_postMessage(channel=place.channel, thread_ts=place.thread, **message.payload())

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
