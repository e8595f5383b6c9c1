"""The Q Business endpoint: authenticate (SigV4), route (botocore's service model), authorize, then answer.

Users chat as themselves and nothing else; administrators provision and may not chat. The switches tests
flip (`faults`) and the counters they read (`stats`) live here; ChatSync turns are taken by `chat`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from typing import Any

from aiohttp import web

from sandbox.credentials import ACCOUNT_ID, CredentialRegistry, IssuedCredentials
from sandbox.qbusiness.chat import ChatTurns
from sandbox.qbusiness.controlplane import Application, ControlPlane
from sandbox.qbusiness.conversations import Conversation, ConversationStore
from sandbox.qbusiness.corpus import load_corpus
from sandbox.qbusiness.errors import CONVERSATION_GONE, IDENTITY_REQUIRED, SUBSCRIPTION_MISSING, from_request
from sandbox.qbusiness.filters import check_members
from sandbox.qbusiness.groups import Groups
from sandbox.qbusiness.plugins import PluginExecution, SandboxPlugins
from sandbox.qbusiness.restjson import (
    ServiceError,
    ServiceModel,
    access_denied,
    error_response,
    json_response,
    not_found,
    paginate,
    validation_error,
)
from sandbox.qbusiness.retrieval import AnswerEngine
from sandbox.sigv4 import SignedRequest, SigV4Error, SigV4Verifier

logger = logging.getLogger(__name__)

SERVICE = "qbusiness"
API_VERSION = "2023-11-27"
DEFAULT_CONVERSATION_TTL = 30 * 24 * 3600.0
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024

USER_OPERATIONS = frozenset(
    {"ChatSync", "PutFeedback", "ListConversations", "ListMessages", "DeleteConversation", "ListPlugins"}
)
GROUP_OPERATIONS = frozenset({"PutGroup", "GetGroup", "ListGroups", "DeleteGroup"})
ADMIN_OPERATIONS = GROUP_OPERATIONS | frozenset(
    {
        "CreateApplication",
        "GetApplication",
        "ListApplications",
        "UpdateApplication",
        "CreateIndex",
        "GetIndex",
        "ListIndices",
        "CreateRetriever",
        "GetRetriever",
        "ListRetrievers",
        "CreateWebExperience",
        "GetWebExperience",
        "ListWebExperiences",
    }
)


@dataclass
class QFaults:
    """Switches tests flip to make Q Business misbehave the ways it does in production."""

    throttle_next: int = 0
    internal_error_next: int = 0
    delay_seconds: float = 0.0
    delay_next_seconds: float = 0.0  # the next ChatSync only (a slow answer whose caller gives up waiting)
    subscription_error_first_call: bool = False
    conversation_ttl: float = DEFAULT_CONVERSATION_TTL
    control_plane_delay: float = 0.0
    put_group_delay_seconds: float = 0.0  # each PutGroup (a write still in flight when its caller stops)
    held: set[str] = field(default_factory=set)  # emails whose ChatSyncs wait until taken out (an answer in flight)

    def reset(self) -> None:
        for spec in fields(self):
            setattr(self, spec.name, spec.default_factory() if spec.default_factory is not MISSING else spec.default)


@dataclass(frozen=True)
class FeedbackRecord:
    """One PutFeedback as received, after the model's checks (usefulness and reason in Q's enums, the comment
    at most 1000 printable characters, submittedAt present)."""

    email: str
    application_id: str
    conversation_id: str
    message_id: str
    usefulness: dict[str, Any] | None
    message_copied_at: datetime | None

    @property
    def rating(self) -> str | None:
        return (self.usefulness or {}).get("usefulness")

    @property
    def reason(self) -> str | None:
        return (self.usefulness or {}).get("reason")

    @property
    def comment(self) -> str | None:
        return (self.usefulness or {}).get("comment")


@dataclass
class QStats:
    """What tests assert on: ChatSync calls per email (including failed ones), concurrency, PutGroup calls,
    recorded feedback, and every authenticated call by operation name."""

    chat_calls: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    put_group_calls: int = 0
    feedback: list[FeedbackRecord] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.chat_calls.clear()
        self.in_flight = 0
        self.max_in_flight = 0
        self.put_group_calls = 0
        self.feedback.clear()
        self.operations.clear()


Handler = Callable[[IssuedCredentials, dict[str, Any], str], Awaitable[dict[str, Any]]]


@functools.cache
def _service_model() -> ServiceModel:
    return ServiceModel.load(SERVICE, API_VERSION)


class SandboxQBusiness:
    def __init__(self, registry: CredentialRegistry, region: str, account: str = ACCOUNT_ID) -> None:
        self.region = region
        self.account = account
        self.faults = QFaults()
        self.stats = QStats()
        self.max_attachment_bytes = MAX_ATTACHMENT_BYTES
        self.sigv4 = SigV4Verifier(registry, region, SERVICE)
        self.control = ControlPlane(region, account, lambda: self.faults.control_plane_delay)
        self.groups = Groups(self.control.index)
        self.conversations = ConversationStore(lambda: self.faults.conversation_ttl)
        self.engine = AnswerEngine()
        self.plugins = SandboxPlugins()
        self.chat = ChatTurns(self.conversations, self.engine, lambda: self.max_attachment_bytes, self.plugins)
        self._model = _service_model()
        self._subscribed: set[tuple[str, str]] = set()
        self._handlers: dict[str, Handler] = {
            "ChatSync": self._chat_sync,
            "PutFeedback": self._put_feedback,
            "ListConversations": self._list_conversations,
            "ListMessages": self._list_messages,
            "DeleteConversation": self._delete_conversation,
            "ListPlugins": self._list_plugins,
            **{name: self._admin_handler(name) for name in ADMIN_OPERATIONS},
        }

    # -- setup -------------------------------------------------------------------------------------------

    def add_sample_application(
        self,
        app_id: str,
        index_id: str,
        groups: dict[str, list[str]],
        *,
        client_ids: Sequence[str] = ("qbot",),
        identity_provider_arn: str | None = None,
        saml: bool = False,
    ) -> Application:
        """An ACTIVE IAM-federated application with its index, a native retriever and the sample corpus;
        `saml` makes it an AWS_IAM_IDP_SAML one (then `identity_provider_arn` names the IAM SAML provider)."""
        provider = identity_provider_arn or f"arn:aws:iam::{self.account}:oidc-provider/127.0.0.1"
        identity: dict[str, Any] = {"identityType": "AWS_IAM_IDP_SAML", "iamIdentityProviderArn": provider}
        if not saml:
            identity.update(identityType="AWS_IAM_IDP_OIDC", clientIdsForOIDC=list(client_ids))
        app = self.control.add_application(
            app_id,
            {
                "displayName": "qbot-sandbox",
                **identity,
                "attachmentsConfiguration": {"attachmentsControlMode": "ENABLED"},
                "autoSubscriptionConfiguration": {"autoSubscribe": "ENABLED", "defaultSubscriptionType": "Q_BUSINESS"},
            },
        )
        index = self.control.add_index(
            app, index_id, {"displayName": "qbot-sandbox-index", "type": "ENTERPRISE"}, load_corpus()
        )
        app.ready_at = index.ready_at = 0.0
        self.groups.seed(index, groups)
        retriever = self.control.add_retriever(
            app,
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"retriever/{app_id}")),
            {
                "type": "NATIVE_INDEX",
                "displayName": "qbot-sandbox-retriever",
                "configuration": {"nativeIndexConfiguration": {"indexId": index_id}},
            },
        )
        retriever.ready_at = 0.0
        self.plugins.install(app_id)
        return app

    def app(self) -> web.Application:
        application = web.Application(client_max_size=2 * self.max_attachment_bytes + (1 << 20))
        application.add_routes(self.plugins.routes())  # the OAuth consent page a browser opens (unsigned)
        application.router.add_route("*", "/{tail:.*}", self._handle)
        return application

    # -- the front door: authenticate, route, authorize, validate ---------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        self.plugins.base_url = str(request.url.origin())  # where the consent page is reached, as callers see it
        body = await request.read()
        try:
            credentials = self.sigv4.verify(
                SignedRequest(request.method, request.raw_path, list(request.headers.items()), body)
            )
        except SigV4Error as error:
            return error_response(ServiceError(error.code, error.message, error.status), request_id)
        try:
            operation, params = self._operation(request, credentials, body)
            self.stats.operations[operation] += 1
            result = await self._handlers[operation](credentials, params, request_id)
        except ServiceError as error:
            return error_response(error, request_id)
        except Exception:
            # A bug here must still look like AWS to the client (a retryable 500), and be visible in the log.
            logger.exception("Q Business sandbox failed on %s %s", request.method, request.raw_path)
            failure = ServiceError("InternalServerException", from_request(request_id, "Internal server error."), 500)
            return error_response(failure, request_id)
        return json_response(result, request_id)

    def _operation(
        self, request: web.Request, credentials: IssuedCredentials, body: bytes
    ) -> tuple[str, dict[str, Any]]:
        raw_path = request.raw_path.partition("?")[0]
        matched = self._model.match(request.method, raw_path, set(request.query.keys()))
        if matched is None:
            raise ServiceError("UnknownOperationException", f"No operation matches {request.method} {raw_path}.", 404)
        operation, labels = matched
        if operation.name not in self._handlers:
            raise ServiceError(
                "UnknownOperationException", f"The Q Business sandbox does not implement {operation.name}.", 501
            )
        self._authorize(operation.name, credentials, labels)
        if operation.name == "ChatSync":  # what narrows a turn, as sent: the typed reader drops unknown members
            check_members(labels["applicationId"], body)
        return operation.name, self._model.parse_input(operation, labels, request.query, body)

    def _authorize(self, operation: str, credentials: IssuedCredentials, labels: dict[str, str]) -> None:
        """Users chat as themselves and nothing else; administrators provision and may not chat."""
        if operation in USER_OPERATIONS:
            if credentials.is_admin or not credentials.email:
                raise access_denied(IDENTITY_REQUIRED)
        elif not credentials.is_admin:
            resource = f"arn:aws:qbusiness:{self.region}:{self.account}:application/{labels.get('applicationId', '*')}"
            raise access_denied(
                f"User: {credentials.principal_arn} is not authorized to perform: qbusiness:{operation} on "
                f"resource: {resource} because no identity-based policy allows the qbusiness:{operation} action"
            )

    def _admin_handler(self, operation: str) -> Handler:
        owner = self.groups if operation in GROUP_OPERATIONS else self.control
        method = getattr(owner, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())

        async def handle(credentials: IssuedCredentials, params: dict[str, Any], request_id: str) -> dict[str, Any]:
            if operation == "PutGroup":
                self.stats.put_group_calls += 1
                await asyncio.sleep(self.faults.put_group_delay_seconds)
            result: dict[str, Any] = method(params)
            return result

        return handle

    # -- ChatSync ----------------------------------------------------------------------------------------

    async def _chat_sync(
        self, credentials: IssuedCredentials, params: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        email = _identity(credentials, params)
        self.stats.chat_calls[email] += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            self._injected_failure(request_id)
            delay, self.faults.delay_next_seconds = self.faults.delay_seconds + self.faults.delay_next_seconds, 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            while email in self.faults.held:  # noqa: ASYNC110 (flipped from a test's thread: polled, not an Event)
                await asyncio.sleep(0.01)
            app = self.control.application(params["applicationId"])
            self._check_subscription(app, email, request_id)
            return self.chat.take(app, email, params, request_id)
        finally:
            self.stats.in_flight -= 1

    def _injected_failure(self, request_id: str) -> None:
        if self.faults.throttle_next > 0:
            self.faults.throttle_next -= 1
            raise ServiceError("ThrottlingException", "Rate exceeded", 429)
        if self.faults.internal_error_next > 0:
            self.faults.internal_error_next -= 1
            raise ServiceError(
                "InternalServerException", from_request(request_id, "Internal server error. Try again later."), 500
            )

    def _check_subscription(self, app: Application, email: str, request_id: str) -> None:
        """An IAM-federated user is auto-subscribed by their first call, which fails (once) while it happens."""
        key = (app.id, email)
        if key in self._subscribed:
            return
        self._subscribed.add(key)
        if self.faults.subscription_error_first_call:
            raise access_denied(from_request(request_id, SUBSCRIPTION_MISSING))

    # -- conversations and feedback ----------------------------------------------------------------------

    def _own_conversation(self, email: str, params: dict[str, Any], request_id: str) -> Conversation:
        self.control.application(params["applicationId"])
        conversation = self.conversations.find(params["applicationId"], email, params["conversationId"])
        if conversation is None:
            raise not_found(from_request(request_id, CONVERSATION_GONE), params["conversationId"], "Conversation")
        return conversation

    async def _put_feedback(
        self, credentials: IssuedCredentials, params: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        email = _identity(credentials, params)
        conversation = self._own_conversation(email, params, request_id)
        message = conversation.message(params["messageId"])
        if message is None:
            raise not_found(f"Message {params['messageId']} not found.", params["messageId"], "Message")
        if message.type != "SYSTEM":
            raise validation_error(
                "Feedback can only be given on a system message.", ("messageId", "must identify a system message")
            )
        self.stats.feedback.append(
            FeedbackRecord(
                email,
                params["applicationId"],
                conversation.conversation_id,
                message.message_id,
                params.get("messageUsefulness"),
                params.get("messageCopiedAt"),
            )
        )
        return {}

    async def _list_conversations(
        self, credentials: IssuedCredentials, params: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        email = _identity(credentials, params)
        app = self.control.application(params["applicationId"])
        page, token = paginate(self.conversations.of(app.id, email), params, 100)
        return {
            "conversations": [
                {"conversationId": c.conversation_id, "title": c.title, "startTime": c.start_time} for c in page
            ],
            "nextToken": token,
        }

    async def _list_messages(
        self, credentials: IssuedCredentials, params: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        conversation = self._own_conversation(_identity(credentials, params), params, request_id)
        page, token = paginate(conversation.messages, params, 100)
        return {"messages": [message.as_wire() for message in page], "nextToken": token}

    async def _list_plugins(
        self, credentials: IssuedCredentials, params: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        _identity(credentials, params)
        app = self.control.application(params["applicationId"])
        page, token = paginate(self.plugins.of(app.id), params, 50)
        return {"plugins": [plugin.as_wire() for plugin in page], "nextToken": token}

    @property
    def plugin_actions(self) -> list[PluginExecution]:
        """Every plugin action run (actionExecution accepted), with the caller's email and the payload."""
        return self.plugins.executed

    async def _delete_conversation(
        self, credentials: IssuedCredentials, params: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        conversation = self._own_conversation(_identity(credentials, params), params, request_id)
        self.conversations.delete(conversation)
        return {}


def _identity(credentials: IssuedCredentials, params: dict[str, Any]) -> str:
    """The caller's email; an explicit userId/userGroups would let a caller speak for someone else."""
    if params.get("userId") is not None or params.get("userGroups") is not None or not credentials.email:
        raise access_denied(IDENTITY_REQUIRED)
    return credentials.email.lower()
