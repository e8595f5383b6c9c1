"""Amazon Q Business, called as the asking user: ChatSync, PutFeedback and DeleteConversation through boto3.

Guarantees:
- No boto3 client per message. Clients live in a bounded LRU keyed by access key id (credentials rotate about
  hourly, so a user creates about one client an hour), all built from one shared botocore session, so the
  service model is loaded once per process (a client then costs ~4 ms and ~230 KB instead of ~80 ms and ~9 MB).
- The blocking boto3 call never runs on the event loop: it runs in the executor the caller hands in, and at
  most `max_concurrency` Q calls are in flight (a call counts until its thread returns, even if the awaiting
  task was cancelled). Size the executor to at least `max_concurrency`, or the pool becomes the limit.
- Retries are ours (botocore's are off): throttling, 5xx, connection failures and a new user's first-call
  subscription error are retried with exponential backoff and jitter, up to `max_attempts` calls. A retried
  ChatSync sends the same clientToken, so Q records one turn, never two.
- Failures surface as domain errors (`bot.errors`) whose `user_message` is safe to show; ChatSync failures
  are counted per AWS error code in `metrics.chatsync_errors` (every failed attempt, retried or not).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from bot.errors import QBotError, QRefused, QThrottled, QUnavailable
from bot.metrics import Metrics
from bot.model import (
    Answer,
    AwsCredentials,
    ChatFile,
    ConversationRef,
    FailedAttachment,
    FeedbackReason,
    Source,
    Usefulness,
)
from bot.urls import safe_link

if TYPE_CHECKING:
    from mypy_boto3_qbusiness.client import QBusinessClient as QBusinessApi
    from mypy_boto3_qbusiness.literals import ChatModeType
    from mypy_boto3_qbusiness.type_defs import (
        AttributeFilterTypeDef,
        ChatSyncInputTypeDef,
        ChatSyncOutputTypeDef,
        MessageUsefulnessFeedbackTypeDef,
    )

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 60  # a ChatSync over a large index can take tens of seconds to answer
MAX_CLIENT_TOKEN_LENGTH = 100  # ChatSync's clientToken is 1-100 characters

_THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
_SERVER_CODES = frozenset({"InternalServerException", "InternalFailure", "ServiceUnavailable", "InternalError"})
_CREDENTIAL_CODES = frozenset(
    {"ExpiredTokenException", "ExpiredToken", "UnrecognizedClientException", "InvalidSignatureException",
     "InvalidClientTokenId", "IncompleteSignature"}
)
_SUBSCRIPTION = re.compile(r"subscri", re.IGNORECASE)
_CONVERSATION_GONE = re.compile(r"conversation.*(not (be )?found|expired|does ?n[o']t exist)", re.IGNORECASE)
_WRAPPED = re.compile(r"^Exception occurred for requestId: \S+ with message: ")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")

NO_SUBSCRIPTION = "You don't have an Amazon Q Business subscription; ask your administrator for one."
ACCESS_DENIED = (
    "Amazon Q Business denied you access to this application; ask your administrator to grant it."
)
NO_ANSWER = "Amazon Q had no answer to that. Try rephrasing, or start a new conversation."
SCOPE_REFUSED = (
    "Amazon Q refused this channel's answer settings (its attribute filter or chat mode), so nothing was asked. "
    "Ask your administrator to fix them (qbot admin channels list shows them)."
)
_SCOPE_MEMBERS = re.compile(r"\b(attributeFilter|chatMode)")


class ConversationGone(QBotError):
    """Q no longer knows the conversation (expired, deleted, or not this user's): start a new one."""

    user_message = "That conversation has expired. Your next message starts a new one."


class CredentialsRejected(QUnavailable):
    """Q refused the signature or the session token itself (expired or unknown): fetch fresh credentials."""


@dataclass(frozen=True)
class _Failure:
    """One failed call, reduced to what decides retrying and the domain error."""

    code: str
    message: str
    request_id: str = ""
    status: int | None = None
    resource_id: str = ""
    connection: bool = False  # never reached Q, or the connection broke: safe to retry with the same token

    @classmethod
    def of(cls, exc: Exception) -> _Failure:
        if isinstance(exc, ClientError):
            response: dict[str, Any] = dict(exc.response)
            error: dict[str, Any] = dict(response.get("Error") or {})
            meta: dict[str, Any] = dict(response.get("ResponseMetadata") or {})
            return cls(
                code=str(error.get("Code") or "Unknown"),
                message=str(error.get("Message") or ""),
                request_id=str(meta.get("RequestId") or ""),
                status=meta.get("HTTPStatusCode"),
                resource_id=str(response.get("resourceId") or ""),
            )
        if isinstance(exc, ReadTimeoutError):  # Q got the request but did not answer in time: not retried
            return cls("ReadTimeout", str(exc))
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return cls("ConnectionError", str(exc), connection=True)
        return cls(type(exc).__name__, str(exc))

    @property
    def throttled(self) -> bool:
        return self.code in _THROTTLING_CODES or self.status == 429

    @property
    def server_side(self) -> bool:
        return self.connection or self.code in _SERVER_CODES or (self.status or 0) >= 500

    @property
    def subscription_pending(self) -> bool:
        """A new user's first call: Q subscribes them on the way and the retry succeeds."""
        return self.code != "LicenseNotFoundException" and bool(_SUBSCRIPTION.search(self.message))

    @property
    def retryable(self) -> bool:
        return self.throttled or self.server_side or self.subscription_pending


class QBusinessClient:
    """The Q Business calls qbot makes, each signed with the asking user's own credentials."""

    def __init__(
        self,
        *,
        app_id: str,
        region: str,
        endpoint_url: str | None,
        executor: Executor,
        max_concurrency: int,
        metrics: Metrics,
        client_cache_size: int = 128,
        max_attempts: int = 4,
        backoff_seconds: float = 0.2,
    ) -> None:
        if max_concurrency < 1 or client_cache_size < 1 or max_attempts < 1:
            raise ValueError("max_concurrency, client_cache_size and max_attempts must be at least 1")
        self.app_id = app_id
        self.region = region
        self.endpoint_url = endpoint_url
        self.client_cache_size = client_cache_size
        self._executor = executor
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._backoff_seconds = backoff_seconds
        self._slots = asyncio.Semaphore(max_concurrency)
        # One botocore session for every client: it loads and caches the service model and endpoint data.
        # Sessions are not thread-safe, so clients are created under `_lock` (once per user per hour).
        self._session = boto3.session.Session(botocore_session=botocore.session.get_session())
        self._config = Config(
            region_name=region,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            max_pool_connections=min(max_concurrency, 10),  # per client, i.e. per user
            retries={"total_max_attempts": 1, "mode": "standard"},  # "max_attempts": 1 would mean 1 *retry*
            tcp_keepalive=True,
        )
        self._clients: OrderedDict[str, QBusinessApi] = OrderedDict()
        self._lock = threading.Lock()

    # ---- the calls -------------------------------------------------------------------------------------

    async def chat(
        self,
        credentials: AwsCredentials,
        *,
        text: str,
        conversation: ConversationRef | None,
        files: Sequence[ChatFile],
        client_token: str,
        attribute_filter: dict[str, Any] | None = None,
        chat_mode: str | None = None,
    ) -> Answer:
        """One ChatSync turn as the credentials' user; `client_token` (stable per chat message) makes it once only.

        `attribute_filter` (Q's AttributeFilter) and `chat_mode` (RETRIEVAL_MODE, CREATOR_MODE) narrow what the
        answer may draw on, e.g. a channel's policy; when Q refuses them, the QRefused says the channel's
        settings are at fault, not the user's message.

        Raises ConversationGone when `conversation` is no longer usable (the caller starts a new one),
        QThrottled / QUnavailable / CredentialsRejected / QRefused otherwise.
        """
        request: ChatSyncInputTypeDef = {"applicationId": self.app_id, "clientToken": _client_token(client_token)}
        if text:
            request["userMessage"] = text
        if conversation is not None:
            request["conversationId"] = conversation.conversation_id
            request["parentMessageId"] = conversation.parent_message_id
        if files:
            request["attachments"] = [{"name": _attachment_name(f.name), "data": f.data} for f in files]
        if attribute_filter is not None:
            request["attributeFilter"] = cast("AttributeFilterTypeDef", attribute_filter)
        if chat_mode is not None:
            request["chatMode"] = cast("ChatModeType", chat_mode)
        try:
            response: ChatSyncOutputTypeDef = await self._retrying(
                credentials,
                lambda q: q.chat_sync(**request),
                conversation_id=conversation.conversation_id if conversation else None,
                count=True,
            )
        except QRefused as refused:
            if _SCOPE_MEMBERS.search(refused.detail):  # Q names the member it refused
                raise QRefused(SCOPE_REFUSED, detail=refused.detail) from refused
            raise
        return answer_of(response)

    async def feedback(
        self,
        credentials: AwsCredentials,
        conversation_id: str,
        message_id: str,
        usefulness: Usefulness,
        *,
        reason: FeedbackReason | None = None,
        comment: str | None = None,
    ) -> None:
        """Record the user's rating of one answer (PutFeedback), with why and their comment when given (the
        caller has checked both: bot.feedback); ConversationGone if Q no longer has the answer."""
        rated: MessageUsefulnessFeedbackTypeDef = {"usefulness": usefulness.value, "submittedAt": datetime.now(UTC)}
        if reason is not None:
            rated["reason"] = reason.value
        if comment:
            rated["comment"] = comment
        await self._retrying(
            credentials,
            lambda q: q.put_feedback(
                applicationId=self.app_id,
                conversationId=conversation_id,
                messageId=message_id,
                messageUsefulness=rated,
            ),
            conversation_id=conversation_id,
        )

    async def delete_conversation(self, credentials: AwsCredentials, conversation_id: str) -> None:
        """Delete the user's conversation in Q; one that is already gone counts as deleted."""
        try:
            await self._retrying(
                credentials,
                lambda q: q.delete_conversation(applicationId=self.app_id, conversationId=conversation_id),
                conversation_id=conversation_id,
            )
        except ConversationGone:
            return

    # ---- clients -----------------------------------------------------------------------------------------

    def client_for(self, credentials: AwsCredentials) -> QBusinessApi:
        """The cached boto3 client for these credentials (created on a miss, least recently used evicted).

        Thread-safe. An evicted client is not closed (a call may still be using it); its pool goes with it.
        """
        key = credentials.access_key_id
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = self._session.client(
                "qbusiness",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=credentials.session_token or None,
                config=self._config,
            )
            self._clients[key] = client
            while len(self._clients) > self.client_cache_size:
                self._clients.popitem(last=False)
            return client

    @property
    def cached_clients(self) -> int:
        return len(self._clients)

    # ---- retries, concurrency, error mapping -----------------------------------------------------------

    async def _retrying(
        self,
        credentials: AwsCredentials,
        call: Callable[[QBusinessApi], T],
        *,
        conversation_id: str | None,
        count: bool = False,
    ) -> T:
        """`call` with our retries; `conversation_id` is the conversation whose absence means ConversationGone."""
        attempt = 1
        while True:
            try:
                return await self._in_executor(credentials, call)
            except (ClientError, BotoCoreError) as exc:
                failure = _Failure.of(exc)
                if count:
                    self._metrics.chatsync_errors.labels(code=failure.code).inc()
                if not failure.retryable or attempt >= self._max_attempts:
                    raise self._domain_error(failure, conversation_id) from exc
            delay = self._backoff_seconds * 2 ** (attempt - 1)
            await asyncio.sleep(random.uniform(delay / 2, delay))  # jitter spreads a burst of retries
            attempt += 1

    async def _in_executor(self, credentials: AwsCredentials, call: Callable[[QBusinessApi], T]) -> T:
        """Run `call` on the user's client in the executor, holding a concurrency slot until it returns."""
        loop = asyncio.get_running_loop()
        await self._slots.acquire()
        try:
            future = loop.run_in_executor(self._executor, lambda: call(self.client_for(credentials)))
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._release)
        return await asyncio.shield(future)  # a cancelled caller leaves the thread (and its slot) to finish

    def _release(self, future: asyncio.Future[Any]) -> None:
        self._slots.release()
        if not future.cancelled():
            future.exception()  # retrieved, so an abandoned failure is not reported as unhandled

    def _domain_error(self, failure: _Failure, conversation_id: str | None) -> QBotError:
        detail = f"{failure.code}: {failure.message}"[:500]
        rid = failure.request_id
        if conversation_id is not None and failure.resource_id != self.app_id and (
            failure.code == "ResourceNotFoundException"
            or (failure.code == "ValidationException" and _CONVERSATION_GONE.search(failure.message))
        ):
            return ConversationGone(detail=detail)
        if failure.throttled:
            return QThrottled(detail=detail, request_id=rid)
        if failure.code in _CREDENTIAL_CODES:
            return CredentialsRejected(detail=detail, request_id=rid)
        if failure.code == "LicenseNotFoundException" or failure.subscription_pending:
            return QRefused(NO_SUBSCRIPTION, detail=detail)
        if failure.code == "AccessDeniedException":
            return QRefused(ACCESS_DENIED, detail=detail)
        if failure.code == "ResourceNotFoundException":
            return QRefused("This bot's Amazon Q Business application was not found; tell your administrator.",
                            detail=detail)
        if failure.code in ("ValidationException", "ParamValidationError"):
            reason = _reason(failure.message) if failure.code == "ValidationException" else ""
            return QRefused(
                f"Amazon Q could not accept this message: {reason}" if reason
                else "Amazon Q could not accept this message; try rephrasing it or sending fewer, smaller files.",
                detail=detail,
            )
        return QUnavailable(detail=detail, request_id=rid)


