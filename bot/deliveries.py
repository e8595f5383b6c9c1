"""De-duplication of platform deliveries: Slack retries events, Teams may redeliver activities.

`first(platform, delivery_id)` is true exactly once per id across every bot process sharing Redis (SET NX),
for `ttl_seconds` — longer than any platform keeps retrying.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

PREFIX = "qbot:seen:"


class Deliveries:
    def __init__(self, redis: Redis, ttl_seconds: int = 3600) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def first(self, platform: str, delivery_id: str, *also_known_as: str) -> bool:
        """True when neither `delivery_id` nor any of its other names was seen before (one round trip).

        Every name is recorded either way, so a redelivery under any one of them is recognised.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in (delivery_id, *also_known_as):
                digest = hashlib.sha256(f"{platform}\0{name}".encode()).hexdigest()[:32]
                pipe.set(PREFIX + digest, b"1", nx=True, ex=self._ttl)
            return all(await pipe.execute())
