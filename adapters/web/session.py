"""The web console's session cookie and the CSRF token that goes with it.

A session is a random id (>= 256 bits) that is also the web user's chat identity, so the cookie is the whole
credential: it is HttpOnly (no script reads it), SameSite=Lax, Secure (and `__Host-`-prefixed) on https, and
signed with HMAC-SHA256 under the bot's session secret. A cookie whose signature does not verify is no
session at all. The CSRF token is a second HMAC of the id, under its own label, that only pages of this
origin can read (from `/web/api/me`) and send back in a header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from aiohttp import web

SESSION_MAX_AGE = 30 * 24 * 3600
_SID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_SESSION_LABEL = b"qbot web session cookie\x00"
_CSRF_LABEL = b"qbot web csrf\x00"


def _mac(secret: bytes, label: bytes, sid: str) -> str:
    digest = hmac.new(secret, label + sid.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Sessions:
    def __init__(self, secret: bytes, *, secure: bool, max_age: int = SESSION_MAX_AGE) -> None:
        if len(secret) < 16:
            raise ValueError("the web session secret must be at least 16 bytes")
        self._secret = secret
        self.secure = secure
        self.max_age = max_age
        # The __Host- prefix makes browsers refuse the cookie unless it is Secure, host-only and Path=/.
        self.cookie_name = "__Host-qbot_session" if secure else "qbot_session"

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(32)

    def cookie_value(self, sid: str) -> str:
        return f"{sid}.{_mac(self._secret, _SESSION_LABEL, sid)}"

    def verify(self, value: str) -> str | None:
        """The session id of a genuine cookie value; None for a missing, malformed or tampered one."""
        sid, _, mac = value.partition(".")
        if not _SID.fullmatch(sid):
            return None
        expected = _mac(self._secret, _SESSION_LABEL, sid)
        return sid if hmac.compare_digest(mac.encode(), expected.encode()) else None

    def read(self, request: web.Request) -> str | None:
        return self.verify(request.cookies.get(self.cookie_name, ""))

    def set(self, response: web.StreamResponse, sid: str) -> None:
        response.set_cookie(
            self.cookie_name,
            self.cookie_value(sid),
            max_age=self.max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, response: web.StreamResponse) -> None:
        response.set_cookie(
            self.cookie_name, "", max_age=0, path="/", secure=self.secure, httponly=True, samesite="Lax"
        )

    def csrf_token(self, sid: str) -> str:
        return _mac(self._secret, _CSRF_LABEL, sid)

    def csrf_ok(self, sid: str, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf_token(sid).encode())
