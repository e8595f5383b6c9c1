"""One-time link tokens (`qlink`) and the server-side OIDC login state (`/auth/start` -> `/auth/callback`).

Both are random single-use secrets that travel through browsers; Redis never holds them, only
`sha256(secret)` as the key, so a copy of the database yields no usable link or state. Consumption is one
`GETDEL`: of any number of concurrent consumers exactly one gets the value, and nothing can be used twice.
Both expire (Redis TTL). Login state also holds the PKCE `code_verifier`, so its value is sealed with the
`TokenCipher`, bound to its key.

Pending links per identity are not capped: running `qlink` again leaves older unused links valid until they
expire. They are single-use, short-lived, delivered privately and bound to the same identity, so an older
one grants nothing a newer one does not, and a user clicking the first of two messages is not refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from bot.cipher import CipherError, TokenCipher
from bot.errors import LinkTokenInvalid, LoginStateInvalid
from bot.model import ChatIdentity

PREFIX = "qbot:"

# secrets.token_urlsafe(32) gives 43 characters; accept a sane range of URL-safe base64, nothing else.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,128}")


@dataclass(frozen=True)
class PendingLink:
    """A link in progress: who asked for it, and what the adapter knows about them."""

    identity: ChatIdentity
    profile_email: str | None = None  # the chat profile's email, for QBOT_REQUIRE_EMAIL_MATCH
    return_to: str | None = None  # same-origin path the browser goes to after linking (web console)
    created_at: float = field(default_factory=time.time)
    browser_binding: str | None = None  # sha256 of a cookie secret: only that browser may open the link


@dataclass(frozen=True)
class LoginState:
    """What `/auth/callback` needs to finish the login that `/auth/start` began."""

    pending: PendingLink
    nonce: str
    code_verifier: str = field(repr=False)
    browser_binding: str = ""  # sha256 of the cookie /auth/start set: only that browser may finish the login


def _pending_to_dict(pending: PendingLink) -> dict[str, Any]:
    ident = pending.identity
    return {
        "p": ident.platform,
        "n": ident.tenant,
        "u": ident.user,
        "e": pending.profile_email,
        "r": pending.return_to,
        "t": pending.created_at,
        "b": pending.browser_binding,
    }


def _pending_from_dict(data: dict[str, Any]) -> PendingLink:
    email, return_to, binding = data.get("e"), data.get("r"), data.get("b")
    return PendingLink(
        identity=ChatIdentity(platform=str(data["p"]), tenant=str(data["n"]), user=str(data["u"])),
        profile_email=None if email is None else str(email),
        return_to=None if return_to is None else str(return_to),
        created_at=float(data["t"]),
        browser_binding=None if binding is None else str(binding),
    )


def browser_binding(secret: str) -> str:
    """What is stored of a browser-binding cookie: its sha256, never the cookie itself."""
    return _digest(secret)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _well_formed(secret: object) -> bool:
    return isinstance(secret, str) and _TOKEN_SHAPE.fullmatch(secret) is not None


class LinkTokens:
    """Single-use link tokens: `create` returns one for the URL; `consume` redeems it once, atomically."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        self._redis = redis
        self._ttl = ttl_seconds

    @staticmethod
    def key_for(token: str) -> str:
        return f"{PREFIX}link:{_digest(token)}"

    async def create(self, pending: PendingLink) -> str:
        """A new random token (256 bits) bound to `pending`, valid for `ttl_seconds`, usable once."""
        token = secrets.token_urlsafe(32)
        value = json.dumps(_pending_to_dict(pending), separators=(",", ":"), ensure_ascii=False)
        await self._redis.set(self.key_for(token), value, ex=self._ttl)
        return token

    async def consume(self, token: str) -> PendingLink:
        """Redeem `token` (GETDEL: exactly one of concurrent callers wins). `LinkTokenInvalid` if it is
        malformed, unknown, expired or already used."""
        if not _well_formed(token):
            raise LinkTokenInvalid(detail="malformed link token")
        raw = await self._redis.getdel(self.key_for(token))
        if raw is None:
            raise LinkTokenInvalid(detail="unknown, expired or used link token")
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            return _pending_from_dict(data)
        except (KeyError, TypeError, ValueError):
            raise LinkTokenInvalid(detail="unreadable link token record") from None


class LoginStates:
    """OIDC `state` -> sealed `LoginState`, single use, expiring; `consume` is atomic (GETDEL)."""

    def __init__(self, redis: Redis, cipher: TokenCipher, ttl_seconds: int = 600) -> None:
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        self._redis = redis
        self._cipher = cipher
        self._ttl = ttl_seconds

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    @staticmethod
    def key_for(state: str) -> str:
        return f"{PREFIX}login:{_digest(state)}"

    async def create(self, pending: PendingLink, nonce: str, code_verifier: str, binding: str = "") -> str:
        """A new random `state` (256 bits); its sealed record lives `ttl_seconds`, consumable once."""
        state = secrets.token_urlsafe(32)
        key = self.key_for(state)
        blob = self._cipher.seal(
            key, {"l": _pending_to_dict(pending), "n": nonce, "v": code_verifier, "b": binding}
        )
        await self._redis.set(key, blob, ex=self._ttl)
        return state

    async def consume(self, state: str) -> LoginState:
        """Redeem `state` once. `LoginStateInvalid` if malformed, unknown, expired, replayed or tampered."""
        if not _well_formed(state):
            raise LoginStateInvalid(detail="malformed state")
        key = self.key_for(state)
        raw = await self._redis.getdel(key)
        if raw is None:
            raise LoginStateInvalid(detail="unknown, expired or replayed state")
        try:
            data = self._cipher.open(key, raw)
            return LoginState(
                pending=_pending_from_dict(data["l"]),
                nonce=str(data["n"]),
                code_verifier=str(data["v"]),
                browser_binding=str(data.get("b") or ""),
            )
        except (CipherError, KeyError, TypeError, ValueError):
            raise LoginStateInvalid(detail="login state does not open (tampered, or key gone)") from None
