"""Q Business conversations: owned by one user, threaded by message ids, forgotten after a period unused.

A conversation is visible only to its owner: asking for someone else's conversation looks exactly like
asking for one that does not exist, so ids cannot be probed. Retried ChatSync calls carrying the same
clientToken are answered from memory instead of adding a second turn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.qbusiness.corpus import Document


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Message:
    message_id: str
    type: str  # USER | SYSTEM
    body: str
    time: datetime
    attachments: list[dict[str, Any]] = field(default_factory=list)
    source_attributions: list[dict[str, Any]] = field(default_factory=list)

    def as_wire(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "type": self.type,
            "body": self.body[:1000],
            "time": self.time,
            "attachments": self.attachments or None,
            "sourceAttribution": self.source_attributions or None,
        }


@dataclass
class Conversation:
    conversation_id: str
    application_id: str
    owner: str
    title: str
    start_time: datetime
    last_used: float
    messages: list[Message] = field(default_factory=list)
    attachments: list[Document] = field(default_factory=list)

    def latest_system_message(self) -> Message | None:
        return next((m for m in reversed(self.messages) if m.type == "SYSTEM"), None)

    def latest_question(self) -> str | None:
        return next((m.body for m in reversed(self.messages) if m.type == "USER" and m.body), None)

    def message(self, message_id: str) -> Message | None:
        return next((m for m in self.messages if m.message_id == message_id), None)


class ConversationStore:
    """Conversations of every application, expired `ttl()` seconds after their last use."""

    def __init__(self, ttl: Callable[[], float], clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._conversations: dict[str, Conversation] = {}

    def start(self, application_id: str, owner: str, title: str) -> Conversation:
        conversation = Conversation(
            conversation_id=new_id(),
            application_id=application_id,
            owner=owner,
            title=title[:100],
            start_time=datetime.now(UTC),
            last_used=self._clock(),
        )
        self._conversations[conversation.conversation_id] = conversation
        return conversation

    def find(self, application_id: str, owner: str, conversation_id: str) -> Conversation | None:
        """The caller's live conversation, or None: missing, someone else's and expired look the same."""
        self._expire()
        conversation = self._conversations.get(conversation_id)
        if conversation is None or conversation.application_id != application_id or conversation.owner != owner:
            return None
        return conversation

    def touch(self, conversation: Conversation) -> None:
        conversation.last_used = self._clock()

    def of(self, application_id: str, owner: str) -> list[Conversation]:
        self._expire()
        mine = [c for c in self._conversations.values() if c.application_id == application_id and c.owner == owner]
        return sorted(mine, key=lambda c: c.start_time, reverse=True)

    def delete(self, conversation: Conversation) -> None:
        self._conversations.pop(conversation.conversation_id, None)

    def _expire(self) -> None:
        deadline = self._clock() - self._ttl()
        for conversation_id in [cid for cid, c in self._conversations.items() if c.last_used < deadline]:
            del self._conversations[conversation_id]


@dataclass(frozen=True)
class RememberedResponse:
    fingerprint: str
    response: dict[str, Any]


class ClientTokens:
    """What each (application, caller, clientToken) was answered with, so a retry gets the same answer."""

    def __init__(self, limit: int = 10_000) -> None:
        self._responses: dict[tuple[str, str, str], RememberedResponse] = {}
        self._limit = limit

    def recall(self, application_id: str, caller: str, token: str) -> RememberedResponse | None:
        return self._responses.get((application_id, caller, token))

    def remember(
        self, application_id: str, caller: str, token: str, fingerprint: str, response: dict[str, Any]
    ) -> None:
        if len(self._responses) >= self._limit:
            self._responses.pop(next(iter(self._responses)))
        self._responses[(application_id, caller, token)] = RememberedResponse(fingerprint, response)
