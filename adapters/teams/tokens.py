"""Verification of the Bot Framework token on every activity Teams posts to `/api/messages`.

In two steps, so that nothing of an unauthenticated body is parsed: `authenticate` checks the token alone
(signature, issuer, audience, lifetime) before the route reads the body; `bind` then checks that the token was
issued for the activity's channel and serviceUrl.

Done here rather than by the SDK's middleware, which turns a malformed token into a 500, guards every route
of the server and does not check the issuer. What is guaranteed for an accepted token:
- signed (RS256) by a key published at the configured OpenID metadata's `jwks_uri`, and, where the key lists
  endorsements, endorsed for the activity's channel;
- issued by `https://api.botframework.com`, for audience = the app id, not expired (5 minutes of clock skew);
- its `serviceurl` claim names the activity's serviceUrl, so a token cannot send our replies elsewhere.
Every failure is a `TokenRejected` (the route answers 401): never an unhandled exception.

Keys are cached for a day; a token signed with an unknown key id refetches them, at most once a minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

log = logging.getLogger(__name__)

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
CLOCK_SKEW_SECONDS = 300
KEYS_MAX_AGE_SECONDS = 24 * 3600
UNKNOWN_KEY_REFETCH_SECONDS = 60
FAILED_FETCH_RETRY_SECONDS = 5
MAX_TOKEN_LENGTH = 16 * 1024


class TokenRejected(Exception):
    """The request is not from Bot Framework: `reason` is for logs (it never holds the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Key:
    key: Any
    endorsements: tuple[str, ...] | None


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose signature, issuer, audience and lifetime are checked; not yet bound to an activity."""

    claims: dict[str, Any]
    endorsements: tuple[str, ...] | None


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


class BotFrameworkTokens:
    def __init__(
        self,
        app_id: str,
        metadata_url: str,
        *,
        issuers: tuple[str, ...] = (BOT_FRAMEWORK_ISSUER,),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` (seconds, monotonic) times the key cache: tests move it instead of waiting out a minute."""
        self.app_id = app_id
        self.metadata_url = metadata_url
        self.issuers = issuers
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def verify(self, authorization: str | None, *, channel_id: str, service_url: str) -> dict[str, Any]:
        """The token's claims, if `authorization` is a valid Bearer token for this app and activity."""
        return self.bind(await self.authenticate(authorization), channel_id=channel_id, service_url=service_url)

    async def authenticate(self, authorization: str | None) -> VerifiedToken:
        """Step one, before the body is even parsed: a Bearer token signed by Bot Framework for this app."""
        # equivalent mutant: (authorization or "XXXX") is refused the same way, "XXXX" not being "bearer"
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected("no bearer token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenRejected("malformed token") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token names no signing key")
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.app_id,
                issuer=list(self.issuers),
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise TokenRejected(f"invalid token: {type(exc).__name__}") from None
        return VerifiedToken(claims, key.endorsements)

    @staticmethod
    def bind(token: VerifiedToken, *, channel_id: str, service_url: str) -> dict[str, Any]:
        """Step two, once the activity is read: the token was issued for its channel and its serviceUrl."""
        if token.endorsements is not None and channel_id not in token.endorsements:
            raise TokenRejected(f"signing key is not endorsed for channel {channel_id!r}")
        claimed_url = token.claims.get("serviceurl")
        if not isinstance(claimed_url, str) or not _same_url(claimed_url, service_url):
            raise TokenRejected("token's serviceurl does not match the activity's")
        return token.claims

    async def _key(self, kid: str) -> _Key:
        # equivalent mutants: _refresh_due(None) in either check; the other check, with `kid`, still decides
        if self._refresh_due(kid):
            async with self._lock:
                if self._refresh_due(kid):
                    await self._refresh()
        found = self._keys.get(kid)
        if found is None:
            raise TokenRejected("token signed by an unknown key")
        return found

    def _refresh_due(self, kid: str) -> bool:
        if self._fetched_at is None:
            return True
        since = self._clock() - self._fetched_at
        return since > KEYS_MAX_AGE_SECONDS or (kid not in self._keys and since > UNKNOWN_KEY_REFETCH_SECONDS)

    async def _refresh(self) -> None:
        """Fetch metadata then keys; on failure keep the old keys (and retry no sooner than a minute)."""
        self._fetched_at = self._clock()
        try:
            metadata = await self._get_json(self.metadata_url)
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise ValueError("metadata has no jwks_uri")
            self._keys = self._parse_keys(await self._get_json(jwks_uri))
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.error("could not load Bot Framework signing keys from %s: %s", self.metadata_url, exc)
            if not self._keys:  # nothing to verify with yet: let a request try again soon
                self._fetched_at -= UNKNOWN_KEY_REFETCH_SECONDS - FAILED_FETCH_RETRY_SECONDS

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        if self._http is None:
            # not killed: another timeout (or aiohttp's 5-minute default) only shows by waiting it out in a test
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._http.get(url) as response:
            if response.status != 200:
                raise ValueError(f"{url} answered {response.status}")
            body = json.loads(await response.text())
        if not isinstance(body, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return body

    @staticmethod
    def _parse_keys(jwks: Mapping[str, Any]) -> dict[str, _Key]:
        keys: dict[str, _Key] = {}
        for entry in jwks.get("keys") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            try:
                public = jwt.PyJWK.from_dict(entry, algorithm="RS256").key
            except (jwt.PyJWTError, ValueError, KeyError, TypeError):
                continue
            endorsements = entry.get("endorsements")
            keys[entry["kid"]] = _Key(
                public, tuple(str(e) for e in endorsements) if isinstance(endorsements, list) else None
            )
        if not keys:
            raise ValueError("no usable RSA keys in the JWKS")
        return keys
