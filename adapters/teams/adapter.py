"""`POST /api/messages`: the Teams adapter on the bot's one aiohttp server, through the Microsoft 365 Agents SDK.

Per request: the Bot Framework token is checked here before the body is read (see `tokens`; 401 on any
failure, and other routes are untouched), then the activity is parsed (400 if it isn't one, however malformed),
the token is bound to its channel and serviceUrl, and with `QBOT_TEAMS_TENANT_ID` its tenant must be that one
(403 otherwise, also when it names none); then it is handed to the SDK's CloudAdapter with our
`TeamsAgent`. Invokes (card clicks) run before the HTTP answer, which carries their result. Messages are
de-duplicated on their activity id and appended to the turn stream (bot/turn_queue.py) in one Redis step, then
answered 202; a worker (in any process) replays the activity through the SDK for the turn (typing, ChatSync,
the reply), since Teams gives up on a request after 15 s, and another worker does if that one dies.

The SDK's default turn-error handler posts the exception text into the chat: ours logs it and tells the user
only that something went wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web
from microsoft_agents.activity import Activity, ActivityTypes
from microsoft_agents.authentication.msal import MsalConnectionManager
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import RestChannelServiceClientFactory, TurnContext
from microsoft_agents.hosting.core.authorization import (
    AccessTokenProviderBase,
    AgentAuthConfiguration,
    AnonymousTokenProvider,
    AuthenticationConstants,
    AuthTypes,
    ClaimsIdentity,
)
from microsoft_agents.hosting.core.connector import ConnectorClientBase
from pydantic import ValidationError

from adapters.ports import AdapterServices
from adapters.teams.activities import PLATFORM, identity_of, tenant_of
from adapters.teams.agent import LINKED, TeamsAgent, text_activity
from adapters.teams.files import FileHosts, is_loopback_url
from adapters.teams.private_chat import PrivateChats
from adapters.teams.settings import TeamsSettings
from adapters.teams.tokens import BotFrameworkTokens, TokenRejected, VerifiedToken
from bot.config import Settings
from bot.core import Core
from bot.errors import QBotError
from bot.model import ChatIdentity, PlacedReply
from bot.pending_questions import PendingQuestion
from bot.turn_queue import QueuedTurn, TurnNotStored

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0
NOT_TAKEN = "I couldn't take your question just now (a fault on my side). Please ask it again in a minute."
MULTI_TENANT = "botframework.com"  # the MSAL authority of a (legacy) multi-tenant bot registration


def teams_adapter(core: Core, settings: Settings, services: AdapterServices) -> TeamsAdapter | None:
    """The adapter factory for `qbot.app`: None (Teams off) unless credentials or anonymous mode are set; half a
    configuration is a ConfigError (`TeamsSettings.from_env`), as it is for Slack."""
    teams = TeamsSettings.from_settings(settings)
    if not teams.enabled:
        return None
    if not teams.checks_tokens:
        log.warning(
            "!!! QBOT_TEAMS_ALLOW_ANONYMOUS=true without QBOT_TEAMS_APP_ID: /api/messages accepts UNAUTHENTICATED "
            "activities, so anyone who reaches it can ask as any Teams user. Local testing only. !!!"
        )
    elif not teams.signs_replies:
        log.warning(
            "Teams replies go out WITHOUT credentials (QBOT_TEAMS_ALLOW_ANONYMOUS=true, no QBOT_TEAMS_APP_PASSWORD): "
            "only a local Bot Framework stand-in accepts them. Incoming tokens are still checked."
        )
    return TeamsAdapter(core, teams, services)


class _NoAppIdWarning(logging.Filter):
    """Unsigned replies have no app identity by design: the SDK's per-turn warning about it is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "App ID is not provided" not in record.getMessage()


_NO_APP_ID_WARNING = _NoAppIdWarning()  # one instance, so adding it again is a no-op


class _Anonymous:
    """The SDK's `Connections` for unsigned replies: every token is empty, so no Authorization header goes out."""

    _provider = AnonymousTokenProvider()

    def get_connection(self, connection_name: str) -> AccessTokenProviderBase:
        return self._provider

    def get_default_connection(self) -> AccessTokenProviderBase:
        return self._provider

    def get_token_provider(self, claims_identity: ClaimsIdentity, service_url: str) -> AccessTokenProviderBase:
        return self._provider

    def get_token_provider_from_activity(
        self, claims_identity: ClaimsIdentity, activity: Activity
    ) -> AccessTokenProviderBase:
        return self._provider

    def get_default_connection_configuration(self) -> AgentAuthConfiguration:
        return AgentAuthConfiguration()


def _invoke_json(body: Any) -> str:
    """The SDK puts a bare Exception(code, message) into its invoke error bodies: send it as the error object."""

    def error(value: Any) -> Any:
        if isinstance(value, Exception):
            code, message = ([*value.args, "", ""])[:2]
            return {"code": str(code), "message": str(message)}
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    return json.dumps(body, default=error)


