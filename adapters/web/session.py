"""The web console's session cookie and the CSRF token that goes with it.

A session is a random id (>= 256 bits) that is also the web user's chat identity, so the cookie is the whole
credential: it is HttpOnly (no script reads it), SameSite=Lax, Secure (and `__Host-`-prefixed) on https, and
signed with HMAC-SHA256 under the bot's session secret. The signature covers the id, the moment the session
was issued and the moment it was last used, so a session ends on its own: `ttl_seconds` after it was issued
(absolute lifetime) or `idle_seconds` after its last use (idle lifetime), whichever comes first; each use
re-issues the cookie with a new last-use time (sliding). A cookie whose signature does not verify is no
session at all; a genuine but ended one is only good for ending its link (`verify` vs `live`). The CSRF token
is a second HMAC of the id, under its own label, that only pages of this origin can read (from
`/web/api/me`) and send back in a header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from aiohttp import web

_SID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_MOMENT = re.compile(r"[0-9]{1,12}")
_SESSION_LABEL = b"qbot web session cookie v2\x00"
_CSRF_LABEL = b"qbot web csrf\x00"


def _mac(secret: bytes, label: bytes, text: str) -> str:
    digest = hmac.new(secret, label + text.encode(), hashlib.sha256).digest()
    # equivalent mutant: rstrip(b"XX=XX") also strips "X", which never ends the base64 of 32 bytes
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Session:
    """One browser's session: its id (the chat identity's user), when it was issued and last used."""

    sid: str
    issued_at: int
    seen_at: int


class Sessions:
    def __init__(
        self,
        secret: bytes,
        *,
        secure: bool,
        ttl_seconds: int,
        idle_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the web session secret must be at least 16 bytes")
        if ttl_seconds < 1 or idle_seconds < 1:
            raise ValueError("session lifetimes must be at least one second")
        self._secret = secret
        self.secure = secure
        self.ttl_seconds = ttl_seconds
        self.idle_seconds = idle_seconds
        self._clock = clock
        # The __Host- prefix makes browsers refuse the cookie unless it is Secure, host-only and Path=/.
        self.cookie_name = "__Host-qbot_session" if secure else "qbot_session"

    def _now(self) -> int:
        return int(self._clock())

    def new(self) -> Session:
        now = self._now()
        return Session(secrets.token_urlsafe(32), now, now)  # equivalent mutant: token_urlsafe(None) is 32 bytes

    def used(self, session: Session) -> Session:
        """The same session, last used now."""
        return replace(session, seen_at=self._now())

    def ends_at(self, session: Session) -> int:
        """When the session ends unless it is used again: the earlier of its absolute and idle lifetimes."""
        return min(session.issued_at + self.ttl_seconds, session.seen_at + self.idle_seconds)

    def lifetime_left(self, session: Session) -> int:
        return self.ends_at(session) - self._now()

    def live(self, session: Session) -> bool:
        return self.lifetime_left(session) > 0

    def cookie_value(self, session: Session) -> str:
        signed = f"{session.sid}.{session.issued_at}.{session.seen_at}"
        return f"{signed}.{_mac(self._secret, _SESSION_LABEL, signed)}"

    def verify(self, value: str) -> Session | None:
        """The session of a genuine cookie value, live or ended; None for a missing, malformed or forged one."""
        parts = value.split(".")
        if len(parts) != 4:
            return None
        sid, issued, seen, mac = parts
        if not (_SID.fullmatch(sid) and _MOMENT.fullmatch(issued) and _MOMENT.fullmatch(seen)):
            return None
        expected = _mac(self._secret, _SESSION_LABEL, f"{sid}.{issued}.{seen}")
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        return Session(sid, int(issued), int(seen))

    def genuine(self, request: web.Request) -> Session | None:
        """This browser's session if its cookie is ours, whether or not it has ended."""
        return self.verify(request.cookies.get(self.cookie_name, ""))  # equivalent mutant: "XXXX", as malformed

    def read(self, request: web.Request) -> Session | None:
        """This browser's session if its cookie is ours and the session has not ended."""
        session = self.genuine(request)
        return session if session is not None and self.live(session) else None

    def set(self, response: web.StreamResponse, session: Session) -> None:
        """(Re-)issue the cookie; the browser keeps it until the session's absolute end."""
        response.set_cookie(
            self.cookie_name,
            self.cookie_value(session),
            max_age=max(0, session.issued_at + self.ttl_seconds - self._now()),
            path="/",  # equivalent mutant: without it, aiohttp's default path is "/" too
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, response: web.StreamResponse) -> None:
        # equivalent mutant: dropping path="/" leaves aiohttp's default, "/"
        response.set_cookie(
            self.cookie_name, "", max_age=0, path="/", secure=self.secure, httponly=True, samesite="Lax"
        )

    def csrf_token(self, sid: str) -> str:
        return _mac(self._secret, _CSRF_LABEL, sid)

    def csrf_ok(self, sid: str, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf_token(sid).encode())
