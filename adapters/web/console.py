"""The web console: a browser chat page at `GET /` whose users sign in with the IdP directly.

Sign-in is the account link (the "custom application" flow) and the console's only way to link: `GET
/web/login` opens a new session whose id is the user's chat identity and sends the browser straight to the
IdP, the login state sealed in its own cookie (nothing is stored for a visitor until the IdP sends them back
to `/auth/callback`, which links the session and returns to `/`). `qlink` typed in the console hands out no
link: it points to the Sign in button. The page then talks to a small JSON API:

- `GET  /web/api/me`        -> {signed_in, linked, email, csrf, feedback_reasons}
- `POST /web/api/ask`       {text, thread, message_id} -> the rendered Answer or Notice
- `POST /web/api/feedback`  {conversation_id, message_id, useful, reason?, comment?}: 👍 is one click; after
                             👎 the page asks why (Q's reasons, `feedback_reasons` in `/web/api/me`) inline
- `POST /web/logout`        unlink (the refresh token is revoked at the IdP) and forget the session
- `GET  /web/conversations[?next=]` -> the user's conversations, read from Amazon Q as the user (newest first,
                             100 a page, `next` names the following page)
- `GET  /web/conversations/{id}` -> its messages; the console's thread `{id}` then continues it
- `DELETE /web/conversations/{id}` deletes it in Amazon Q

Q answers as the signed-in user, so it lists only their own conversations and treats anyone else's id as
missing (404 here).

Every API call but `/web/api/me` needs the session cookie, the CSRF header `X-QBot-CSRF` (from
`/web/api/me`) and, when the browser names one, this bot's Origin; it is authenticated before its body (at
most `MAX_BODY` bytes of JSON) is read (see guards.py). Sessions end `QBOT_WEB_SESSION_TTL_SECONDS` after sign-in or
`QBOT_WEB_SESSION_IDLE_SECONDS` after their last use (see session.py); the link ends with them and the core
revokes its refresh token (a sweep runs while the console is started), as it does when a new sign-in replaces
an ended session in the browser. Like every adapter it only translates: the core decides what to answer,
render.py turns the reply into JSON, and the page (assets.py, static/) renders it, escaping everything.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web

from adapters.ports import AdapterServices
from adapters.web.assets import PageAssets
from adapters.web.guards import (
    API_HEADERS,
    Refused,
    id_field,
    json_api,
    json_object,
    optional_text,
    origin_of,
    same_origin,
    session_for_change,
    text_field,
)
from adapters.web.pages import SECURITY_HEADERS, error_page
from adapters.web.plugin_actions import cancel_action, run_action
from adapters.web.render import render_past, render_reply
from adapters.web.session import Session, Sessions
from adapters.web.signin import set_login_cookie
from bot.config import Settings, env_flag, env_int
from bot.core import Core
from bot.errors import LinkExpired, NotLinked, QBotError
from bot.feedback import WHY_NOT_USEFUL, InvalidFeedback, rating
from bot.links import PendingLink
from bot.model import ChatIdentity, IncomingMessage, NoticeKind, Usefulness
from bot.qbusiness import ConversationGone
from bot.tasks import pause
from bot.turn import QuietTurn

log = logging.getLogger(__name__)

PLATFORM = "web"
CHANNEL = "web"
SESSION_TTL_SECONDS = 8 * 3600  # QBOT_WEB_SESSION_TTL_SECONDS: a working day, then sign in again
SESSION_IDLE_SECONDS = 3600  # QBOT_WEB_SESSION_IDLE_SECONDS: an hour without use ends the session
_CONVERSATION_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]{35}")  # Q's ConversationId
_NEXT_TOKEN = re.compile(r"[\x21-\x7e]{1,800}")  # Q's NextToken: 1-800 characters (printable ASCII here)
GONE = "This conversation no longer exists: it was deleted or has expired."

T = TypeVar("T")


def web_console(core: Core, settings: Settings, services: AdapterServices | None = None) -> WebConsole | None:
    """The console, unless QBOT_WEB_CONSOLE=false (then `/` and `/web/*` do not exist)."""
    if not env_flag(settings.extra, "QBOT_WEB_CONSOLE", True):
        return None
    return WebConsole(
        core,
        settings,
        session_secret=settings.web_session_key(),
        session_ttl_seconds=env_int(settings.extra, "QBOT_WEB_SESSION_TTL_SECONDS", SESSION_TTL_SECONDS),
        session_idle_seconds=env_int(settings.extra, "QBOT_WEB_SESSION_IDLE_SECONDS", SESSION_IDLE_SECONDS),
    )


def identity_of(sid: str) -> ChatIdentity:
    return ChatIdentity(PLATFORM, "", sid)


class ConsoleTurn(QuietTurn):
    """The console's turn: nothing to show or fetch, and its own sign-in is the account link."""

    signs_in_itself = True


