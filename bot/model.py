"""The core's value types: the neutral message, answer and notice adapters translate to and from, and the
values the core's stores and clients hand each other (credentials, conversation references). Nothing here
knows a chat platform's wire format or does I/O."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class ChatIdentity:
    """Who is asking: a user of one chat platform, within one workspace or tenant."""

    platform: str  # "slack", "teams", "web"
    tenant: str  # Slack team id, Teams tenant id; "" where the platform has none
    user: str  # the platform's stable user id

    @property
    def key(self) -> str:
        """A Redis-safe, unambiguous key: components are percent-encoded, so no ':' can collide."""
        return ":".join(quote(part, safe="") for part in (self.platform, self.tenant, self.user))


@dataclass(frozen=True)
class ChatFile:
    """A file the user sent with the message, already downloaded by the adapter (or too large to be)."""

    name: str
    data: bytes
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True)
class OfferedFile:
    """A file sent with a message, before it is read: what the platform says of it. The core decides which
    offered files are read (and when: inside the thread's turn, under the download budget)."""

    name: str
    size: int | None = None  # bytes, when the platform says
    unreadable: str | None = None  # why the platform cannot hand it over at all, in the user's words
    ref: str = ""  # the adapter's handle for downloading it (an index, an id); opaque to the core


@dataclass(frozen=True)
class ProfileEmail:
    """The chat profile's email, or why it could not be read (in words a user can pass on to an admin)."""

    email: str | None
    problem: str = ""


@dataclass(frozen=True)
class IncomingMessage:
    identity: ChatIdentity
    text: str
    channel: str  # the conversation container: DM, channel or group chat id
    thread: str  # the thread (Slack thread_ts, Teams reply chain); one Q conversation per (user, thread)
    message_id: str  # the platform's id of this message: retries of it map to one Q turn
    files: tuple[ChatFile, ...] = ()  # files already read (the web console's; chat platforms offer instead)
    profile_email: str | None = None  # the chat profile's email, when the platform tells it up front
    shared: bool = False  # asked where others can read the answer (a channel, a group chat), not 1:1
    offered: tuple[OfferedFile, ...] = ()  # files the core may read through the turn
    delivery_ids: tuple[str, ...] = ()  # the platform's names for this delivery: a redelivery is ignored


@dataclass(frozen=True)
class Source:
    number: int
    title: str
    url: str | None
    snippet: str = ""


@dataclass(frozen=True)
class FailedAttachment:
    name: str
    error: str


@dataclass(frozen=True)
class Answer:
    """Q Business's reply, in markdown, with numbered sources; the ids let feedback find the turn."""

    text: str
    sources: tuple[Source, ...]
    conversation_id: str
    message_id: str
    failed_attachments: tuple[FailedAttachment, ...] = ()  # files left out of the question, and why
    private: bool = False  # only the asker may see it (asked in a shared place that answers privately)
    shared_by: ChatIdentity | None = None  # the asker who chose to show their private answer in the thread
    action_review: ActionReview | None = None  # a plugin action Q wants the asker to confirm (bot.plugins)
    plugin_auth: PluginAuth | None = None  # a plugin the asker must authorize first (bot.plugins)


@dataclass(frozen=True)
class SharedAnswer:
    """A private answer its asker chose to share: post `answer` in `thread` of `channel`, for everyone there."""

    answer: Answer
    channel: str
    thread: str


class NoticeKind(Enum):
    INFO = "info"
    LINK = "link"  # carries a one-time sign-in URL: show it to its owner only
    NOT_LINKED = "not_linked"
    REFUSED = "refused"  # the asker may not do this (rate someone else's answer)
    ERROR = "error"


@dataclass(frozen=True)
class Notice:
    """A reply that is not an answer: command results, prompts and errors, with the text users see."""

    kind: NoticeKind
    text: str
    url: str | None = None
    private: bool = False  # adapters show private notices to the asker only (ephemeral, 1:1)
    details: dict[str, str] = field(default_factory=dict)
    failed_attachments: tuple[FailedAttachment, ...] = ()


Reply = Answer | Notice


class Usefulness(Enum):
    USEFUL = "USEFUL"
    NOT_USEFUL = "NOT_USEFUL"


class FeedbackReason(Enum):
    """Why an answer was (not) useful: Q Business's `MessageUsefulnessReason` values, exactly."""

    HELPFUL = "HELPFUL"
    FACTUALLY_CORRECT = "FACTUALLY_CORRECT"
    COMPLETE = "COMPLETE"
    RELEVANT_SOURCES = "RELEVANT_SOURCES"
    NOT_HELPFUL = "NOT_HELPFUL"
    NOT_FACTUALLY_CORRECT = "NOT_FACTUALLY_CORRECT"
    NOT_COMPLETE = "NOT_COMPLETE"
    NOT_CONCISE = "NOT_CONCISE"
    INCORRECT_OR_MISSING_SOURCES = "INCORRECT_OR_MISSING_SOURCES"
    NOT_BASED_ON_DOCUMENTS = "NOT_BASED_ON_DOCUMENTS"
    HARMFUL_OR_UNSAFE = "HARMFUL_OR_UNSAFE"
    OTHER = "OTHER"


@dataclass(frozen=True)
class AwsCredentials:
    """Temporary AWS credentials from STS; `expiration` is timezone-aware (UTC). Secrets stay out of `repr`."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds until `expiration` (negative once expired)."""
        return self.expiration.timestamp() - (time.time() if now is None else now)


@dataclass(frozen=True)
class ConversationRef:
    """Where the next message of a thread continues: Q's conversation and its last system message."""

    conversation_id: str
    parent_message_id: str


# -- plugins (bot.plugins) ----------------------------------------------------------------------------------


class FieldType(Enum):
    """Q's ActionPayloadFieldType: what a plugin action's field holds."""

    STRING = "STRING"
    NUMBER = "NUMBER"
    ARRAY = "ARRAY"
    BOOLEAN = "BOOLEAN"


@dataclass(frozen=True)
class FieldChoice:
    """One allowed value of a field: `value` is Q's (any JSON value), `label` what users see, `token` the form's
    name for it (forms carry strings only)."""

    token: str
    value: Any
    label: str


@dataclass(frozen=True)
class ActionField:
    """One field of a plugin action under review, as Q describes it; `value` is Q's current value (JSON)."""

    key: str  # the payload's field name (hierarchical names use the review's separator)
    label: str
    type: FieldType
    required: bool = False
    value: Any = None
    description: str = ""
    choices: tuple[FieldChoice, ...] = ()
    allowed_format: str = ""


@dataclass(frozen=True)
class ActionReview:
    """A plugin action Q proposes: its fields in display order. Nothing runs until its asker submits it."""

    plugin_id: str
    plugin_type: str
    fields: tuple[ActionField, ...]
    separator: str
    review_id: str = ""  # the core's one-time handle for submitting or cancelling it (set once kept)


@dataclass(frozen=True)
class PluginAuth:
    """A plugin needs the asker's OAuth consent before it answers."""

    authorization_url: str  # the plugin's consent page, as Q gives it
    plugin: str = ""  # the plugin's name, when the core knows it
    start_url: str = ""  # the bot's one-time URL that opens the consent page for the asker (set once kept)


@dataclass(frozen=True)
class PluginInfo:
    plugin_id: str
    name: str
    type: str
    enabled: bool = True


@dataclass(frozen=True)
class PlacedReply:
    """A reply that belongs in a thread other than the click's own: where the reviewed (or authorized) question
    was asked. `shared`: that place is a channel or group chat (the reply's `private` says who may see it)."""

    reply: Reply
    identity: ChatIdentity
    channel: str
    thread: str
    shared: bool
    address: str = ""  # the adapter's note of where that was (Turn.address), for delivering it out of turn
