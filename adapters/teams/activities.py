"""Reading Teams message activities: who asks, in which scope and reply chain, with what text and files.

Scopes (`conversation.conversationType`): `personal` (1:1 with the bot) answers every message; `channel` and
`groupChat` only messages that @mention the bot. The bot's own mention is removed by the mention entity's own
text (`<at>qbot</at>`), once; the names of other people mentioned stay, without their tags.

Threads: in a channel, each reply chain is a conversation: Teams names it `<channel id>;messageid=<root id>`
(a new post is its own root). Personal and group chats have no reply chains: the whole chat is one thread, so
a user's Q conversation there continues until `qnew` (or until the core forgets it after
`QBOT_CONVERSATION_TTL_SECONDS` without use).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from microsoft_agents.activity import Activity, ChannelAccount

from bot.model import ChatIdentity, FailedAttachment

PLATFORM = "teams"
FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
_OTHER_MENTION = re.compile(r"<at>(.*?)</at>", re.IGNORECASE | re.DOTALL)
NOT_IN_PERSONAL_CHAT = "not read: I can read files only in our private chat; send it to me there."
IMAGES_UNREADABLE = "not read: images aren't supported; attach a document instead."
_SPACES = re.compile(r"[ \t\u00a0]+")


class Scope(Enum):
    PERSONAL = "personal"
    CHANNEL = "channel"
    GROUP_CHAT = "groupChat"


@dataclass(frozen=True)
class FileOffer:
    """A file the user attached in personal chat: Teams hands over a short-lived pre-authorised URL."""

    name: str
    download_url: str


@dataclass(frozen=True)
class TeamsMessage:
    scope: Scope
    identity: ChatIdentity
    user: ChannelAccount  # the asker as Teams addresses them (29:… id, AAD object id, name)
    text: str
    channel: str  # the chat, or the channel (without the reply chain)
    thread: str  # the reply chain in channels; the chat itself in personal and group chats
    message_id: str  # the activity id: redeliveries of one message carry the same
    tenant_id: str
    roster_id: str  # where member lookups go: the team in channels, the chat otherwise
    files: tuple[FileOffer, ...] = ()
    unreadable_files: tuple[FailedAttachment, ...] = ()  # attachments we can't fetch (channel files, images)


def channel_data(activity: Activity) -> dict[str, Any]:
    data = activity.channel_data
    return data if isinstance(data, dict) else {}


def _nested_id(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return ""


def tenant_of(activity: Activity) -> str:
    return _nested_id(channel_data(activity), "tenant") or (
        activity.conversation.tenant_id if activity.conversation and activity.conversation.tenant_id else ""
    )


def scope_of(activity: Activity) -> Scope:
    kind = (activity.conversation.conversation_type if activity.conversation else None) or "personal"
    if kind == "channel":
        return Scope.CHANNEL
    if kind.lower() == "groupchat":
        return Scope.GROUP_CHAT
    return Scope.PERSONAL


def identity_of(activity: Activity) -> ChatIdentity:
    """(teams, tenant, AAD object id): stable across chats and scopes; the 29:… id where there is none."""
    sender = activity.from_property
    user = (sender.aad_object_id or sender.id) if sender else ""
    return ChatIdentity(PLATFORM, tenant_of(activity), user or "")


def is_from_a_bot(activity: Activity) -> bool:
    sender, recipient = activity.from_property, activity.recipient
    if sender is None or not sender.id:
        return True
    return (sender.role or "").lower() == "bot" or (recipient is not None and sender.id == recipient.id)


def _strip_own_mention(activity: Activity, text: str) -> tuple[str, bool]:
    """Remove the bot's mention (its entity's text, first occurrence only); report whether there was one."""
    bot_id = activity.recipient.id if activity.recipient else None
    mentioned = False
    for mention in activity.get_mentions():
        if mention.mentioned is None or mention.mentioned.id != bot_id:
            continue
        mentioned = True
        if mention.text and mention.text in text:
            text = text.replace(mention.text, " ", 1)
    return text, mentioned


def clean_text(text: str) -> str:
    text = _OTHER_MENTION.sub(lambda m: m.group(1), text)
    text = html.unescape(text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip()


def read_message(activity: Activity) -> TeamsMessage | None:
    """The message as the core should see it, or None when it isn't for the bot (no mention, a bot's own)."""
    sender = activity.from_property
    if sender is None or is_from_a_bot(activity) or activity.conversation is None or not activity.id:
        return None
    if activity.value is not None and not (activity.text or "").strip():
        return None  # an Action.Submit from some card: not a question (our buttons use Action.Execute)
    scope = scope_of(activity)
    text, mentioned = _strip_own_mention(activity, activity.text or "")
    if scope is not Scope.PERSONAL and not mentioned:
        return None
    conversation_id = activity.conversation.id
    data = channel_data(activity)
    if scope is Scope.CHANNEL:
        channel = _nested_id(data, "channel") or conversation_id.split(";", 1)[0]
        thread = conversation_id if ";messageid=" in conversation_id else f"{conversation_id};messageid={activity.id}"
        roster = _nested_id(data, "team") or channel
    else:
        channel = thread = roster = conversation_id
    files: list[FileOffer] = []
    unreadable: list[FailedAttachment] = []
    for attachment in activity.attachments or []:
        content = attachment.content if isinstance(attachment.content, dict) else {}
        kind = attachment.content_type or ""
        if kind == FILE_DOWNLOAD_INFO and scope is Scope.PERSONAL and content.get("downloadUrl"):
            files.append(FileOffer(attachment.name or "file", str(content["downloadUrl"])))
        elif kind in (FILE_DOWNLOAD_INFO, "reference"):
            unreadable.append(FailedAttachment(attachment.name or "file", NOT_IN_PERSONAL_CHAT))
        elif kind.startswith("image/"):
            unreadable.append(FailedAttachment(attachment.name or "image", IMAGES_UNREADABLE))
    return TeamsMessage(
        scope=scope,
        identity=identity_of(activity),
        user=sender,
        text=clean_text(text),
        channel=channel,
        thread=thread,
        message_id=activity.id,
        tenant_id=tenant_of(activity),
        roster_id=roster,
        files=tuple(files),
        unreadable_files=tuple(unreadable),
    )
