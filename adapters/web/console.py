"""The web console: a browser chat page at `GET /` whose users sign in with the IdP directly.

Sign-in is the account link (the "custom application" flow) and the console's only way to link: `GET
/web/login` opens a new session whose id is the user's chat identity and sends the browser straight to the
IdP, the login state sealed in its own cookie (nothing is stored for a visitor until the IdP sends them back
to `/auth/callback`, which links the session and returns to `/`). `qlink` typed in the console hands out no
link: it points to the Sign in button. The page then talks to a small JSON API:

- `GET  /web/api/me`        -> {signed_in, linked, email, csrf}
- `POST /web/api/ask`       {text, thread, message_id} -> the rendered Answer or Notice
- `POST /web/api/feedback`  {conversation_id, message_id, useful}
- `POST /web/logout`        unlink (the refresh token is revoked at the IdP) and forget the session

Every POST needs the session cookie, the CSRF header `X-QBot-CSRF` (from `/web/api/me`) and, when the
browser names one, this bot's Origin; it is authenticated before its body (at most `MAX_BODY` bytes of JSON)
is read. Sessions end `QBOT_WEB_SESSION_TTL_SECONDS` after sign-in or `QBOT_WEB_SESSION_IDLE_SECONDS` after
their last use (see session.py); the link ends with them and the core revokes its refresh token (a sweep
runs while the console is started), as it does when a new sign-in replaces an ended session in the browser.
Like every adapter it only translates: the core decides what to answer, and the page renders it (escaping
everything: see static/app.js).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from adapters.ports import AdapterServices
from adapters.web.pages import SECURITY_HEADERS, error_page
from adapters.web.session import Session, Sessions
from adapters.web.signin import set_login_cookie
from bot.commands import Command, parse_command
from bot.config import Settings, env_flag, env_int
from bot.core import Core
from bot.errors import LinkExpired, NotLinked, NotYourConversation, QBotError, QUnavailable
from bot.links import PendingLink
from bot.model import Answer, ChatIdentity, IncomingMessage, Notice, NoticeKind, Reply, Usefulness

log = logging.getLogger(__name__)

PLATFORM = "web"
CHANNEL = "web"
MAX_TEXT = 8000
# A request body is small JSON: MAX_TEXT characters even fully \u-escaped fit, a flood does not.
MAX_BODY = 64 * 1024
SESSION_TTL_SECONDS = 8 * 3600  # QBOT_WEB_SESSION_TTL_SECONDS: a working day, then sign in again
SESSION_IDLE_SECONDS = 3600  # QBOT_WEB_SESSION_IDLE_SECONDS: an hour without use ends the session
CSRF_HEADER = "X-QBot-CSRF"
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

# The page runs only its own script and style, may call only this origin and can't be framed; Trusted Types
# make any stray innerHTML assignment an error rather than an injection.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'"
    ),
}
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_ASSET_TYPES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request the API turns down: `message` is what the page shows; nothing was changed."""

    def __init__(self, status: int, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


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


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _web_url(url: str | None) -> str | None:
    """Only http(s) links reach the page: a `javascript:` source URL is dropped, not rendered."""
    if url and urlsplit(url).scheme.lower() in ("http", "https"):
        return url
    return None


def render_reply(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, Answer):
        return {
            "type": "answer",
            "text": reply.text,
            "sources": [
                {"number": s.number, "title": s.title, "url": _web_url(s.url), "snippet": s.snippet}
                for s in reply.sources
            ],
            "conversation_id": reply.conversation_id,
            "message_id": reply.message_id,
            "failed_attachments": [{"name": f.name, "error": f.error} for f in reply.failed_attachments],
        }
    return render_notice(reply)


def render_notice(notice: Notice) -> dict[str, Any]:
    return {"type": notice.kind.value, "text": notice.text, "url": _web_url(notice.url)}


def _json_api(handler: Handler) -> Handler:
    """Refusals become JSON with the user's message; anything unexpected a JSON 500, never a stack trace."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as exc:
            return web.json_response(
                {"error": exc.message, "kind": exc.kind}, status=exc.status, headers=API_HEADERS
            )
        except web.HTTPException:
            raise
        except Exception:
            log.exception("web console %s %s failed", request.method, request.path)
            return web.json_response(
                {"error": QBotError.user_message, "kind": "error"}, status=500, headers=API_HEADERS
            )

    return wrapped


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, read only up to `MAX_BODY` bytes; call it after authenticating."""
    if request.content_type != "application/json":
        raise Refused(400, "Send the request as JSON (Content-Type: application/json).")
    raw = bytearray()
    while chunk := await request.content.read(MAX_BODY + 1 - len(raw)):
        raw += chunk
        if len(raw) > MAX_BODY:
            raise Refused(413, f"The request body is too large; the limit is {MAX_BODY // 1024} KB.")
    try:
        body = json.loads(raw)
    except ValueError:
        raise Refused(400, "The request body is not valid JSON.") from None
    except RecursionError:  # the json module recurses once per nesting level
        raise Refused(400, "The request body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise Refused(400, "The request body must be a JSON object.")
    return body


def _text_field(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str):
        raise Refused(400, "'text' is required and must be a string.")
    if len(text) > MAX_TEXT:
        raise Refused(400, f"Your message is too long ({len(text)} characters); the limit is {MAX_TEXT}.")
    return text


def _id_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise Refused(400, f"'{name}' is required: 1 to 100 letters, digits or _ . : -")
    return value


class WebConsole:
    """The `web` adapter: serves the page and its API on the bot's server; no background work."""

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
        self._origin = _origin(settings.public_url)
        static = resources.files("adapters.web").joinpath("static")
        self._assets = {name: static.joinpath(name).read_bytes() for name in _ASSET_TYPES}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.index),
            web.get("/web/static/{name}", self.asset),
            web.get("/web/login", self.login),
            web.get("/web/api/me", _json_api(self.me)),
            web.post("/web/api/ask", _json_api(self.ask)),
            web.post("/web/api/feedback", _json_api(self.feedback)),
            web.post("/web/logout", _json_api(self.logout)),
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.sweep_seconds)

    # -- page and assets ---------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._assets["index.html"], content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
        )

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "index.html" or name not in self._assets:
            raise web.HTTPNotFound()
        content_type = _ASSET_TYPES[name]
        charset = None if content_type.startswith("image/") else "utf-8"
        return web.Response(
            body=self._assets[name], content_type=content_type, charset=charset, headers=ASSET_HEADERS
        )

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
            },
            headers=API_HEADERS,
        )
        if email is not None and self._same_origin(request):  # the page was opened: a use
            await self._keep_alive(response, session)
        return response

    async def ask(self, request: web.Request) -> web.Response:
        session = self._session_for_change(request)
        body = await _json_object(request)
        text = _text_field(body)
        thread = _id_field(body, "thread")
        message_id = _id_field(body, "message_id")
        identity = identity_of(session.sid)
        reply: Reply | None
        if parse_command(text) is Command.LINK:
            reply = await self._sign_in_is_the_link(identity)
        else:
            reply = await self.core.handle(
                IncomingMessage(identity, text, channel=CHANNEL, thread=thread, message_id=message_id)
            )
        if reply is None:  # the console names no deliveries, so the core never sees one twice
            raise Refused(409, "This message was already answered.")
        response = web.json_response(render_reply(reply), headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    async def feedback(self, request: web.Request) -> web.Response:
        session = self._session_for_change(request)
        body = await _json_object(request)
        conversation_id = _id_field(body, "conversation_id")
        message_id = _id_field(body, "message_id")
        useful = body.get("useful")
        if not isinstance(useful, bool):
            raise Refused(400, "'useful' is required and must be true or false.")
        usefulness = Usefulness.USEFUL if useful else Usefulness.NOT_USEFUL
        try:
            await self.core.feedback(identity_of(session.sid), conversation_id, message_id, usefulness)
        except NotYourConversation as exc:
            raise Refused(403, exc.user_message) from None
        except (NotLinked, LinkExpired) as exc:
            raise Refused(401, exc.user_message, kind="not_linked") from None
        except QUnavailable as exc:
            raise Refused(503, exc.user_message) from None
        except QBotError as exc:
            raise Refused(400, exc.user_message) from None
        response = web.json_response({"ok": True}, headers=API_HEADERS)
        await self._keep_alive(response, session)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """Unlink (the refresh token is revoked at the IdP) and drop the cookie."""
        response = web.json_response({"signed_in": False}, headers=API_HEADERS)
        if self.sessions.read(request) is not None:
            session = self._session_for_change(request)
            await self.core.accounts.unlink(identity_of(session.sid))
        self.sessions.clear(response)
        return response

    # -- helpers -----------------------------------------------------------------------------------

    def _session_for_change(self, request: web.Request) -> Session:
        """The live session of a state-changing request that passes the CSRF defences, or a refusal."""
        session = self.sessions.read(request)
        if session is None:
            raise Refused(401, "You are signed out. Sign in to continue.", kind="not_linked")
        if not self._same_origin(request):
            raise Refused(403, "This request came from another site and was refused.")
        if not self.sessions.csrf_ok(session.sid, request.headers.get(CSRF_HEADER, "")):
            raise Refused(403, "This request lacks a valid CSRF token. Reload the page and try again.")
        return session

    async def _keep_alive(self, response: web.StreamResponse, session: Session) -> None:
        """A use: the session's idle lifetime starts again (new cookie), and its link's end moves with it."""
        session = self.sessions.used(session)
        self.sessions.set(response, session)
        await self.core.accounts.extend_link(identity_of(session.sid), self.sessions.lifetime_left(session))

    async def _sign_in_is_the_link(self, identity: ChatIdentity) -> Notice:
        """`qlink` in the console: no link to hand out (it could be forwarded); signing in is the link."""
        email = await self._email(identity)
        if email is not None:
            return Notice(
                NoticeKind.INFO,
                f"You're already signed in as {email}; that is your link. "
                "To use another account, sign out and sign in again.",
                private=True,
            )
        return Notice(
            NoticeKind.NOT_LINKED,
            "In this console, signing in is the link: use the Sign in button to sign in with your company account.",
            private=True,
        )

    def _same_origin(self, request: web.Request) -> bool:
        """Browsers name the page's origin on every POST: it must be this bot's (public or as addressed)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
        return origin.lower() in (self._origin, f"{request.scheme}://{request.host}".lower())

    async def _email(self, identity: ChatIdentity) -> str | None:
        """The email this session is linked as, or None when it is not (yet, or any more) linked."""
        return await self.core.accounts.linked_email(identity)
