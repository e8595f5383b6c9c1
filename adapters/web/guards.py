"""What a console API request must pass before it is handled, and how a refusal reaches the page.

Every state-changing request needs the live session cookie, the CSRF header `X-QBot-CSRF` (from
`/web/api/me`) and, when the browser names one, this bot's Origin; it is authenticated before its body is
read, and the body is read only up to `MAX_BODY` bytes. A refusal is `Refused`: JSON with the user's message
and a 4xx status, nothing changed; anything unexpected is a JSON 500 with a generic message, never a trace.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from adapters.web.session import Session, Sessions
from bot.errors import QBotError

log = logging.getLogger(__name__)

MAX_TEXT = 8000
# A request body is small JSON: MAX_TEXT characters even fully \u-escaped fit, a flood does not.
MAX_BODY = 64 * 1024
CSRF_HEADER = "X-QBot-CSRF"
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request the API turns down: `message` is what the page shows; nothing was changed."""

    def __init__(self, status: int, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def json_api(handler: Handler) -> Handler:
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


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: web.Request, origin: str) -> bool:
    """Browsers name the page's origin on every POST: it must be this bot's (`origin`, or as addressed)."""
    named = request.headers.get("Origin")
    if named is None:
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    return named.lower() in (origin, f"{request.scheme}://{request.host}".lower())


def session_for_change(request: web.Request, sessions: Sessions, origin: str) -> Session:
    """The live session of a state-changing request that passes the CSRF defences, or a refusal."""
    session = sessions.read(request)
    if session is None:
        raise Refused(401, "You are signed out. Sign in to continue.", kind="not_linked")
    if not same_origin(request, origin):
        raise Refused(403, "This request came from another site and was refused.")
    if not sessions.csrf_ok(session.sid, request.headers.get(CSRF_HEADER, "")):
        raise Refused(403, "This request lacks a valid CSRF token. Reload the page and try again.")
    return session


async def json_object(request: web.Request) -> dict[str, Any]:
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


def text_field(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str):
        raise Refused(400, "'text' is required and must be a string.")
    if len(text) > MAX_TEXT:
        raise Refused(400, f"Your message is too long ({len(text)} characters); the limit is {MAX_TEXT}.")
    return text


def optional_text(body: dict[str, Any], name: str) -> str | None:
    """An optional string field: absent or null is None; anything but a string is refused."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Refused(400, f"'{name}' must be a string.")
    return value


def id_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise Refused(400, f"'{name}' is required: 1 to 100 letters, digits or _ . : -")
    return value
