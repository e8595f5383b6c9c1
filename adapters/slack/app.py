"""The Slack adapter: slack-bolt's AsyncApp on the bot's one aiohttp server, or over Socket Mode.

HTTP mode serves `POST /slack/events` (events, slash commands and interactivity on one URL): each request's v0
signature and timestamp are verified over the raw body before anything parses it (`SlackSignature`), so a
missing, bad or stale signature is a 401 before anything else happens; Bolt then parses and dispatches.
Socket Mode (`QBOT_SLACK_APP_TOKEN`) feeds the same listeners from Slack's websocket and serves no route.

Every listener acknowledges at once and leaves the work (ChatSync, downloads, Web API calls) to a task the
adapter keeps a reference to, so Slack's 3-second deadline never depends on Q; at most `QBOT_Q_MAX_CONCURRENCY`
tasks work at once, the rest wait their turn. `stop()` lets running tasks finish for a moment, then cancels
the rest. The bot's identity (auth.test) is looked up once and shared.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.ports import AdapterServices
from adapters.slack.assistant import SlackAssistant
from adapters.slack.commands import SlashCommands
from adapters.slack.events import PLATFORM, asked, decode, delivery_names, encode
from adapters.slack.feedback import WHY_VIEW, Feedback
from adapters.slack.files import SlackFiles
from adapters.slack.plugins import PluginActions
from adapters.slack.questions import Questions
from adapters.slack.render import (
    FEEDBACK_DOWN,
    FEEDBACK_UP,
    LINK_BUTTON,
    SHARE_BUTTON,
    render_notice,
    text_message,
)
from adapters.slack.replies import SlackReplies
from adapters.slack.retries import retry_handlers
from adapters.slack.settings import SlackSettings
from adapters.slack.share import Share
from adapters.slack.signature import SlackSignature
from bot.config import Settings
from bot.core import Core
from bot.errors import QBotError
from bot.model import ChatIdentity, Notice, NoticeKind
from bot.tasks import cancel_and_wait
from bot.turn_queue import QueuedTurn

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
API_TIMEOUT_SECONDS = 15
DRAIN_SECONDS = 5.0
FAILED = Notice(NoticeKind.ERROR, QBotError.user_message, private=True)

# What the app manifest (manifests/slack/manifest.yaml) must grant and subscribe, and why; a test keeps them equal.
BOT_SCOPES = {
    "app_mentions:read": "app_mention events in channels and private channels",
    "assistant:write": "suggested prompts, thread status and titles of Slack's AI-app surface (QBOT_SLACK_ASSISTANT)",
    "chat:write": "placeholders and answers (chat.postMessage, chat.update, chat.delete, chat.postEphemeral)",
    "commands": "/qlink, /qunlink, /qstatus, /qnew",
    "files:read": "downloading files shared with a question",
    "im:history": "message.im events: questions in DMs",
    "im:write": "conversations.open, to confirm a link in the user's DM",
    "users:read": "users.info",
    "users:read.email": "the profile email the sign-in must match",
}
BOT_EVENTS = ("app_mention", "message.im", "app_home_opened")  # the last: an agent-view DM opened
SLASH_COMMANDS = ("/qlink", "/qunlink", "/qstatus", "/qnew")

def slack_adapter(core: Core, settings: Settings, services: AdapterServices) -> SlackAdapter | None:
    """The adapter factory for `qbot.app`: None when no QBOT_SLACK_* credentials are set."""
    slack = SlackSettings.from_env(settings.extra)
    if slack is None:
        return None
    return SlackAdapter(core, settings, slack, services)


def _web_client(slack: SlackSettings, token: str | None) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=slack.api_url,
        timeout=API_TIMEOUT_SECONDS,
        retry_handlers=retry_handlers(),  # 429, 5xx and lost connections: what may be repeated, how long
    )


def _delivery(kind: str, body: dict[str, Any]) -> str | None:
    trigger = body.get("trigger_id")
    return f"{kind}:{trigger}" if trigger else None


class SlackAdapter:
    platform = PLATFORM

    def __init__(self, core: Core, settings: Settings, slack: SlackSettings, services: AdapterServices) -> None:
        self.core = core
        self.deliveries = services.deliveries
        self.settings = settings
        self.slack = slack
        self._signature = SlackSignature(slack.signing_secret) if slack.signing_secret else None
        self.client = _web_client(slack, slack.bot_token)  # the adapter's own calls
        self._bolt_client = _web_client(slack, None)  # Bolt's per-request clients get the token from authorize
        self.replies = SlackReplies(self.client, api_url=slack.api_url, count_failure=core.count_failure)
        self.files = SlackFiles(bot_token=slack.bot_token, api_url=slack.api_url)
        self.commands = SlashCommands(core, self.client, self.replies)
        self.assistant = (
            SlackAssistant(self.client, slack.suggested_prompts, services.memory) if slack.assistant else None
        )
        self.questions = Questions(
            core, self.client, self.replies, self.files, self._http_session, services.memory, self.assistant
        )
        self.turns = services.turns
        self.turns.on_turn(PLATFORM, self._run_turn)
        self.feedback = Feedback(core, self.client, self.replies, services.memory)
        self.sharing = Share(core, self.client, self.replies)
        self.plugin_actions = PluginActions(core, self.client, self.replies)
        self._session: aiohttp.ClientSession | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._auth: dict[str, Any] | None = None
        self._auth_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        # Work beyond this many requests waits its turn here, holding nothing: a burst larger than the bot can
        # serve queues up instead of starving every request of Redis connections at once.
        self._slots = asyncio.Semaphore(settings.q_max_concurrency)

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            return await self._authorize(enterprise_id, team_id)  # Bolt passes arguments by their names

        self.bolt = AsyncApp(
            name="qbot",
            logger=logging.getLogger("adapters.slack.bolt"),
            client=self._bolt_client,
            signing_secret=slack.signing_secret or "unused: Socket Mode verifies nothing by signature",
            request_verification_enabled=not slack.socket_mode,
            authorize=authorize,
            process_before_response=True,  # listeners only ack and spawn: the response waits for nothing
        )
        self._register()
        core.accounts.on_linked(PLATFORM, self._confirm_link)

    # -- the Adapter protocol -------------------------------------------------------------------------------

    @property
    def in_work(self) -> int:
        """Commands, clicks and kept questions being worked on in this process (questions run as turns)."""
        return len(self._tasks)

    def routes(self) -> list[web.RouteDef]:
        return [] if self.slack.socket_mode else [web.post(EVENTS_PATH, self.events)]

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_SECONDS))
        self.client.session = self._session
        self._bolt_client.session = self._session
        self.replies.session = self._session
        try:
            await self._bot_identity()
        except Exception as exc:  # Slack may be briefly unreachable: authorize retries on the first event
            log.error("Slack auth.test failed at start-up (%r); check QBOT_SLACK_BOT_TOKEN", exc)
        if self.slack.socket_mode:
            self._socket = AsyncSocketModeHandler(
                self.bolt, self.slack.app_token, web_client=_web_client(self.slack, None)
            )
            await self._socket.connect_async()
            log.info("Slack Socket Mode connected")

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
            await asyncio.gather(*(cancel_and_wait(task) for task in pending))
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport ------------------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        """POST /slack/events: the signature over the raw body first (401), then Bolt parses (400 if it can't),
        routes to a listener (which acks at once) and answers Slack."""
        body = await request.read()
        if self._signature is None or not self._signature.signed(body, request.headers):
            log.info("refused a Slack request without a valid signature")
            return web.Response(status=401, text="invalid signature")
        try:
            bolt_request = AsyncBoltRequest(
                body=body.decode("utf-8"),
                query=request.query_string,
                headers=request.headers,  # type: ignore[arg-type]  # (as Bolt's own aiohttp adapter)
            )
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("refused a signed Slack request whose body Bolt cannot read (%s)", type(exc).__name__)
            return web.Response(status=400, text="malformed body")
        response = await self.bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    def _register(self) -> None:
        bolt = self.bolt
        bolt.event("app_mention")(self._on_message)
        bolt.event("message")(self._on_message)
        bolt.command(re.compile(r"^/.+"))(self._on_command)
        bolt.action(re.compile(f"^({FEEDBACK_UP}|{FEEDBACK_DOWN})$"))(self._on_feedback)
        bolt.view(WHY_VIEW)(self._on_feedback_why)
        bolt.action(LINK_BUTTON)(self._on_link_button)
        bolt.action(SHARE_BUTTON)(self._on_share)
        self.plugin_actions.register(bolt, self._spawn, self._once)  # review, run or cancel a plugin action
        if self.assistant is not None:  # Slack's AI-app surface: prompts, thread status, titles
            self.assistant.register(bolt, self._spawn, self._on_message)
        # Everything else (url buttons, events the manifest may add later) is acknowledged and ignored: an
        # unanswered request would make Slack retry it, and show the user an error.
        bolt.action(re.compile(".*"))(self._ack_only)
        bolt.event(re.compile(".*"))(self._ack_only)

    async def _authorize(self, enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        auth = await self._bot_identity()
        return AuthorizeResult(
            enterprise_id=enterprise_id or auth.get("enterprise_id"),
            team_id=team_id or auth.get("team_id"),
            bot_token=self.slack.bot_token,
            bot_id=auth.get("bot_id"),
            bot_user_id=auth.get("user_id"),
        )

    async def _bot_identity(self) -> dict[str, Any]:
        """auth.test, once per process (single flight): the bot's user id, bot id and workspace."""
        if self._auth is None:
            async with self._auth_lock:
                if self._auth is None:
                    response = await self.client.auth_test()
                    self._auth = dict(response.data) if isinstance(response.data, dict) else {}
        return self._auth

    # -- listeners: acknowledge, then work in a kept task -------------------------------------------------

    def _spawn(
        self, work: Coroutine[Any, Any, None], what: str, response_url: str | None = None, *, queued: bool = True
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(work, what, response_url, queued))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(
        self, work: Coroutine[Any, Any, None], what: str, response_url: str | None, queued: bool = True
    ) -> None:
        """Run the work (in its turn, unless it must not wait); an unexpected failure is logged and, where the
        user can be told privately, said."""
        try:
            if queued:
                async with self._slots:
                    await work
            else:
                await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Slack %s failed", what)
            if response_url:
                try:
                    await self.replies.respond(response_url, render_notice(FAILED))
                except Exception:
                    log.exception("could not tell a Slack user that their %s failed", what)

    async def _ack_only(self, ack: Callable[[], Awaitable[Any]]) -> None:
        await ack()

    async def _on_message(self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any], context: Any) -> None:
        question = asked(body, bot_user_id=context.get("bot_user_id"))
        if question is not None:
            # Stored before Slack hears back: if Redis cannot take it, this raises, Slack gets no ack and retries.
            await self.turns.submit(PLATFORM, delivery_names(question), encode(question))
        await ack()

    async def _run_turn(self, turn: QueuedTurn) -> None:
        """A question from the turn stream (this process's or another's): answered, then acknowledged there."""
        await self.questions.answer(decode(turn.payload), again=turn.attempt > 1)

    async def _on_command(self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any]) -> None:
        await ack()
        self._spawn(self.commands.slash(body), "command", body.get("response_url"))

    async def _on_feedback(
        self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        await ack()
        work = self._once(_delivery("action", body), self.feedback.rate(body, action))
        # 👎 opens a modal with the click's trigger_id, which Slack honours for 3 seconds: it waits for no turn.
        queued = action.get("action_id") == FEEDBACK_UP
        self._spawn(work, "feedback", body.get("response_url"), queued=queued)

    async def _on_feedback_why(
        self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        await ack()  # closes the modal; the rating's outcome is said privately
        view_id = view.get("id")
        self._spawn(self._once(f"view:{view_id}" if view_id else None, self.feedback.explain(body, view)), "feedback")

    async def _on_share(
        self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        await ack()
        work = self._once(_delivery("action", body), self.sharing.share(body, action))
        self._spawn(work, "share", body.get("response_url"))

    async def _on_link_button(self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any]) -> None:
        await ack()
        self._spawn(self.commands.link_button(body), "link button", body.get("response_url"))

    async def _once(self, delivery_id: str | None, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for the first delivery of a command or click only (Socket Mode may redeliver)."""
        if not delivery_id or await self.deliveries.first(PLATFORM, delivery_id):
            await work
        else:
            work.close()

    # -- the core's callbacks ---------------------------------------------------------------------------------

    async def _confirm_link(self, identity: ChatIdentity, email: str) -> None:
        """A user finished linking in the browser: confirm it in their DM with the bot, then answer the question
        they asked when their sign-in had expired (if any) where they asked it."""
        try:
            await self.replies.dm(
                identity.user,
                text_message(f"You're linked as {email}. Ask me anything here, or mention me in a channel."),
            )
        finally:
            pending = await self.core.take_pending_question(identity)
            if pending is not None:
                self._spawn(self.questions.resume(pending), "kept question")

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the Slack adapter has not started")
        return self._session
