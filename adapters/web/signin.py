"""`GET /auth/start` and `GET /auth/callback`: the browser half of the one-time account link.

`/auth/start` redeems a chat link and sends the browser to the IdP with the login state sealed into a
per-login cookie (path `/auth/callback`); the web console's sign-in sets the same cookie itself. The callback
opens only the cookie named for its `state`, and deletes it whatever the outcome.
"""

from __future__ import annotations

import hashlib
import logging

from aiohttp import web

from adapters.web.pages import SECURITY_HEADERS, error_page, page
from bot.accounts import LoginStart
from bot.core import Core
from bot.errors import QBotError

log = logging.getLogger(__name__)


# An adapter that binds a link to a browser sets this cookie for /auth/start.
LINK_COOKIE = "qbot_link"
# One of these per login carries the sealed login state to /auth/callback: it finishes only in that browser.
LOGIN_COOKIE_PREFIX = "qbot_login_"
CALLBACK_PATH = "/auth/callback"


def login_cookie_name(state: str) -> str:
    """Per login, so two sign-ins in two tabs of one browser do not overwrite each other's cookie."""
    return LOGIN_COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


def set_login_cookie(response: web.StreamResponse, login: LoginStart, *, max_age: int, secure: bool) -> None:
    """Hand the browser its sealed login state, readable only by the callback (HttpOnly, that path only)."""
    response.set_cookie(
        login_cookie_name(login.state), login.cookie_value, path=CALLBACK_PATH,
        max_age=max_age, httponly=True, samesite="Lax", secure=secure,
    )


def auth_routes(core: Core) -> list[web.RouteDef]:
    secure = core.settings.public_url.startswith("https://")

    async def start(request: web.Request) -> web.StreamResponse:
        token = request.query.get("t", "")
        try:
            login = await core.accounts.start_login(token, browser_secret=request.cookies.get(LINK_COOKIE))
        except QBotError as exc:
            return error_page(exc.user_message)
        except Exception:
            log.exception("auth start failed")
            return error_page("Something went wrong on our side. Run qlink again in a minute.", status=500)
        response = web.Response(status=302, headers={**SECURITY_HEADERS, "Location": login.authorize_url})
        set_login_cookie(response, login, max_age=core.accounts.login_states.ttl_seconds, secure=secure)
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        state = request.query.get("state", "")
        cookie = login_cookie_name(state)
        try:
            result = await core.accounts.finish_login(request.query, login_cookie=request.cookies.get(cookie))
        except QBotError as exc:
            response = error_page(exc.user_message)
        except Exception:
            log.exception("auth callback failed")
            response = error_page("Something went wrong on our side. Run qlink again in a minute.", status=500)
        else:
            if result.return_to and result.return_to.startswith("/") and not result.return_to.startswith("//"):
                response = web.Response(status=302, headers={**SECURITY_HEADERS, "Location": result.return_to})
            else:
                response = page(f"Linked as {result.email}", "You can close this tab and go back to the chat.")
        if cookie in request.cookies:
            response.del_cookie(cookie, path=CALLBACK_PATH)
        return response

    return [web.get("/auth/start", start), web.get(CALLBACK_PATH, callback)]
