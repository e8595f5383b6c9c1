"""A user's conversation history, read from Amazon Q Business itself, as the user.

Q keeps every conversation a user had (from any platform or device); qbot keeps none of their text. Each call
is signed with the user's own credentials, so Q shows a user only their own conversations: someone else's id
is answered exactly like a missing one (`ConversationGone`). Opening a conversation also makes it the one a
thread continues, so the next question there follows on from its last answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from bot.broker import CredentialBroker
from bot.conversations import Conversations
from bot.model import Answer, AwsCredentials, ChatIdentity
from bot.qbusiness import CredentialsRejected, QBusinessClient, answer_of

if TYPE_CHECKING:
    from mypy_boto3_qbusiness.type_defs import ChatSyncOutputTypeDef, MessageTypeDef

MAX_MESSAGE_PAGES = 10  # ListMessages pages of 100: a conversation longer than 1,000 messages shows its start
UNTITLED = "Untitled conversation"

T = TypeVar("T")


@dataclass(frozen=True)
class PastConversation:
    conversation_id: str
    title: str
    started_at: datetime | None


@dataclass(frozen=True)
class PastQuestion:
    """A question the user asked (Q's USER message)."""

    text: str
    message_id: str


PastMessage = PastQuestion | Answer


class History:
    """ListConversations, ListMessages and DeleteConversation as the asking identity's linked user."""

    def __init__(self, broker: CredentialBroker, q: QBusinessClient, conversations: Conversations) -> None:
        self._broker = broker
        self._q = q
        self._conversations = conversations

    async def conversations(
        self, identity: ChatIdentity, next_token: str | None = None
    ) -> tuple[list[PastConversation], str | None]:
        """One page (up to 100) of the user's conversations, newest first, and the token of the next page if any.
        Raises NotLinked / LinkExpired / QBotError like a question would."""
        page = await self._as(identity, partial(self._q.list_conversations, next_token=next_token))
        listed = [
            PastConversation(c["conversationId"], (c.get("title") or "").strip() or UNTITLED, c.get("startTime"))
            for c in page.get("conversations") or []
            if c.get("conversationId")
        ]
        return listed, page.get("nextToken") or None

    async def open(
        self, identity: ChatIdentity, conversation_id: str, *, channel: str, thread: str
    ) -> list[PastMessage]:
        """The conversation's messages, oldest first; `thread` (in `channel`) then continues it after its last
        answer. Raises ConversationGone when it is not the user's (or no longer exists): nothing is recorded."""
        messages: list[MessageTypeDef] = []
        token: str | None = None
        for _ in range(MAX_MESSAGE_PAGES):
            page = await self._as(identity, partial(self._q.list_messages, conversation_id=conversation_id,
                                                    next_token=token))
            messages.extend(page.get("messages") or [])
            token = page.get("nextToken")
            if not token:
                break
        past = [_past(conversation_id, message) for message in in_order(messages)]
        answers = [m for m in past if isinstance(m, Answer)]
        if answers:
            await self._conversations.save(identity, channel, thread, conversation_id, answers[-1].message_id)
        return past

    async def delete(self, identity: ChatIdentity, conversation_id: str, *, channel: str, thread: str) -> None:
        """Delete the user's conversation in Q and forget `thread`'s link to it. Someone else's id is left as
        it is (Q refuses), which looks the same as one already deleted."""
        await self._as(identity, lambda credentials: self._q.delete_conversation(credentials, conversation_id))
        await self._conversations.forget(identity, channel, thread)

    async def _as(self, identity: ChatIdentity, call: Callable[[AwsCredentials], Awaitable[T]]) -> T:
        """`call` with the identity's credentials; once more with fresh ones if Q rejects the cached ones."""
        credentials = await self._broker.credentials(identity)
        try:
            return await call(credentials)
        except CredentialsRejected:
            await self._broker.forget(identity)
            return await call(await self._broker.credentials(identity))


def in_order(messages: list[MessageTypeDef]) -> list[MessageTypeDef]:
    """Oldest first, whatever order Q pages in (its documentation names none); a question before its answer when
    both carry the same moment, else as listed."""
    ranked = sorted(enumerate(messages), key=lambda item: (_moment(item[1]), item[1].get("type") != "USER", item[0]))
    return [message for _, message in ranked]


def _moment(message: MessageTypeDef) -> float:
    time = message.get("time")
    return time.timestamp() if isinstance(time, datetime) else 0.0


def _past(conversation_id: str, message: MessageTypeDef) -> PastMessage:
    """A USER message as the question; anything else as an Answer with its sources checked (`answer_of`)."""
    if message.get("type") == "USER":
        return PastQuestion(message.get("body") or "", message.get("messageId") or "")
    reply: dict[str, Any] = {
        "systemMessage": message.get("body") or "",
        "systemMessageId": message.get("messageId") or "",
        "conversationId": conversation_id,
        "sourceAttributions": message.get("sourceAttribution") or [],
    }
    return answer_of(cast("ChatSyncOutputTypeDef", reply))
