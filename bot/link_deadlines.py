"""When links that end (web console sessions) end, so their refresh tokens are revoked when they do.

A Redis key's expiry is silent: the refresh token it held would simply vanish, still valid at the IdP. So a
link with a lifetime is kept `GRACE_SECONDS` longer in the vault than its session lasts, and its deadline is
recorded here (one sorted set: identity -> deadline). A periodic sweep claims the overdue identities and the
core unlinks them, revoking their refresh tokens at the IdP. Claiming is one Lua step (read and remove), so
of several bot processes sweeping at once each overdue link is ended by exactly one. The vault's own expiry
stays the backstop: a link no sweep reached within the grace is gone anyway, unrevoked.
"""

from __future__ import annotations

from urllib.parse import unquote

from redis.asyncio import Redis

from bot.model import ChatIdentity

KEY = "qbot:link-deadlines"
# How long a link outlives its deadline in the vault, so that a sweep still finds its refresh token to revoke.
GRACE_SECONDS = 3600

_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""


def _identity(member: bytes | str) -> ChatIdentity:
    """The inverse of `ChatIdentity.key` (percent-encoded parts joined by ':')."""
    text = member.decode() if isinstance(member, bytes) else member
    platform, tenant, user = (unquote(part) for part in text.split(":"))
    return ChatIdentity(platform, tenant, user)


class LinkDeadlines:
    """identity -> the moment its link ends; `claim_due` hands each overdue identity to one caller."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._claim_due = redis.register_script(_CLAIM_DUE)

    async def set(self, identity: ChatIdentity, deadline: float) -> None:
        """Record (or move later) the deadline of `identity`'s link; never moves it earlier."""
        await self._redis.zadd(KEY, {identity.key: deadline}, gt=True)

    async def claim_due(self, now: float, limit: int = 100) -> list[ChatIdentity]:
        """Up to `limit` identities whose deadline is at or before `now`, removed in the same step."""
        due = await self._claim_due(keys=[KEY], args=[now, limit])
        return [_identity(member) for member in due]
