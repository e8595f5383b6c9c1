"""`GET /auth/start` and `GET /auth/callback`: the browser half of the one-time account link."""

from __future__ import annotations

import hashlib
import logging

from aiohttp import web

from bot.core import Core
from bot.errors import QBotError
from bot.pages import SECURITY_HEADERS, error_page, page

log = logging.getLogger(__name__)


# An adapter that binds a link to a browser (the web console) sets this cookie for /auth/start.
LINK_COOKIE = "qbot_link"
# /auth/start sets one of these per login for /auth/callback: the login finishes only in that browser.
LOGIN_COOKIE_PREFIX = "qbot_login_"


def login_cookie_name(state: str) -> str:
    """Per login, so two sign-ins in two tabs of one browser do not overwrite each other's cookie."""
    return LOGIN_COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


def auth_routes(core: Core) -> list[web.RouteDef]:
    secure = core.settings.public_url.startswith("https://")

    async def start(request: web.Request) -> web.StreamResponse:
        token = request.query.get("t", "")
        try:
            login = await core.start_login(token, browser_secret=request.cookies.get(LINK_COOKIE))
        except QBotError as exc:
            return error_page(exc.user_message)
        except Exception:
            log.exception("auth start failed")
            return error_page("Something went wrong on our side. Run qlink again in a minute.", status=500)
        response = web.Response(status=302, headers={**SECURITY_HEADERS, "Location": login.authorize_url})
        response.set_cookie(
            login_cookie_name(login.state), login.browser_secret, path="/auth/callback",
            max_age=core.login_states.ttl_seconds, httponly=True, samesite="Lax", secure=secure,
        )
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        state = request.query.get("state", "")
        cookie = login_cookie_name(state)
        try:
            result = await core.finish_login(request.query, browser_secret=request.cookies.get(cookie))
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
            response.del_cookie(cookie, path="/auth/callback")
        return response

    return [web.get("/auth/start", start), web.get("/auth/callback", callback)]
