"""Amazon Q Business, called as the asking user: ChatSync (and plugin actions), PutFeedback, the conversation history
and ListPlugins, async on the loop.

Guarantees:
- One client per process, whatever the number of users: botocore's service model, serializer, SigV4 signer and
  parser are built once; each request is signed with the asking user's own credentials (the signer's
  per-request `request_credentials`), never with another user's or the process's. Nothing is kept per user.
- Calls run on the event loop over one aiohttp connection pool: a call in flight holds a socket, not a thread.
  At most `max_concurrency` are in flight (a semaphore); a call counts until Q has answered it, even if the
  awaiting task was cancelled (the request is not cut off halfway: Q may already be answering it).
- Retries are ours: throttling, 5xx, connection failures and a new user's first-call subscription error are
  retried with exponential backoff and jitter, up to `max_attempts` calls. A retried ChatSync sends the same
  clientToken, so Q records one turn, never two.
- Failures surface as domain errors (`bot.errors`) whose `user_message` is safe to show; ChatSync failures
  are counted per AWS error code in `metrics.chatsync_errors` (every failed attempt, retried or not).

Why not aiobotocore: its releases pin botocore to a narrow range (3.10 needs botocore 1.43.115-117), which
cannot coexist with the boto3 the rest of qbot uses; botocore does every protocol step here, aiohttp only sends.
Why aiohttp's client, not httpx (the core's usual one): httpcore's pool scans every connection for every queued
request, so at a thousand calls in flight it spent more CPU than everything else together (measured: bench.chain).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import botocore
from botocore import UNSIGNED
from botocore.awsrequest import HeadersDict, create_request_object, prepare_request_dict
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from botocore.signers import RequestSigner
from yarl import URL

from bot.aws_clients import credentialless_session
from bot.errors import QBotError, QRefused, QThrottled, QUnavailable
from bot.metrics import Metrics
from bot.model import (
    ActionField,
    ActionReview,
    Answer,
    AwsCredentials,
    ChatFile,
    ConversationRef,
    FailedAttachment,
    FeedbackReason,
    FieldChoice,
    FieldType,
    PluginAuth,
    PluginInfo,
    Source,
    Usefulness,
)
from bot.urls import safe_link

if TYPE_CHECKING:
    from mypy_boto3_qbusiness.literals import ChatModeType
    from mypy_boto3_qbusiness.type_defs import (
        AttributeFilterTypeDef,
        ChatSyncInputTypeDef,
        ChatSyncOutputTypeDef,
        ListConversationsResponseTypeDef,
        ListMessagesResponseTypeDef,
        MessageUsefulnessFeedbackTypeDef,
    )

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 60  # a ChatSync over a large index can take tens of seconds to answer
MAX_CLIENT_TOKEN_LENGTH = 100  # ChatSync's clientToken is 1-100 characters
USER_AGENT = f"qbot/0.1 botocore/{botocore.__version__}"

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
REVIEW_PROMPT = "Amazon Q prepared an action for you: review it, then run it or cancel it."
AUTHORIZE_PROMPT = "This plugin needs your authorization first."
MAX_PLUGINS = 500  # ListPlugins pages read at most (an application has a handful)
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
    timed_out: bool = False  # Q has the request but did not answer in time

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
        if isinstance(exc, ReadTimeoutError):  # Q got the request but did not answer in time
            return cls("ReadTimeout", str(exc), timed_out=True)
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
        max_concurrency: int,
        metrics: Metrics,
        max_attempts: int = 4,
        backoff_seconds: float = 0.2,
        read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be at least 1")
        self.app_id = app_id
        self.region = region
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._backoff_seconds = backoff_seconds
        self._read_timeout_seconds = read_timeout_seconds
        self._max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        # An unsigned botocore client, built once, resolves the endpoint, loads the service model and owns the
        # event hooks the signer runs (they refer to it weakly: it lives as long as we do). Its own blocking
        # sending is never used, and it holds no credentials: each call brings its user's.
        self._botocore = credentialless_session().create_client(
            "qbusiness", region_name=region, endpoint_url=endpoint_url, config=Config(signature_version=UNSIGNED)
        )
        self.endpoint_url: str = self._botocore.meta.endpoint_url
        self._model = self._botocore.meta.service_model
        self._serializer = create_serializer(self._model.protocol, include_validation=True)
        self._parser = create_parser(self._model.protocol)
        self._signer = RequestSigner(
            self._model.service_id, region, self._model.signing_name, "v4",
            cast(Any, None),  # no credentials of its own: each request carries its user's
            self._botocore.meta.events,
        )
        self._http: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        """Close the connection pool (the app's shutdown); a later call opens a new one."""
        if self._http is not None:
            await self._http.close()
            self._http = None

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
        plugin_id: str | None = None,
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
        if plugin_id is not None:  # the asker chose a plugin (qplugin): PLUGIN_MODE, whatever the channel's mode
            request["chatMode"] = "PLUGIN_MODE"
            request["chatModeConfiguration"] = {"pluginConfiguration": {"pluginId": plugin_id}}
        try:
            response = await self._retrying(
                credentials, "ChatSync", request,
                conversation_id=conversation.conversation_id if conversation else None,
                count=True, idempotent=True,
            )
        except QRefused as refused:
            if _SCOPE_MEMBERS.search(refused.detail):  # Q names the member it refused
                raise QRefused(SCOPE_REFUSED, detail=refused.detail) from refused
            raise
        return answer_of(cast("ChatSyncOutputTypeDef", response))

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
            credentials, "PutFeedback",
            {"applicationId": self.app_id, "conversationId": conversation_id, "messageId": message_id,
             "messageUsefulness": rated},
            conversation_id=conversation_id,
        )

    async def delete_conversation(self, credentials: AwsCredentials, conversation_id: str) -> None:
        """Delete the user's conversation in Q; one that is already gone counts as deleted."""
        try:
            await self._retrying(
                credentials, "DeleteConversation",
                {"applicationId": self.app_id, "conversationId": conversation_id},
                conversation_id=conversation_id,
            )
        except ConversationGone:
            return

    async def list_conversations(
        self, credentials: AwsCredentials, *, next_token: str | None = None
    ) -> ListConversationsResponseTypeDef:
        """One page (up to 100, newest first) of the credentials' user's conversations (ListConversations)."""
        params: dict[str, Any] = {"applicationId": self.app_id, "maxResults": 100}
        if next_token:
            params["nextToken"] = next_token
        response = await self._retrying(credentials, "ListConversations", params, conversation_id=None)
        return cast("ListConversationsResponseTypeDef", response)

    async def list_messages(
        self, credentials: AwsCredentials, conversation_id: str, *, next_token: str | None = None
    ) -> ListMessagesResponseTypeDef:
        """One page (up to 100) of a conversation's messages (ListMessages); ConversationGone when it is not
        the credentials' user's (Q answers someone else's conversation as it does a missing one)."""
        params: dict[str, Any] = {"applicationId": self.app_id, "conversationId": conversation_id, "maxResults": 100}
        if next_token:
            params["nextToken"] = next_token
        response = await self._retrying(credentials, "ListMessages", params, conversation_id=conversation_id)
        return cast("ListMessagesResponseTypeDef", response)

    # ---- plugins ----------------------------------------------------------------------------------------

    async def execute_action(
        self,
        credentials: AwsCredentials,
        conversation: ConversationRef,
        review: ActionReview,
        values: Mapping[str, Any],
        client_token: str,
    ) -> Answer:
        """Run the reviewed plugin action with the asker's `values` (field -> JSON value, already checked against
        the review: bot.plugins) in the conversation, on the reviewed message (ChatSync actionExecution)."""
        request: ChatSyncInputTypeDef = {
            "applicationId": self.app_id,
            "clientToken": _client_token(client_token),
            "conversationId": conversation.conversation_id,
            "parentMessageId": conversation.parent_message_id,
            "actionExecution": {
                "pluginId": review.plugin_id,
                "payload": {key: {"value": value} for key, value in values.items()},
                "payloadFieldNameSeparator": review.separator,
            },
        }
        response = await self._retrying(
            credentials, "ChatSync", request, conversation_id=conversation.conversation_id, count=True,
            idempotent=True,
        )
        return answer_of(cast("ChatSyncOutputTypeDef", response))

    async def answer_auth_challenge(
        self,
        credentials: AwsCredentials,
        conversation: ConversationRef,
        response_map: Mapping[str, str],
        client_token: str,
    ) -> Answer:
        """Hand Q what the plugin's OAuth consent returned (authChallengeResponse): Q then answers the request
        the challenge held up."""
        request: ChatSyncInputTypeDef = {
            "applicationId": self.app_id,
            "clientToken": _client_token(client_token),
            "conversationId": conversation.conversation_id,
            "parentMessageId": conversation.parent_message_id,
            "authChallengeResponse": {"responseMap": dict(response_map)},
        }
        response = await self._retrying(
            credentials, "ChatSync", request, conversation_id=conversation.conversation_id, count=True,
            idempotent=True,
        )
        return answer_of(cast("ChatSyncOutputTypeDef", response))

    async def list_plugins(self, credentials: AwsCredentials) -> list[PluginInfo]:
        """The application's plugins (ListPlugins, every page), as the credentials' user sees them."""
        plugins: list[PluginInfo] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"applicationId": self.app_id, "maxResults": 50}
            if token:
                params["nextToken"] = token
            response = await self._retrying(credentials, "ListPlugins", params, conversation_id=None)
            plugins += [
                PluginInfo(
                    plugin_id=str(item.get("pluginId") or ""), name=str(item.get("displayName") or ""),
                    type=str(item.get("type") or ""), enabled=item.get("state", "ENABLED") == "ENABLED",
                )
                for item in response.get("plugins") or []
                if item.get("pluginId")
            ]
            token = response.get("nextToken")
            if not token or len(plugins) >= MAX_PLUGINS:
                return plugins

    # ---- retries, concurrency, error mapping -----------------------------------------------------------

    async def _retrying(
        self,
        credentials: AwsCredentials,
        operation: str,
        params: Mapping[str, Any],
        *,
        conversation_id: str | None,
        count: bool = False,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """`operation` with our retries; `conversation_id` is the conversation whose absence means ConversationGone.

        A call Q did not answer in time is asked once more when it is `idempotent` (a ChatSync's clientToken):
        Q hands back the answer it finished meanwhile rather than computing a second one."""
        attempt = 1
        timeouts = 0
        while True:
            try:
                return await self._in_slot(credentials, operation, params)
            except (ClientError, BotoCoreError) as exc:
                failure = _Failure.of(exc)
                if count:
                    self._metrics.chatsync_errors.labels(code=failure.code).inc()
                timeouts += failure.timed_out
                again = failure.retryable or (failure.timed_out and idempotent and timeouts == 1)
                if not again or attempt >= self._max_attempts:
                    raise self._domain_error(failure, conversation_id) from exc
            delay = self._backoff_seconds * 2 ** (attempt - 1)
            await asyncio.sleep(random.uniform(delay / 2, delay))  # jitter spreads a burst of retries
            attempt += 1

    async def _in_slot(self, credentials: AwsCredentials, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One call, holding a concurrency slot until Q has answered it (a cancelled caller does not cut it off)."""
        await self._slots.acquire()
        try:
            call = asyncio.ensure_future(self._send(credentials, operation, params))
        except BaseException:
            self._slots.release()
            raise
        call.add_done_callback(self._release)
        return await asyncio.shield(call)

    def _release(self, call: asyncio.Future[Any]) -> None:
        self._slots.release()
        if not call.cancelled():
            call.exception()  # retrieved, so an abandoned failure is not reported as unhandled

    async def _send(self, credentials: AwsCredentials, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Serialize, sign as `credentials`, send and parse one request: botocore's steps, aiohttp's socket.

        Raises ClientError for Q's error responses and botocore's own errors for everything else, so one mapping
        (`_Failure`) serves every path.
        """
        model = self._model.operation_model(operation)
        request_dict = self._serializer.serialize_to_request(dict(params), model)
        prepare_request_dict(request_dict, endpoint_url=self.endpoint_url, user_agent=USER_AGENT)
        request = create_request_object(request_dict)
        request.context["signing"] = {"request_credentials": Credentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token or None
        )}
        self._signer.sign(operation, request)
        prepared = request.prepare()
        try:
            async with self._client().request(
                prepared.method, URL(prepared.url, encoded=True), headers=dict(prepared.headers),
                data=prepared.body or None,
            ) as response:
                body = await response.read()
        except aiohttp.SocketTimeoutError as exc:  # Q has the request but did not answer in time
            raise ReadTimeoutError(endpoint_url=prepared.url, error=exc) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=prepared.url, error=exc) from exc
        except aiohttp.ClientConnectorError as exc:
            raise EndpointConnectionError(endpoint_url=prepared.url, error=exc) from exc
        except aiohttp.ClientError as exc:  # the connection broke mid-call
            raise HTTPClientError(error=exc) from exc
        raw = {"status_code": response.status, "headers": HeadersDict(response.headers.items()), "body": body,
               "context": {"operation_name": operation}}
        parsed: dict[str, Any] = self._parser.parse(raw, cast(Any, model.output_shape))
        if response.status >= 300:
            code = (parsed.get("Error") or {}).get("Code")
            shape = self._model.shape_for_error_code(code) if code else None
            if shape is not None:  # the error's modeled members, e.g. resourceId
                parsed.update(self._parser.parse(raw, shape))
            raise ClientError(cast(Any, parsed), operation)
        return parsed

    def _client(self) -> aiohttp.ClientSession:
        """The process's connection pool, opened on first use (it belongs to the running loop)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_concurrency, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=self._read_timeout_seconds
                ),
            )
        return self._http

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
    review = review_of(cast("dict[str, Any]", response.get("actionReview") or {}))
    challenge = safe_link((response.get("authChallengeRequest") or {}).get("authorizationUrl"))
    if not text.strip() and review is not None:
        text = REVIEW_PROMPT
    if not text.strip() and challenge:
        text = AUTHORIZE_PROMPT
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
        action_review=review,
        plugin_auth=PluginAuth(challenge) if challenge else None,
    )


def review_of(review: Mapping[str, Any]) -> ActionReview | None:
    """Q's actionReview in neutral terms: fields in display order (then by name), choices numbered for forms."""
    plugin_id, payload = review.get("pluginId"), review.get("payload")
    if not plugin_id or not isinstance(payload, Mapping):
        return None
    fields: list[tuple[int, str, ActionField]] = []
    for key, spec in payload.items():
        if not isinstance(spec, Mapping):
            continue
        try:
            kind = FieldType(spec.get("type") or "STRING")
        except ValueError:
            kind = FieldType.STRING  # a type this client does not know yet is edited as text
        choices = tuple(
            FieldChoice(str(number), choice.get("value"), _label(choice.get("displayValue"), choice.get("value")))
            for number, choice in enumerate(spec.get("allowedValues") or [])
            if isinstance(choice, Mapping)
        )
        field = ActionField(
            key=str(key), label=str(spec.get("displayName") or key), type=kind, required=bool(spec.get("required")),
            value=spec.get("value"), description=str(spec.get("displayDescription") or ""), choices=choices,
            allowed_format=str(spec.get("allowedFormat") or ""),
        )
        order = spec.get("displayOrder")
        fields.append((order if isinstance(order, int) else 1 << 30, str(key), field))
    return ActionReview(
        plugin_id=str(plugin_id), plugin_type=str(review.get("pluginType") or ""),
        fields=tuple(field for _order, _key, field in sorted(fields, key=lambda item: item[:2])),
        separator=str(review.get("payloadFieldNameSeparator") or "."),
    )


def _label(display: Any, value: Any) -> str:
    shown = display if display is not None else value
    return shown if isinstance(shown, str) else json.dumps(shown)
