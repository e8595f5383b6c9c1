"""Slack Events API payloads (`app_mention`, `message.im`) as the questions the bot should take, or None.

What is taken: a person's new message that @mentions the bot in a channel or private channel, and a person's
new message in a DM with the bot (a thread reply in a DM continues its conversation without a mention).
What is ignored: the bot's own and other bots' messages, edits, deletions and every other subtype, and
`app_mention`s in DMs (the `message.im` event of the same message is the one handled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adapters.slack.mrkdwn import from_slack_text
from bot.model import ChatIdentity

PLATFORM = "slack"
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


@dataclass(frozen=True)
class Place:
    """Where a reply goes: the channel, the thread under the asking message, and the asker."""

    channel: str
    thread: str
    user: str
    is_dm: bool


@dataclass(frozen=True)
class Asked:
    identity: ChatIdentity
    text: str
    place: Place
    message_ts: str  # the asking message's ts: stable across Slack's retries, so one Q turn per message
    event_id: str
    files: tuple[dict[str, Any], ...] = ()


def encode(asked: Asked) -> str:
    """The question as the turn stream keeps it (sealed there), to be answered by any process's worker."""
    return json.dumps(
        {
            "i": [asked.identity.platform, asked.identity.tenant, asked.identity.user],
            "x": asked.text,
            "p": [asked.place.channel, asked.place.thread, asked.place.user, asked.place.is_dm],
            "m": asked.message_ts,
            "e": asked.event_id,
            "f": list(asked.files),
        },
        separators=(",", ":"),
    )


def decode(payload: str) -> Asked:
    data = json.loads(payload)
    platform, tenant, user = (str(part) for part in data["i"])
    channel, thread, asker, dm = data["p"]
    return Asked(
        identity=ChatIdentity(platform, tenant, user),
        text=str(data["x"]),
        place=Place(str(channel), str(thread), str(asker), bool(dm)),
        message_ts=str(data["m"]),
        event_id=str(data["e"]),
        files=tuple(f for f in data["f"] if isinstance(f, dict)),
    )


def delivery_names(asked: Asked) -> tuple[str, ...]:
    """The delivery's names: Slack's retries repeat the event id; the same message under another event id
    (an app_mention and a message event, say) has the same channel and ts."""
    return (f"event:{asked.event_id}", f"message:{asked.place.channel}:{asked.message_ts}")


def is_dm(event: dict[str, Any]) -> bool:
    return event.get("channel_type") == "im" or str(event.get("channel", "")).startswith("D")


def asked(body: dict[str, Any], *, bot_user_id: str | None) -> Asked | None:
    """The question in an `event_callback` body, or None when the bot should not answer it."""
    event = body.get("event") or {}
    kind = event.get("type")
    if kind == "app_mention":
        if is_dm(event):
            return None
    elif kind == "message":
        if not is_dm(event):
            return None
    else:
        return None
    if event.get("subtype") not in USER_SUBTYPES or event.get("hidden") or "edited" in event:
        return None
    user = event.get("user")
    if not isinstance(user, str) or not user or user == bot_user_id:
        return None
    if event.get("bot_id") or event.get("bot_profile"):  # this bot's own messages, or any other bot's
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
        return None
    team = body.get("team_id") or event.get("team") or ""
    dm = is_dm(event)
    place = Place(
        channel=channel,
        thread=str(event.get("thread_ts") or ts),
        user=user,
        is_dm=dm,
    )
    files = tuple(f for f in event.get("files") or () if isinstance(f, dict))
    return Asked(
        identity=ChatIdentity(PLATFORM, str(team), user),
        text=from_slack_text(str(event.get("text") or ""), bot_user_id),
        place=place,
        message_ts=ts,
        event_id=str(body.get("event_id") or f"{channel}:{ts}"),
        files=files,
    )
