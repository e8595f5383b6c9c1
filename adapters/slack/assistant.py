"""Slack's AI-app surfaces (`QBOT_SLACK_ASSISTANT=true`, when the app's manifest turns them on).

Slack has two of them, and qbot serves both with the same questions path:
- the agent messaging experience (`features.agent_view`, the only one new apps may enable): conversations are
  the app's DM, a question is a DM message answered in its thread. When the user opens the DM
  (`app_home_opened`, tab "messages"), the DM gets the suggested prompts (`QBOT_SLACK_SUGGESTED_PROMPTS`);
- the older assistant view (`features.assistant_view`, kept by apps created before it closed), through Bolt's
  assistant middleware: a new assistant thread (`assistant_thread_started`) gets the suggested prompts, a
  question in it goes through the same durable turn stream as any DM (submitted before Slack is acknowledged),
  and its first question becomes the thread's title.

While Q works, a DM question shows the thread status ("is searching your documents…", Slack's own loading
line) instead of a "Thinking…" message; Slack clears the status when the answer is posted in the thread (or
after two minutes). Where Slack refuses the status (an app without the feature), the placeholder is shown as
before: nothing the user sees depends on the setting being right.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.ports import Memory
from adapters.slack.events import PLATFORM, Place

log = logging.getLogger(__name__)

STATUS = "is searching your documents…"
LOADING_MESSAGES = ("Searching your documents…", "Reading what you may see…", "Writing the answer…")
PROMPTS_TITLE = "Try asking"
TITLE_CHARS = 80  # a thread title is a line in the app's history, not the whole question
THREAD_MEMORY_SECONDS = 7 * 24 * 3600  # an assistant thread waiting for its first question

Spawn = Callable[..., None]
Listener = Callable[..., Awaitable[None]]


def thread_title(question: str) -> str:
    line = " ".join(question.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class SlackAssistant:
    def __init__(self, client: AsyncWebClient, prompts: tuple[str, ...], memory: Memory) -> None:
        self.client = client
        self.prompts = prompts
        self._memory = memory

    def register(self, bolt: AsyncApp, spawn: Spawn, on_question: Listener) -> None:
        """Bolt's assistant middleware for assistant-view threads, and the DM opening for agent-view apps.
        `on_question` is the app's message listener: it submits the question to the turn stream, then acks."""
        assistant = AsyncAssistant(logger=logging.getLogger("adapters.slack.bolt"))

        async def thread_started(ack: Callable[[], Awaitable[Any]], event: dict[str, Any]) -> None:
            await ack()
            thread = event.get("assistant_thread") or {}
            channel, ts = thread.get("channel_id"), thread.get("thread_ts")
            if isinstance(channel, str) and isinstance(ts, str) and channel and ts:
                spawn(self._thread_started(channel, ts), "assistant thread")

        async def context_changed(ack: Callable[[], Awaitable[Any]]) -> None:
            await ack()  # the channel the user is looking at plays no part in their answers

        assistant.thread_started(thread_started)
        assistant.user_message(on_question)
        assistant.thread_context_changed(context_changed)
        bolt.assistant(assistant)

        async def home_opened(ack: Callable[[], Awaitable[Any]], event: dict[str, Any]) -> None:
            await ack()
            channel = event.get("channel")
            if event.get("tab") == "messages" and isinstance(channel, str) and channel.startswith("D"):
                spawn(self._suggest(channel, None), "suggested prompts")

        bolt.event("app_home_opened")(home_opened)

    async def _thread_started(self, channel: str, thread_ts: str) -> None:
        await self._memory.put(PLATFORM, _thread_key(channel, thread_ts), {"titled": False}, THREAD_MEMORY_SECONDS)
        await self._suggest(channel, thread_ts)

    async def _suggest(self, channel: str, thread_ts: str | None) -> None:
        """The prompts as buttons; an agent-view DM takes them without a thread (Slack ignores a call that names
        one there)."""
        if not self.prompts:
            return
        prompts = [{"title": prompt, "message": prompt} for prompt in self.prompts]
        args: dict[str, Any] = {"channel_id": channel, "prompts": prompts, "title": PROMPTS_TITLE}
        if thread_ts is not None:
            args["thread_ts"] = thread_ts
        await self.client.assistant_threads_setSuggestedPrompts(**args)

    def progress(self, place: Place, question: str) -> Callable[[], Coroutine[Any, Any, bool]] | None:
        """How a DM question shows progress (None elsewhere: channels keep their placeholder)."""
        if not place.is_dm:
            return None

        async def show() -> bool:
            return await self.show_status(place, question)

        return show

    async def show_status(self, place: Place, question: str) -> bool:
        """The thread's status while Q works, and the title of an assistant thread's first question; False when
        Slack refused the status (the caller shows a placeholder instead)."""
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=place.channel, thread_ts=place.thread, status=STATUS,
                loading_messages=list(LOADING_MESSAGES),
            )
        except SlackApiError as exc:
            log.warning("Slack refused the thread status (%s); showing a placeholder", exc.response.get("error"))
            return False
        key = _thread_key(place.channel, place.thread)
        remembered = await self._memory.get(PLATFORM, key)
        if remembered is not None and not remembered.get("titled"):
            try:
                await self.client.assistant_threads_setTitle(
                    channel_id=place.channel, thread_ts=place.thread, title=thread_title(question)
                )
                await self._memory.put(PLATFORM, key, {"titled": True}, THREAD_MEMORY_SECONDS)
            except SlackApiError as exc:  # the answer matters, the title does not
                log.warning("Slack refused the thread title (%s)", exc.response.get("error"))
        return True


def _thread_key(channel: str, thread_ts: str) -> str:
    return f"assistant-thread:{channel}:{thread_ts}"