def _client_token(token: str) -> str:
    """ChatSync allows 1-100 characters: longer tokens are hashed (deterministically, so retries still match)."""
    if not token:
        raise ValueError("client_token must not be empty: it is what makes a retried message one turn")
    if len(token) <= MAX_CLIENT_TOKEN_LENGTH:
        return token
    return hashlib.sha256(token.encode()).hexdigest()


def _attachment_name(name: str) -> str:
    """Q accepts 1-1000 printable characters."""
    return _CONTROL_CHARACTERS.sub("", name)[:1000] or "attachment"


def _reason(message: str) -> str:
    """Q's own explanation, without the "Exception occurred for requestId: ..." wrapper it often adds."""
    unwrapped = _WRAPPED.sub("", message.strip())
    return unwrapped if len(unwrapped) <= 300 else unwrapped[:297] + "..."


def answer_of(response: ChatSyncOutputTypeDef) -> Answer:
    """Q's reply in neutral terms: sources ordered by citation number, one per number.

    A source's URL is kept only when `safe_link` allows it (http(s), no credentials): this is the one place
    source links are checked, and every adapter renders `Source.url` as given.
    """
    by_number: dict[int, Source] = {}
    unnumbered: list[Source] = []
    for attribution in response.get("sourceAttributions") or []:
        url = safe_link(attribution.get("url"))
        source = Source(
            number=attribution.get("citationNumber") or 0,
            title=attribution.get("title") or url or "Untitled source",
            url=url,
            snippet=attribution.get("snippet") or "",
        )
        if source.number > 0:
            by_number.setdefault(source.number, source)
        elif all((s.url, s.title) != (source.url, source.title) for s in unnumbered):
            unnumbered.append(source)
    next_number = max(by_number, default=0)
    for offset, source in enumerate(unnumbered, 1):
        by_number[next_number + offset] = Source(next_number + offset, source.title, source.url, source.snippet)

    text = response.get("systemMessage") or ""
    challenge = (response.get("authChallengeRequest") or {}).get("authorizationUrl")
    if challenge:
        text = (text + "\n\n" if text else "") + f"Amazon Q needs your authorization first: {challenge}"
    if not text.strip():
        text = NO_ANSWER
    return Answer(
        text=text,
        sources=tuple(by_number[n] for n in sorted(by_number)),
        conversation_id=response.get("conversationId") or "",
        message_id=response.get("systemMessageId") or "",
        failed_attachments=tuple(
            FailedAttachment(
                name=failed.get("name") or "attachment",
                error=(failed.get("error") or {}).get("errorMessage") or str(failed.get("status") or "FAILED"),
            )
            for failed in response.get("failedAttachments") or []
        ),
    )
