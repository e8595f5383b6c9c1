"""`GET /auth/plugin/start` and `GET /auth/plugin/callback`: the browser half of a plugin's OAuth consent.

The chat's private "Authorize <plugin>" button opens `/auth/plugin/start?c=<challenge>`, which sends the browser
to the plugin's consent page (the URL Q gave) with the challenge's id in a cookie named for the consent's state,
readable only by the callback (HttpOnly, that path, SameSite=Lax). The plugin's OAuth server returns the browser
to the callback with its code and the state; the core finishes the challenge once (bot.plugins) and the answer
appears in the chat; the page only says how it went. A callback without its cookie (another browser, a link
passed on) finishes nothing.
"""

from __future__ import annotations

import hashlib
import logging

from aiohttp import web

from adapters.web.pages import SECURITY_HEADERS, page
from bot.core import Core
from bot.errors import QBotError
from bot.plugins import CALLBACK_PATH, START_PATH

log = logging.getLogger(__name__)

COOKIE_PREFIX = "qbot_plugin_"
WRONG_BROWSER = (
    "This authorization was not started in this browser. Use the Authorize button in your chat, in the browser "
    "you then approve it in."
)
FAILED = "Something went wrong on our side. Ask your question again in a minute."


def plugin_cookie_name(state: str) -> str:
    """Per consent, so two authorizations in one browser do not overwrite each other's cookie."""
    return COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


def plugin_routes(core: Core) -> list[web.RouteDef]:
    secure = core.settings.public_url.startswith("https://")
    max_age = core.settings.link_ttl_seconds

    async def start(request: web.Request) -> web.StreamResponse:
        challenge = request.query.get("c", "")
        try:
            url, state = await core.plugins.authorization_url(challenge)
        except QBotError as exc:
            return page("Authorization failed", exc.user_message, status=400, ok=False)
        response = web.Response(status=302, headers={**SECURITY_HEADERS, "Location": url})
        response.set_cookie(
            plugin_cookie_name(state), challenge, path=CALLBACK_PATH, max_age=max_age, httponly=True,
            samesite="Lax", secure=secure,
        )
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        cookie = plugin_cookie_name(request.query.get("state", ""))
        challenge = request.cookies.get(cookie)
        if not challenge:
            return page("Authorization failed", WRONG_BROWSER, status=400, ok=False)
        try:
            outcome = await core.plugins.authorized(challenge, dict(request.query))
        except Exception:
            log.exception("finishing a plugin authorization failed")
            response = page("Authorization failed", FAILED, status=500, ok=False)
        else:
            title = "Authorized" if outcome.authorized else "Authorization not finished"
            response = page(title, outcome.text, status=200 if outcome.authorized else 400, ok=outcome.authorized)
        response.del_cookie(cookie, path=CALLBACK_PATH)
        return response

    return [web.get(START_PATH, start), web.get(CALLBACK_PATH, callback)]
