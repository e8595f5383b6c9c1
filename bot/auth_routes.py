"""`GET /auth/start` and `GET /auth/callback`: the browser half of the one-time account link."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.core import Core
from bot.errors import QBotError
from bot.pages import SECURITY_HEADERS, error_page, page

log = logging.getLogger(__name__)


def auth_routes(core: Core) -> list[web.RouteDef]:
    async def start(request: web.Request) -> web.StreamResponse:
        token = request.query.get("t", "")
        try:
            authorize_url = await core.start_login(token)
        except QBotError as exc:
            return error_page(exc.user_message)
        except Exception:
            log.exception("auth start failed")
            return error_page("Something went wrong on our side. Run qlink again in a minute.", status=500)
        raise web.HTTPFound(authorize_url, headers=SECURITY_HEADERS)

    async def callback(request: web.Request) -> web.StreamResponse:
        try:
            result = await core.finish_login(request.query)
        except QBotError as exc:
            return error_page(exc.user_message)
        except Exception:
            log.exception("auth callback failed")
            return error_page("Something went wrong on our side. Run qlink again in a minute.", status=500)
        if result.return_to and result.return_to.startswith("/") and not result.return_to.startswith("//"):
            raise web.HTTPFound(result.return_to, headers=SECURITY_HEADERS)
        return page(f"Linked as {result.email}", "You can close this tab and go back to the chat.")

    return [web.get("/auth/start", start), web.get("/auth/callback", callback)]