class WebConsole:
    """The `web` adapter: the page and its API on the bot's server; its one background task is the sweep."""

    platform = PLATFORM

    def __init__(
        self,
        core: Core,
        settings: Settings,
        *,
        session_secret: bytes,
        session_ttl_seconds: int = SESSION_TTL_SECONDS,
        session_idle_seconds: int = SESSION_IDLE_SECONDS,
    ) -> None:
        self.core = core
        self.settings = settings
        self._secure = settings.public_url.lower().startswith("https://")
        self.sessions = Sessions(
            session_secret, secure=self._secure, ttl_seconds=session_ttl_seconds, idle_seconds=session_idle_seconds
        )
        # Ended links are revoked within this long of their end (bounded: short lifetimes are for tests).
        self.sweep_seconds = max(1, min(60, session_idle_seconds // 4))
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._origin = origin_of(settings.public_url)
        self._assets = PageAssets()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self._assets.index),
            web.get("/web/static/{name}", self._assets.asset),
            web.get("/web/login", self.login),
            web.get("/web/api/me", json_api(self.me)),
            web.post("/web/api/ask", json_api(self.ask)),
            web.post("/web/api/feedback", json_api(self.feedback)),
            web.post("/web/api/plugin/run", json_api(self.plugin_run)),
            web.post("/web/api/plugin/cancel", json_api(self.plugin_cancel)),
            web.post("/web/logout", json_api(self.logout)),
            web.get("/web/conversations", json_api(self.conversations)),
            web.get("/web/conversations/{conversation_id}", json_api(self.conversation)),
            web.delete("/web/conversations/{conversation_id}", json_api(self.delete_conversation)),
        ]

    async def start(self) -> None:
        """Start the sweep that ends (and revokes) the links of sessions whose lifetime is over."""
        self._stopping.clear()
        self._sweeper = asyncio.create_task(self._sweep_until_stopped(), name="web session sweep")

    async def stop(self) -> None:
        """Let a sweep in progress finish its link (a revocation is not cut in half), then stop."""
        self._stopping.set()
        if self._sweeper is not None:
            await self._sweeper
            self._sweeper = None

    async def _sweep_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                ended = await self.core.accounts.end_overdue_links()
                if ended:
                    log.info("ended %d web console link(s) whose session was over", ended)
            except Exception:  # Redis or the IdP briefly away: the next sweep tries again
                log.exception("web session sweep failed")
            await pause(self.sweep_seconds, self._stopping)

    # -- sign-in is the link -----------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        """A fresh session, and straight to the IdP with the sealed login state; nothing is stored.

        A session that is live and linked just goes home (so a cross-site link to this URL cannot sign a user
        out of a working session). An ended session this browser still holds is replaced: its link ends now,
        refresh token revoked, instead of at the next sweep. The new session id is always fresh, never one the
        browser brought (no session fixation).
        """
        current = self.sessions.genuine(request)
        if current is not None:
            identity = identity_of(current.sid)
            if self.sessions.live(current) and await self._email(identity) is not None:
                return web.Response(status=302, headers={**SECURITY_HEADERS, "Location": "/"})
            if await self.core.accounts.is_linked(identity):
                await self.core.accounts.unlink(identity)
        session = self.sessions.new()
        pending = PendingLink(
            identity_of(session.sid), return_to="/", expires_in=self.sessions.lifetime_left(session)
        )
        try:
            login = await self.core.accounts.begin_login(pending)
        except QBotError as exc:
            return error_page(exc.user_message, status=503)
        except Exception:
            log.exception("web sign-in could not begin")
            return error_page("Something went wrong on our side. Try again in a minute.", status=500)
        response = web.Response(status=302, headers={**SECURITY_HEADERS, "Location": login.authorize_url})
        self.sessions.set(response, session)
        set_login_cookie(response, login, max_age=self.core.accounts.login_states.ttl_seconds, secure=self._secure)
        return response

    # -- the API -----------------------------------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        session = self.sessions.read(request)
        if session is None:
            return web.json_response(
                {"signed_in": False, "linked": False, "email": None, "csrf": None}, headers=API_HEADERS
            )
        email = await self._email(identity_of(session.sid))
        response = web.json_response(
            {
                "signed_in": True,
                "linked": email is not None,
                "email": email,
                "csrf": self.sessions.csrf_token(session.sid),
                "feedback_reasons": [{"value": reason.value, "label": label} for reason, label in WHY_NOT_USEFUL],
            },
            headers=API_HEADERS,
        )
        if email is not None and same_origin(request, self._origin):  # the page was opened: a use
            await self._keep_alive(response, session)
        return response

    async def ask(self, request: web.Request) -> web.Response:
        session = session_for_change(request, self.sessions, self._origin)
        body = await json_object(request)
        text = text_field(body)
        thread = id_field(body, "thread")
        message_id = id_field(body, "message_id")
        identity = identity_of(session.sid)
        message = IncomingMessage(identity, text, channel=CHANNEL, thread=thread, message_id=message_id)
        reply = await self.core.handle(message, ConsoleTurn(message))
        if reply is None:  # the console names no deliveries, so the core never sees one twice
            raise Refused(409, "This message was already answered.")
        response = web.json_response(render_reply(reply), headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    async def feedback(self, request: web.Request) -> web.Response:
        session = session_for_change(request, self.sessions, self._origin)
        body = await json_object(request)
        conversation_id = id_field(body, "conversation_id")
        message_id = id_field(body, "message_id")
        useful = body.get("useful")
        if not isinstance(useful, bool):
            raise Refused(400, "'useful' is required and must be true or false.")
        usefulness = Usefulness.USEFUL if useful else Usefulness.NOT_USEFUL
        reason, comment = optional_text(body, "reason"), optional_text(body, "comment")
        try:  # the core checks too; here a bad value is the page's mistake: 400, nothing sent
            rating(usefulness, reason, comment)
        except InvalidFeedback as exc:
            raise Refused(400, exc.user_message) from None
        rated = await self.core.feedback(
            identity_of(session.sid), conversation_id, message_id, usefulness, reason=reason, comment=comment
        )
        if rated.kind is NoticeKind.REFUSED:
            raise Refused(403, rated.text)
        if rated.kind is NoticeKind.NOT_LINKED:
            raise Refused(401, rated.text, kind="not_linked")
        if rated.kind is NoticeKind.ERROR:
            raise Refused(503, rated.text)
        response = web.json_response({"ok": True}, headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    async def plugin_run(self, request: web.Request) -> web.Response:
        """A proposed plugin action's form, sent: Q's result (adapters/web/plugin_actions.py)."""
        session = session_for_change(request, self.sessions, self._origin)
        result = await run_action(self.core, identity_of(session.sid), await json_object(request))
        response = web.json_response(result, headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    async def plugin_cancel(self, request: web.Request) -> web.Response:
        session = session_for_change(request, self.sessions, self._origin)
        result = await cancel_action(self.core, identity_of(session.sid), await json_object(request))
        response = web.json_response(result, headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """Unlink (the refresh token is revoked at the IdP) and drop the cookie."""
        response = web.json_response({"signed_in": False}, headers=API_HEADERS)
        if self.sessions.read(request) is not None:
            session = session_for_change(request, self.sessions, self._origin)
            await self.core.accounts.unlink(identity_of(session.sid))
        self.sessions.clear(response)
        return response

    # -- history, from Q ----------------------------------------------------------------------------

    async def conversations(self, request: web.Request) -> web.Response:
        """A page of the user's conversations; `?next=` (the previous page's `next`) asks for the following one."""
        session = session_for_change(request, self.sessions, self._origin)
        token = request.query.get("next")
        if token is not None and not _NEXT_TOKEN.fullmatch(token):
            raise Refused(400, "'next' must be the token a previous page gave.")
        past, following = await _from_q(self.core.history.conversations(identity_of(session.sid), token))
        listed = [
            {"conversation_id": c.conversation_id, "title": c.title,
             "started_at": c.started_at.isoformat() if c.started_at else None}
            for c in past
        ]
        response = web.json_response({"conversations": listed, "next": following}, headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    async def conversation(self, request: web.Request) -> web.Response:
        """A conversation's messages; asking with `thread` = its id then continues it after its last answer."""
        session = session_for_change(request, self.sessions, self._origin)
        conversation_id = _conversation_id(request)
        past = await _from_q(self.core.history.open(
            identity_of(session.sid), conversation_id, channel=CHANNEL, thread=conversation_id
        ))
        messages = [render_past(m) for m in past]
        body = {"conversation_id": conversation_id, "thread": conversation_id, "messages": messages}
        response = web.json_response(body, headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    async def delete_conversation(self, request: web.Request) -> web.Response:
        session = session_for_change(request, self.sessions, self._origin)
        conversation_id = _conversation_id(request)
        await _from_q(self.core.history.delete(
            identity_of(session.sid), conversation_id, channel=CHANNEL, thread=conversation_id
        ))
        response = web.json_response({"ok": True}, headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    # -- helpers -----------------------------------------------------------------------------------

    async def _keep_alive(self, response: web.StreamResponse, session: Session) -> None:
        """A use: the session's idle lifetime starts again (new cookie), and its link's end moves with it."""
        session = self.sessions.used(session)
        self.sessions.set(response, session)
        await self.core.accounts.extend_link(identity_of(session.sid), self.sessions.lifetime_left(session))

    async def _email(self, identity: ChatIdentity) -> str | None:
        """The email this session is linked as, or None when it is not (yet, or any more) linked."""
        return await self.core.accounts.linked_email(identity)


def _conversation_id(request: web.Request) -> str:
    conversation_id = request.match_info["conversation_id"]
    if not _CONVERSATION_ID.fullmatch(conversation_id):
        raise Refused(400, "That is not an Amazon Q conversation id.")
    return conversation_id


async def _from_q(call: Awaitable[T]) -> T:
    """A history call, its failures as the page's refusals: gone (or not yours) 404, signed out 401, else 503."""
    try:
        return await call
    except ConversationGone:
        raise Refused(404, GONE) from None
    except (NotLinked, LinkExpired) as exc:
        raise Refused(401, exc.user_message, kind="not_linked") from None
    except QBotError as exc:
        raise Refused(503, exc.user_message) from None
