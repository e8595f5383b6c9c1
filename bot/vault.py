"""The linked accounts and their cached AWS credentials, sealed in Redis.

Keys (`<id>` is `ChatIdentity.key`):
- `qbot:vault:<id>` — the `LinkedAccount` (refresh token and who it belongs to); no expiry for chat links,
  the session's lifetime for web console links;
- `qbot:linkgen:<id>` — the link's generation: a random id every `store` draws anew and `delete` removes;
- `qbot:creds:<id>` — the cached `AwsCredentials`, expiring with the credentials, stamped with the generation
  of the link they were minted from.

Cached credentials belong to one link, not to a chat identity: they are written only while the link they
were minted from is still the current one (a compare-and-set on the generation, one Lua step), and read only
while it still is. So an unlink or relink that lands while STS is minting can never leave the previous
person's credentials answering for this chat account, in this process or any other.

Every value is sealed by `TokenCipher` with its own Redis key as context, so Redis holds no plaintext token or
secret, and a blob copied under another identity's key does not open. An entry that no configured key opens
(its key was dropped from `QBOT_TOKEN_KEYS`) reads as absent: the user is asked to link again. Nothing here
logs a token; the dataclasses keep secrets out of their `repr`.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from bot.cipher import CipherError, TokenCipher
from bot.model import AwsCredentials, ChatIdentity

log = logging.getLogger(__name__)

PREFIX = "qbot:"


@dataclass(frozen=True)
class LinkedAccount:
    """A chat identity's link to its IdP login: the refresh token and the verified claims at link time."""

    refresh_token: str = field(repr=False)
    email: str
    subject: str
    issuer: str
    linked_at: float = field(default_factory=time.time)
    groups: tuple[str, ...] = ()
    generation: str = ""  # set by `Vault.store`: which link this is; credentials are minted per generation


def _account_to_dict(account: LinkedAccount) -> dict[str, Any]:
    return {
        "r": account.refresh_token,
        "e": account.email,
        "s": account.subject,
        "i": account.issuer,
        "t": account.linked_at,
        "g": list(account.groups),
        "n": account.generation,
    }


def _account_from_dict(data: dict[str, Any]) -> LinkedAccount:
    return LinkedAccount(
        refresh_token=str(data["r"]),
        email=str(data["e"]),
        subject=str(data["s"]),
        issuer=str(data["i"]),
        linked_at=float(data["t"]),
        groups=tuple(str(g) for g in data.get("g", ())),
        generation=str(data.get("n") or ""),
    )


