"""The question a user asked just as their sign-in had expired, answered once they have signed in again.

SAML mode has no refresh token: when a sign-in's credentials run out, the next question gets a one-click
"sign in again" link instead of an answer. That question is kept here, sealed (it is the user's own words),
for the link's lifetime, and handed out once (GETDEL) when the sign-in finishes, so the adapter answers it
in the place it was asked. One per user: a later question replaces an earlier one (the newest is the one they
are waiting for). `address` is the adapter's own note of where to answer (opaque to the core).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bot.cipher import CipherError, TokenCipher
from bot.model import ChatIdentity, IncomingMessage

PREFIX = "qbot:pending-question:"


@dataclass(frozen=True)
class PendingQuestion:
    message: IncomingMessage  # without files (they are not kept) and without delivery ids (it is answered anew)
    address: str = ""  # the adapter's note of where to answer it, out of turn


def _key(identity: ChatIdentity) -> str:
    return PREFIX + hashlib.sha256(identity.key.encode()).hexdigest()[:40]


def _to_dict(pending: PendingQuestion) -> dict[str, Any]:
    message = pending.message
    return {
        "i": [message.identity.platform, message.identity.tenant, message.identity.user],
        "x": message.text,
        "c": message.channel,
        "t": message.thread,
        "m": message.message_id,
        "e": message.profile_email,
        "s": message.shared,
        "a": pending.address,
    }


def _from_dict(data: dict[str, Any]) -> PendingQuestion:
    platform, tenant, user = (str(part) for part in data["i"])
    message = IncomingMessage(
        identity=ChatIdentity(platform, tenant, user),
        text=str(data["x"]),
        channel=str(data["c"]),
        thread=str(data["t"]),
        message_id=str(data["m"]),
        profile_email=None if data["e"] is None else str(data["e"]),
        shared=bool(data["s"]),
    )
    return PendingQuestion(message, str(data["a"]))


class PendingQuestions:
    def __init__(self, redis: Redis, cipher: TokenCipher, keep_seconds: int) -> None:
        self._redis = redis
        self._cipher = cipher
        self.keep_seconds = keep_seconds

    async def keep(self, message: IncomingMessage, address: str = "") -> None:
        """Keep the question (its words and where it was asked, not its files) until the user is back."""
        key = _key(message.identity)
        blob = self._cipher.seal(key, _to_dict(PendingQuestion(message, address)))
        await self._redis.set(key, blob, ex=self.keep_seconds)

    async def take(self, identity: ChatIdentity) -> PendingQuestion | None:
        """The kept question, once: None when there is none, it was taken, or the link's lifetime passed."""
        key = _key(identity)
        blob = await self._redis.getdel(key)
        if blob is None:
            return None
        try:  # the blob is sealed to its key: one copied under another user's key does not open
            return _from_dict(self._cipher.open(key, blob))
        except (CipherError, KeyError, TypeError, ValueError):
            return None
