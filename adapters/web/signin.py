"""`GET /auth/start`, `GET /auth/callback` and `POST /auth/saml/acs`: the browser half of the one-time account link.

`/auth/start` redeems a chat link and sends the browser to the IdP with the login state sealed into a
per-login cookie (path `/auth/callback`); the web console's sign-in sets the same cookie itself. The callback
opens only the cookie named for its `state`, and deletes it whatever the outcome.

In SAML mode the IdP answers with a form POST to `/auth/saml/acs` (HTTP-POST binding) whose RelayState is the
`state`: the cookie has that path instead, and `SameSite=None` over https, since a cross-site POST would not
carry a Lax cookie (it stays HttpOnly and Secure, and opens only with its RelayState, once).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable

from aiohttp import web

from adapters.web.pages import SECURITY_HEADERS, error_page, page
from bot.accounts import LinkResult, LoginStart
from bot.core import Core
from bot.errors import QBotError
from bot.saml import sp_metadata_xml

log = logging.getLogger(__name__)


# One of these per login carries the sealed login state to /auth/callback: it finishes only in that browser.
LOGIN_COOKIE_PREFIX = "qbot_login_"
CALLBACK_PATH = "/auth/callback"
SAML_ACS_PATH = "/auth/saml/acs"
SAML_METADATA_PATH = "/auth/saml/metadata"
MAX_SAML_FORM_BYTES = 512 * 1024  # a SAMLResponse is a few KB; bot.saml refuses anything near this anyway


def login_cookie_name(state: str) -> str:
    """Per login, so two sign-ins in two tabs of one browser do not overwrite each other's cookie."""
    return LOGIN_COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


def set_login_cookie(response: web.StreamResponse, login: LoginStart, *, max_age: int, secure: bool) -> None:
    """Hand the browser its sealed login state, readable only by the callback (HttpOnly, that path only)."""
    response.set_cookie(
        login_cookie_name(login.state), login.cookie_value, path=SAML_ACS_PATH if login.saml else CALLBACK_PATH,
        max_age=max_age, httponly=True, samesite="None" if login.saml and secure else "Lax", secure=secure,
    )


def auth_routes(core: Core) -> list[web.RouteDef]:
    secure = core.settings.public_url.startswith("https://")

    async def start(request: web.Request) -> web.StreamResponse:
        token = request.query.get("t", "")
        try:
            login = await core.accounts.start_login(token)
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
        return _finished(
            await _finish(core.accounts.finish_login(request.query, login_cookie=request.cookies.get(cookie))),
            request, cookie, CALLBACK_PATH,
        )

    async def saml_acs(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_SAML_FORM_BYTES:
            return error_page("This sign-in answer is too large. Run qlink again.", status=413)
        form = {key: str(value) for key, value in (await request.post()).items() if isinstance(value, str)}
        cookie = login_cookie_name(form.get("RelayState", ""))
        return _finished(
            await _finish(core.accounts.finish_saml_login(form, login_cookie=request.cookies.get(cookie))),
            request, cookie, SAML_ACS_PATH,
        )

    routes = [web.get("/auth/start", start), web.get(CALLBACK_PATH, callback)]
    saml = core.accounts.saml
    if saml is not None:
        metadata = sp_metadata_xml(saml.sp_entity_id, saml.acs_url)

        async def sp_metadata(_request: web.Request) -> web.StreamResponse:
            """qbot's SAML metadata (the default entity id is this URL), for the IdP's side of the setup."""
            return web.Response(body=metadata, content_type="application/samlmetadata+xml")

        routes += [web.post(SAML_ACS_PATH, saml_acs), web.get(SAML_METADATA_PATH, sp_metadata)]
    return routes


async def _finish(linking: Awaitable[LinkResult]) -> LinkResult | web.Response:
    """The link, or the page that says why there is none (a domain error's message, never a trace)."""
    try:
        return await linking
    except QBotError as exc:
        return error_page(exc.user_message)
    except Exception:
        log.exception("finishing the sign-in failed")
        return error_page("Something went wrong on our side. Run qlink again in a minute.", status=500)


def _finished(
    outcome: LinkResult | web.Response, request: web.Request, cookie: str, path: str
) -> web.StreamResponse:
    if isinstance(outcome, web.Response):
        response = outcome
    elif outcome.return_to and outcome.return_to.startswith("/") and not outcome.return_to.startswith("//"):
        response = web.Response(status=302, headers={**SECURITY_HEADERS, "Location": outcome.return_to})
    else:
        response = page(f"Linked as {outcome.email}", "You can close this tab and go back to the chat.")
    if cookie in request.cookies:
        response.del_cookie(cookie, path=path)
    return response
