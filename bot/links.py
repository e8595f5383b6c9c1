"""One-time link tokens (`qlink`) and the OIDC login state (`/auth/start` or `/web/login` -> `/auth/callback`).

Link tokens are random single-use secrets that travel through chat and browsers; Redis never holds them, only
`sha256(token)` as the key, and the record under it is sealed with the `TokenCipher` bound to that key, so
neither a copy of the database yields a usable link nor can anyone who can write to Redis mint one (a
hand-written record does not open). Redeeming is one `GETDEL`: of any number of concurrent consumers exactly
one gets the record, and nothing can be used twice. Records expire (Redis TTL).

Login state is stored nowhere on our side until the IdP sends the user back: it (the pending link, the nonce,
the PKCE `code_verifier` or, in SAML mode, the AuthnRequest ID, its expiry) is sealed into a cookie of the
visitor's own browser, bound to the OIDC `state` (the seal's context is a hash of it) and opened only with
that `state`, before its expiry. So anonymous traffic cannot grow Redis, a login finishes only in the browser
that began it, and a cookie moved to another login does not open. Single use: after the IdP really redeemed
the code, the state is marked spent in Redis (`SET NX`, expiring with the state), so a replayed callback
cannot finish twice.

Pending links per identity are not capped: running `qlink` again leaves older unused links valid until they
expire. They are single-use, short-lived, delivered privately and bound to the same identity, so an older
one grants nothing a newer one does not, and a user clicking the first of two messages is not refused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from bot.cipher import CipherError, TokenCipher
from bot.errors import LinkTokenInvalid, LoginStateInvalid
from bot.model import ChatIdentity

PREFIX = "qbot:"

# secrets.token_urlsafe(32) gives 43 characters; accept a sane range of URL-safe base64, nothing else.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,128}")
# A sealed login state is a Fernet token (URL-safe base64); a cookie is at most ~4 KB anyway.
_SEALED_SHAPE = re.compile(r"[A-Za-z0-9_=-]{1,4096}")


@dataclass(frozen=True)
class PendingLink:
    """A link in progress: who asked for it, and what the adapter knows about them."""

    identity: ChatIdentity
    profile_email: str | None = None  # the chat profile's email, for QBOT_REQUIRE_EMAIL_MATCH
    return_to: str | None = None  # same-origin path the browser goes to after linking (web console)
    created_at: float = field(default_factory=time.time)
    expires_in: int | None = None  # lifetime of the resulting link in seconds (a web session); None: no end


@dataclass(frozen=True)
class LoginState:
    """What `/auth/callback` (or, in SAML mode, `/auth/saml/acs`) needs to finish the login that `/auth/start`
    (or `/web/login`) began."""

    pending: PendingLink
    nonce: str
    code_verifier: str = field(repr=False)
    expires_at: float = 0.0  # after this, the sealed state no longer opens
    saml_request_id: str = ""  # SAML mode: the ID of the AuthnRequest the response must answer (InResponseTo)


def _pending_to_dict(pending: PendingLink) -> dict[str, Any]:
    ident = pending.identity
    return {
        "p": ident.platform,
        "n": ident.tenant,
        "u": ident.user,
        "e": pending.profile_email,
        "r": pending.return_to,
        "t": pending.created_at,
        "x": pending.expires_in,
    }


def _pending_from_dict(data: dict[str, Any]) -> PendingLink:
    email, return_to, expires_in = data.get("e"), data.get("r"), data.get("x")
    return PendingLink(
        identity=ChatIdentity(platform=str(data["p"]), tenant=str(data["n"]), user=str(data["u"])),
        profile_email=None if email is None else str(email),
        return_to=None if return_to is None else str(return_to),
        created_at=float(data["t"]),
        expires_in=None if expires_in is None else int(expires_in),
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _well_formed(secret: object) -> bool:
    return isinstance(secret, str) and _TOKEN_SHAPE.fullmatch(secret) is not None


class LinkTokens:
    """Single-use link tokens: `create` returns one for the URL; `consume` redeems it once, atomically."""

    def __init__(self, redis: Redis, ttl_seconds: int, cipher: TokenCipher) -> None:
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        self._redis = redis
        self._ttl = ttl_seconds
        self._cipher = cipher

    @staticmethod
    def key_for(token: str) -> str:
        return f"{PREFIX}link:{_digest(token)}"

    async def create(self, pending: PendingLink) -> str:
        """A new random token (256 bits) bound to `pending`, valid for `ttl_seconds`, usable once."""
        token = secrets.token_urlsafe(32)  # equivalent mutant: token_urlsafe(None) draws 32 bytes too
        key = self.key_for(token)
        await self._redis.set(key, self._cipher.seal(key, _pending_to_dict(pending)), ex=self._ttl)
        return token

    async def consume(self, token: str) -> PendingLink:
        """Redeem `token` (GETDEL: exactly one of concurrent callers wins). `LinkTokenInvalid` if it is
        malformed, unknown, expired, already used, or its record was not sealed by us for this token."""
        if not _well_formed(token):
            raise LinkTokenInvalid(detail="malformed link token")
        key = self.key_for(token)
        raw = await self._redis.getdel(key)
        if raw is None:
            raise LinkTokenInvalid(detail="unknown, expired or used link token")
        try:
            return _pending_from_dict(self._cipher.open(key, raw))
        except (CipherError, KeyError, TypeError, ValueError):
            raise LinkTokenInvalid(detail="link record does not open (not sealed by us, or key gone)") from None


class LoginStates:
    """OIDC `state` <-> a `LoginState` sealed for the visitor's cookie; Redis only remembers spent states."""

    def __init__(
        self, redis: Redis, cipher: TokenCipher, ttl_seconds: int = 600, *, clock: Callable[[], float] = time.time
    ) -> None:
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        self._redis = redis
        self._cipher = cipher
        self._ttl = ttl_seconds
        self._clock = clock

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    @staticmethod
    def key_for(state: str) -> str:
        """The seal's context, and the key that marks the state spent."""
        return f"{PREFIX}login:{_digest(state)}"

    def seal(
        self, pending: PendingLink, nonce: str, code_verifier: str, *, saml_request_id: str = ""
    ) -> tuple[str, str]:
        """A new random `state` (256 bits; SAML's RelayState) and the sealed login state for the browser's
        cookie, valid for `ttl_seconds`. Nothing is stored."""
        state = secrets.token_urlsafe(32)  # equivalent mutant: token_urlsafe(None) draws 32 bytes too
        payload = {
            "l": _pending_to_dict(pending),
            "n": nonce,
            "v": code_verifier,
            "x": self._clock() + self._ttl,
            "q": saml_request_id,
        }
        # equivalent mutant: decode("ASCII") is the same codec
        return state, self._cipher.seal(self.key_for(state), payload).decode("ascii")

    def open(self, state: str, sealed: str) -> LoginState:
        """The login state sealed for exactly `state`. `LoginStateInvalid` if either is malformed, the seal is
        tampered, made for another state or under no configured key, or has expired."""
        if not _well_formed(state):
            raise LoginStateInvalid(detail="malformed state")
        if not isinstance(sealed, str) or not _SEALED_SHAPE.fullmatch(sealed):
            raise LoginStateInvalid(detail="malformed login cookie")
        try:
            data = self._cipher.open(self.key_for(state), sealed)
            login = LoginState(
                pending=_pending_from_dict(data["l"]),
                nonce=str(data["n"]),
                code_verifier=str(data["v"]),
                expires_at=float(data["x"]),
                saml_request_id=str(data.get("q") or ""),
            )
        except (CipherError, KeyError, TypeError, ValueError):
            raise LoginStateInvalid(detail="login cookie does not open (tampered, other state, or key gone)") from None
        if self._clock() >= login.expires_at:
            raise LoginStateInvalid(detail="login state expired")
        return login

    async def spend(self, state: str, login: LoginState) -> None:
        """Mark `state` used, once (SET NX, kept until the state would expire anyway); `LoginStateInvalid` when
        it already was: a replayed callback."""
        # not killed: a floor of 1001 ms instead of 1000 is only visible by timing Redis's PTTL to the millisecond
        remaining_ms = max(1000, int((login.expires_at - self._clock()) * 1000))
        # equivalent mutant: the mark's value (b"1") is never read, only whether it exists
        if not await self._redis.set(self.key_for(state), b"1", nx=True, px=remaining_ms):
            raise LoginStateInvalid(detail="login state replayed")