# Cache credentials only while the link they came from is current: the account exists and its generation
# (absent for a link stored before generations existed, which reads as "") is the one they were minted from.
_STORE_IF_CURRENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return 1
"""


class Vault:
    """Linked accounts and cached credentials per chat identity; every value sealed, keyed by identity."""

    def __init__(self, redis: Redis, cipher: TokenCipher) -> None:
        self._redis = redis
        self._cipher = cipher
        self._store_if_current = redis.register_script(_STORE_IF_CURRENT)

    @staticmethod
    def account_key(identity: ChatIdentity) -> str:
        return f"{PREFIX}vault:{identity.key}"

    @staticmethod
    def credentials_key(identity: ChatIdentity) -> str:
        return f"{PREFIX}creds:{identity.key}"

    @staticmethod
    def generation_key(identity: ChatIdentity) -> str:
        return f"{PREFIX}linkgen:{identity.key}"

    # -- linked accounts ---------------------------------------------------------------------------------

    async def store(
        self, identity: ChatIdentity, account: LinkedAccount, *, ttl_seconds: int | None = None
    ) -> LinkedAccount | None:
        """Link (or relink) `identity` as a new generation, expiring after `ttl_seconds` if given; returns the
        account it replaced (whose refresh token the caller should revoke), or None.

        One transaction: the account, its new generation, and the end of the cached credentials, which
        belonged to the previous login (maybe another IdP user)."""
        key = self.account_key(identity)
        generation = secrets.token_hex(16)
        stamped = LinkedAccount(
            refresh_token=account.refresh_token, email=account.email, subject=account.subject,
            issuer=account.issuer, linked_at=account.linked_at, groups=account.groups, generation=generation,
        )
        blob = self._cipher.seal(key, _account_to_dict(stamped))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, blob, ex=ttl_seconds, get=True)
            pipe.set(self.generation_key(identity), generation, ex=ttl_seconds)
            pipe.delete(self.credentials_key(identity))
            previous, _, _ = await pipe.execute()
        return self._open_account(identity, key, previous)

    async def touch(self, identity: ChatIdentity, ttl_seconds: int) -> bool:
        """Let the link expire `ttl_seconds` from now (a web session's idle lifetime); False when not linked."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.expire(self.account_key(identity), ttl_seconds)
            pipe.expire(self.generation_key(identity), ttl_seconds)
            extended, _ = await pipe.execute()
        return bool(extended)

    async def exists(self, identity: ChatIdentity) -> bool:
        return bool(await self._redis.exists(self.account_key(identity)))

    async def load(self, identity: ChatIdentity) -> LinkedAccount | None:
        """The linked account, or None when not linked or when the entry no configured key opens."""
        key = self.account_key(identity)
        return self._open_account(identity, key, await self._redis.get(key))

    async def replace_refresh_token(
        self, identity: ChatIdentity, refresh_token: str, *, previous: str | None = None
    ) -> bool:
        """Store the refresh token the IdP rotated in; the rest of the account is kept.

        Optimistic transaction (WATCH): never resurrects an account deleted meanwhile (returns False). With
        `previous` (the token that was redeemed), it is a compare-and-swap: if the stored token is no longer
        `previous` — a relink or another refresh got there first — nothing is written and it returns False.
        """
        key = self.account_key(identity)
        # equivalent mutants: transaction=False/None; the explicit pipe.multi() below makes it MULTI/EXEC anyway
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    account = self._open_account(identity, key, await pipe.get(key))
                    if account is None:
                        await pipe.unwatch()
                        return False
                    if previous is not None and account.refresh_token != previous:
                        await pipe.unwatch()
                        return False
                    updated = LinkedAccount(
                        refresh_token=refresh_token,
                        email=account.email,
                        subject=account.subject,
                        issuer=account.issuer,
                        linked_at=account.linked_at,
                        groups=account.groups,
                        generation=account.generation,
                    )
                    pipe.multi()
                    pipe.set(key, self._cipher.seal(key, _account_to_dict(updated)), keepttl=True)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue  # changed between read and write: read again

    async def delete(self, identity: ChatIdentity) -> LinkedAccount | None:
        """Unlink atomically: removes the account, its generation and its cached credentials; returns the
        removed account (so the caller can revoke its refresh token), or None if there was none it could open."""
        key = self.account_key(identity)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.getdel(key)
            pipe.delete(self.generation_key(identity), self.credentials_key(identity))
            raw, _ = await pipe.execute()
        return self._open_account(identity, key, raw)

    def _open_account(
        self, identity: ChatIdentity, key: str, raw: bytes | str | None
    ) -> LinkedAccount | None:
        if raw is None:
            return None
        try:
            return _account_from_dict(self._cipher.open(key, raw))
        except (CipherError, KeyError, TypeError, ValueError):
            log.warning(
                "vault entry for %s cannot be opened (key gone from QBOT_TOKEN_KEYS?); treated as not linked",
                identity.key,
            )
            return None

    # -- cached AWS credentials --------------------------------------------------------------------------

    async def store_credentials(self, identity: ChatIdentity, creds: AwsCredentials, *, generation: str) -> bool:
        """Cache sealed credentials minted from link `generation`, expiring with them. Atomic compare-and-set:
        False (nothing stored) when that link is no longer the current one, or the credentials have expired."""
        if creds.expiration.tzinfo is None:
            raise ValueError("AwsCredentials.expiration must be timezone-aware")
        ttl_ms = int(creds.seconds_left() * 1000)  # mutants `< 0`/`<= 1` below differ only within one ms of expiry
        key = self.credentials_key(identity)
        if ttl_ms <= 0:
            await self._redis.delete(key)
            return False
        payload = {
            "a": creds.access_key_id,
            "s": creds.secret_access_key,
            "t": creds.session_token,
            "x": creds.expiration.timestamp(),
            "g": generation,
        }
        stored = await self._store_if_current(
            keys=[self.account_key(identity), self.generation_key(identity), key],
            args=[generation, self._cipher.seal(key, payload), ttl_ms],
        )
        return bool(stored)

    async def load_credentials(self, identity: ChatIdentity) -> AwsCredentials | None:
        """The cached credentials, or None when absent, expired, unreadable, or minted from a link that is no
        longer the current one."""
        key = self.credentials_key(identity)
        raw, current = await self._redis.mget(key, self.generation_key(identity))
        if raw is None:
            return None
        try:
            data = self._cipher.open(key, raw)
            creds = AwsCredentials(
                access_key_id=str(data["a"]),
                secret_access_key=str(data["s"]),
                session_token=str(data["t"]),
                expiration=datetime.fromtimestamp(float(data["x"]), tz=UTC),
            )
            minted_from = str(data["g"])
        except (CipherError, KeyError, TypeError, ValueError):
            log.warning("cached credentials for %s cannot be opened; ignoring them", identity.key)
            return None
        if minted_from != _text(current):
            return None
        return creds if creds.seconds_left() > 0 else None

    async def delete_credentials(self, identity: ChatIdentity) -> None:
        """Forget the cached credentials (the next message fetches new ones)."""
        await self._redis.delete(self.credentials_key(identity))


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
