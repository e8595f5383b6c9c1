"""Small records an adapter keeps between requests (where to reach a user privately, a card to redraw).

Adapters never talk to Redis; they ask the core to `remember`/`recall`, which lands here. Each record is a
JSON object under `qbot:memo:<hash of platform and key>`, sealed with the token cipher (it may hold a piece of
an answer, which came from the user's documents), bound to its Redis key, bounded in size and always expiring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from bot.cipher import CipherError, TokenCipher

PREFIX = "qbot:memo:"
MAX_RECORD_BYTES = 64 * 1024


class AdapterMemory:
    def __init__(self, redis: Redis, cipher: TokenCipher) -> None:
        self._redis = redis
        self._cipher = cipher

    @staticmethod
    def _key(platform: str, key: str) -> str:
        return PREFIX + hashlib.sha256(f"{platform}\0{key}".encode()).hexdigest()[:40]

    async def put(self, platform: str, key: str, value: Mapping[str, Any], ttl_seconds: int) -> None:
        """Store `value` (a JSON object) for `ttl_seconds`; refuses records over `MAX_RECORD_BYTES`."""
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_RECORD_BYTES:
            raise ValueError(f"record larger than {MAX_RECORD_BYTES} bytes")
        redis_key = self._key(platform, key)
        await self._redis.set(redis_key, self._cipher.seal(redis_key, dict(value)), ex=ttl_seconds)

    async def get(self, platform: str, key: str) -> dict[str, Any] | None:
        """The stored object, or None when absent, expired or unreadable (sealed under a retired key)."""
        redis_key = self._key(platform, key)
        blob = await self._redis.get(redis_key)
        if blob is None:
            return None
        try:
            return self._cipher.open(redis_key, blob)
        except CipherError:
            return None

    async def delete(self, platform: str, key: str) -> None:
        await self._redis.delete(self._key(platform, key))