def _refusal(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class TeamsAdapter:
    platform = PLATFORM

    def __init__(self, core: Core, teams: TeamsSettings, services: AdapterServices) -> None:
        self.core = core
        self.teams = teams
        self.deliveries = services.deliveries
        self.turns = services.turns
        self.turns.on_turn(PLATFORM, self._run_turn)
        self.tokens = BotFrameworkTokens(teams.app_id, teams.openid_metadata_url) if teams.checks_tokens else None
        if teams.signs_replies:
            connections: Any = MsalConnectionManager(
                connections_configurations={
                    "SERVICE_CONNECTION": AgentAuthConfiguration(
                        auth_type=AuthTypes.client_secret,
                        client_id=teams.app_id,
                        tenant_id=teams.tenant_id or MULTI_TENANT,
                        client_secret=teams.app_password,
                    )
                }
            )
        else:
            connections = _Anonymous()
            logging.getLogger("microsoft_agents.hosting.core.connector.client.user_token_client").addFilter(
                _NO_APP_ID_WARNING
            )
        self._clients = RestChannelServiceClientFactory(connections)
        self.cloud = CloudAdapter(channel_service_client_factory=self._clients)
        self.cloud.on_turn_error = self._on_turn_error
        self.agent = TeamsAgent(
            core,
            memory=services.memory,
            http=self._files_http,
            file_hosts=FileHosts(teams.file_hosts, development=teams.allow_anonymous),
        )
        self._turns: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        core.accounts.on_linked(PLATFORM, self._confirm_link)
        core.plugins.on_reply(PLATFORM, self._plugin_reply)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/messages", self.messages)]

    async def start(self) -> None:
        """Nothing to start: Teams posts to us."""

    async def stop(self) -> None:
        """Let turns in flight finish (briefly), then release connections."""
        if self._turns:
            _done, pending = await asyncio.wait(set(self._turns), timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        if self.tokens is not None:
            await self.tokens.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _files_http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, sock_connect=10))
        return self._http

    # -- the route ----------------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        token: VerifiedToken | None = None
        if self.tokens is not None:  # authenticate before reading a byte of the body
            try:
                token = await self.tokens.authenticate(request.headers.get("Authorization"))
            except TokenRejected as exc:
                log.info("refused a Teams request: %s", exc.reason)
                return _refusal(401, "invalid Bot Framework token")
        try:
            activity = Activity.model_validate(json.loads(await request.text()))
        except (ValueError, TypeError, ValidationError, RecursionError):  # RecursionError: absurdly deep JSON
            return _refusal(400, "the body is not a Bot Framework activity")
        if not activity.type or activity.conversation is None or not activity.conversation.id:
            return _refusal(400, "the activity needs a type and a conversation id")
        if not activity.service_url:
            return _refusal(400, "the activity needs a serviceUrl")
        if self.tokens is not None and token is not None:
            try:
                claims = self.tokens.bind(
                    token, channel_id=str(activity.channel_id or ""), service_url=activity.service_url
                )
            except TokenRejected as exc:
                log.info("refused a Teams request: %s", exc.reason)
                return _refusal(401, "invalid Bot Framework token")
            identity = ClaimsIdentity(claims, authentication_type="Bearer") if self.teams.signs_replies else None
        else:
            if not is_loopback_url(activity.service_url):  # unauthenticated: never reply to a remote address
                return _refusal(403, "anonymous mode answers only loopback serviceUrls")
            identity = None
        tenant = tenant_of(activity)
        if self.teams.tenant_id and (not tenant or tenant.lower() != self.teams.tenant_id.lower()):
            # A single-tenant bot: an activity that names no tenant is no more its tenant's than another's.
            log.warning("refused an activity from tenant %s", tenant or "(none)")
            return _refusal(403, "this bot serves another tenant")
        identity = identity or ClaimsIdentity({}, authentication_type="anonymous")

        if activity.type == ActivityTypes.invoke:
            try:
                response = await self.cloud.process_activity(identity, activity, self.agent.on_turn)
            except Exception:  # e.g. no connector client (credentials refused): Teams shows the click failed
                log.exception("Teams invoke %s failed", activity.name)
                return _refusal(500, "the action could not be handled")
            if response is None:
                return web.Response(status=200)
            return web.json_response(response.body, status=response.status or 200, dumps=_invoke_json)
        if activity.type == ActivityTypes.message:
            if not activity.id:
                return _refusal(400, "a message activity needs an id")
            # Stored before Teams hears back (an exception here is a 500: Teams may send it again); any
            # process's worker answers it, and another one does if that worker dies.
            payload = activity.model_dump_json(by_alias=True, exclude_none=True)
            try:
                if not await self.turns.submit(PLATFORM, [f"{activity.conversation.id}|{activity.id}"], payload):
                    return web.Response(status=200)  # a redelivery: the first delivery is being answered
            except TurnNotStored as exc:  # Teams seldom redelivers: say so rather than drop the question silently
                log.error("could not store Teams message %s (%s): the user is asked again", activity.id, exc)
                await self._say(identity, activity, NOT_TAKEN)
                return _refusal(503, "the message could not be stored")
            return web.Response(status=202)
        if activity.type not in (ActivityTypes.conversation_update, ActivityTypes.installation_update):
            return web.Response(status=200)  # reactions, edits, typing…: nothing to do
        task = asyncio.create_task(self._turn(identity, activity))
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)
        return web.Response(status=202)

    async def _turn(self, identity: ClaimsIdentity, activity: Activity) -> None:
        try:
            await self.cloud.process_activity(identity, activity, self.agent.on_turn)
        except Exception:  # the connector client could not even be created: nothing left to tell the user with
            log.exception("Teams turn for activity %s failed before it started", activity.id)

    async def _say(self, identity: ClaimsIdentity, activity: Activity, text: str) -> None:
        """A plain reply to `activity`, needing nothing but the connector (Redis may be the thing that is down)."""

        async def reply(context: TurnContext) -> None:
            await context.send_activity(text_activity(text))

        try:
            await self.cloud.process_activity(identity, activity, reply)
        except Exception as exc:
            log.warning("could not tell a Teams user to ask again: %s", type(exc).__name__)

    async def _run_turn(self, turn: QueuedTurn) -> None:
        """A message from the turn stream (this process's or another's), its activity replayed as Teams sent
        it, with the bot's own identity for the replies. Acknowledged in the stream when the turn is over."""
        try:
            activity = Activity.model_validate_json(turn.payload)
        except ValidationError:
            log.error("turn %s holds no Teams activity: dropped", turn.entry_id)
            return
        await self._turn(self._reply_identity(), activity)

    async def _on_turn_error(self, context: TurnContext, error: Exception) -> None:
        activity = context.activity
        log.error("Teams turn failed (%s %s)", activity.type, activity.id, exc_info=error)
        if activity.type == ActivityTypes.message:
            try:
                await context.send_activity(text_activity(QBotError.user_message))
            except Exception as exc:
                log.warning("could not report the failure to the user: %s", type(exc).__name__)

    # -- out of turn --------------------------------------------------------------------------------

    def _reply_identity(self) -> ClaimsIdentity:
        """Who the bot's own out-of-turn replies come from: its app (signed), or nobody (anonymous mode)."""
        if self.teams.signs_replies:
            return self.cloud.create_claims_identity(self.teams.app_id)
        return ClaimsIdentity({}, authentication_type="anonymous")

    async def _connector(self, service_url: str) -> ConnectorClientBase:
        return await self._clients.create_connector_client(
            None,
            self._reply_identity(),
            service_url,
            AuthenticationConstants.AGENTS_SDK_SCOPE,
            None,
            not self.teams.signs_replies,
        )

    async def _confirm_link(self, identity: ChatIdentity, email: str) -> None:
        """The core's on_linked: "Linked as …" in the personal chat the sign-in card was sent to; then the
        question asked when the sign-in had expired (if any) is answered where it was asked."""
        try:
            await self._say_linked(identity, email)
        finally:
            pending = await self.core.take_pending_question(identity)
            if pending is not None:
                self._resume(pending)

    async def _say_linked(self, identity: ChatIdentity, email: str) -> None:
        address = await self.agent.chats.recall(identity)
        if address is None:
            log.info("no personal chat known for %s: link not confirmed in Teams", identity.key)
            return
        connector = await self._connector(address.service_url)
        try:
            await PrivateChats.send(connector, address, text_activity(LINKED.format(email=email)))
        finally:
            await connector.close()

    async def _plugin_reply(self, placed: PlacedReply) -> None:
        """The core's plugin listener: the answer a plugin's authorization held up, delivered by replaying the
        asking activity (kept sealed with the challenge) so it lands where that question's answer would have."""
        try:
            activity = Activity.model_validate_json(placed.address)
        except ValidationError:
            log.warning("a plugin reply for %s has no activity to answer by", placed.identity.key)
            return
        if identity_of(activity) != placed.identity:
            log.warning("a plugin reply for %s names another sender: not delivered", placed.identity.key)
            return

        async def deliver(context: TurnContext) -> None:
            await self.agent.deliver(context, placed.reply)

        await self.cloud.process_activity(self._reply_identity(), activity, deliver)

    def _resume(self, pending: PendingQuestion) -> None:
        """Replay the kept question's own activity (sealed while the user signed in): a turn like the first,
        answered in its conversation and reply chain. It came from Teams, so it is answered as it was sent."""
        try:
            activity = Activity.model_validate_json(pending.address)
        except ValidationError:
            log.warning("the question kept for %s has no activity to answer it by", pending.message.identity.key)
            return
        if identity_of(activity) != pending.message.identity:
            log.warning("the question kept for %s names another sender: not answered", pending.message.identity.key)
            return
        task = asyncio.create_task(self._turn(self._reply_identity(), activity))
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)
