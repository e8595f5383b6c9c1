"""Answers given privately in a shared place, kept a day so their asker can share them in the thread.

An answer comes from the asker's documents, so in a channel only the asker sees it at first; "Share in thread"
is the asker's choice to show it to everyone there. The answer is kept sealed (it quotes those documents) under
its conversation and message ids, with the asker and the thread it belongs to, and is handed out once: a
double click cannot post it twice, and nobody but the asker can take it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bot.cipher import CipherError, TokenCipher
from bot.model import Answer, ChatIdentity, Source

PREFIX = "qbot:shareable:"
KEEP_SECONDS = 24 * 3600


@dataclass(frozen=True)
class KeptAnswer:
    owner: str  # the asker's ChatIdentity.key
    channel: str
    thread: str
    answer: Answer


def _key(conversation_id: str, message_id: str) -> str:
    return PREFIX + hashlib.sha256(f"{conversation_id}\0{message_id}".encode()).hexdigest()[:40]


def _to_dict(identity: ChatIdentity, channel: str, thread: str, answer: Answer) -> dict[str, Any]:
    return {
        "o": identity.key,
        "c": channel,
        "t": thread,
        "x": answer.text,
        "s": [[s.number, s.title, s.url, s.snippet] for s in answer.sources],
        "ci": answer.conversation_id,
        "mi": answer.message_id,
    }


def _from_dict(data: dict[str, Any]) -> KeptAnswer:
    answer = Answer(
        text=str(data["x"]),
        sources=tuple(Source(int(n), str(title), None if url is None else str(url), str(snippet))
                      for n, title, url, snippet in data["s"]),
        conversation_id=str(data["ci"]),
        message_id=str(data["mi"]),
    )
    return KeptAnswer(str(data["o"]), str(data["c"]), str(data["t"]), answer)


class PrivateAnswers:
    def __init__(self, redis: Redis, cipher: TokenCipher, keep_seconds: int = KEEP_SECONDS) -> None:
        self._redis = redis
        self._cipher = cipher
        self.keep_seconds = keep_seconds

    async def keep(self, identity: ChatIdentity, channel: str, thread: str, answer: Answer) -> None:
        """Keep a private answer (without the asker's file notes: they are nobody else's business)."""
        key = _key(answer.conversation_id, answer.message_id)
        blob = self._cipher.seal(key, _to_dict(identity, channel, thread, answer))
        await self._redis.set(key, blob, ex=self.keep_seconds)

    async def peek(self, conversation_id: str, message_id: str) -> KeptAnswer | None:
        """The kept answer, left in place (to check who may take it)."""
        key = _key(conversation_id, message_id)
        return await self._open(key, await self._redis.get(key))

    async def take(self, conversation_id: str, message_id: str) -> KeptAnswer | None:
        """The kept answer, once (GETDEL); None when it was never kept, already shared, or a day has passed."""
        key = _key(conversation_id, message_id)
        return await self._open(key, await self._redis.getdel(key))

    async def _open(self, key: str, blob: bytes | str | None) -> KeptAnswer | None:
        if blob is None:
            return None
        try:
            return _from_dict(self._cipher.open(key, blob))
        except (CipherError, KeyError, TypeError, ValueError):
            return None
