"""Which Amazon Q conversation a chat thread continues, per asking identity.

Keys (`<id>` is `ChatIdentity.key`):
- `qbot:conv:<id>` — a hash, one field per (channel, thread) of that identity, value
  `[conversation_id, parent_message_id, saved_at_ms]`; the hash expires `ttl_seconds` after the identity's last
  use, and each entry is treated as gone `ttl_seconds` after it was last saved. At most `max_threads` entries
  are kept (expired, then least recently saved, go first), so per-identity memory is bounded and no
  operation scans the database.
- `qbot:owner:<conversation_id>` — the identity key that owns a conversation (for refusing feedback from
  someone else), expiring `ttl_seconds` after the conversation's last save.

- `qbot:turn:<client token>` — the conversation a turn was asked in, pinned for a day, so a redelivered
  message repeats the *same* ChatSync request and Q's clientToken idempotency returns the same answer.

The identity is part of the key, so two people in one thread never share a conversation.
"""

from __future__ import annotations

import json
import time
from functools import partial
from urllib.parse import quote

from redis.asyncio import Redis

from bot.model import ChatIdentity, ConversationRef
from bot.redis_lock import RedisLock

PREFIX = "qbot:"
TURN_PIN_SECONDS = 24 * 3600
MAX_CONVERSATION_ID_LENGTH = 256  # Q's ids are 36 characters; anything much longer is not one

# Delete each KEYS[i] only if it still names ARGV[1] as owner.
_DELETE_IF_OWNED = """
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    removed = removed + redis.call('DEL', key)
  end
end
return removed
"""


# One round trip to begin a turn: the thread's conversation (refreshing the identity's expiry) pinned to the
# turn's client token, or the pin an earlier delivery of the same message left. KEYS: the identity's threads
# hash, the turn's pin. ARGV: the thread's field, ttl seconds, pin seconds, now in ms.
_BEGIN_TURN = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local pinned = redis.call('GET', KEYS[2])
if pinned then return pinned end
local value = 'null'
if raw then
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' and type(entry[1]) == 'string' and type(entry[2]) == 'string'
     and tonumber(entry[3]) and tonumber(ARGV[4]) - tonumber(entry[3]) <= tonumber(ARGV[2]) * 1000 then
    value = cjson.encode({entry[1], entry[2]})
  end
end
redis.call('SET', KEYS[2], value, 'EX', ARGV[3])
return value
"""


# One round trip to end a turn: the thread's conversation saved (with its owner), and the turn's lock let go if it
# is still ours, together, so the thread's next turn never starts before this one's answer is its parent. KEYS:
# the identity's threads hash, the conversation's owner key, the lock (or none). ARGV: the thread's field, the
# entry, ttl seconds, the identity key, the lock's token. Returns the number of threads kept.
_END_TURN = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[3])
if KEYS[3] and redis.call('GET', KEYS[3]) == ARGV[5] then
  redis.call('DEL', KEYS[3])
end
return redis.call('HLEN', KEYS[1])
"""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _field(channel: str, thread: str) -> str:
    return f"{quote(channel, safe='')}:{quote(thread, safe='')}"


def _parse(raw: bytes | str) -> tuple[str, str, float] | None:
    try:
        conversation_id, parent_message_id, saved_at_ms = json.loads(raw)
        return str(conversation_id), str(parent_message_id), float(saved_at_ms) / 1000
    except (TypeError, ValueError):
        return None


class Conversations:
    """(identity, channel, thread) -> `ConversationRef`, expiring after `ttl_seconds` without use."""

    def __init__(self, redis: Redis, ttl_seconds: int, *, max_threads: int = 100) -> None:
        if ttl_seconds < 1 or max_threads < 1:
            raise ValueError("ttl_seconds and max_threads must be at least 1")
        self._redis = redis
        self._ttl = ttl_seconds
        self._max = max_threads
        self._delete_if_owned = redis.register_script(_DELETE_IF_OWNED)
        self._begin_turn = redis.register_script(_BEGIN_TURN)
        self._end_turn = redis.register_script(_END_TURN)

    @staticmethod
    def threads_key(identity: ChatIdentity) -> str:
        return f"{PREFIX}conv:{identity.key}"

    @staticmethod
    def owner_key(conversation_id: str) -> str:
        return f"{PREFIX}owner:{conversation_id}"

    async def get(self, identity: ChatIdentity, channel: str, thread: str) -> ConversationRef | None:
        """The conversation this identity continues in this thread, or None; refreshes its expiry."""
        key = self.threads_key(identity)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(key, _field(channel, thread))
            pipe.expire(key, self._ttl)
            raw, _ = await pipe.execute()
        entry = None if raw is None else _parse(raw)
        if entry is None or time.time() - entry[2] > self._ttl:
            return None
        return ConversationRef(entry[0], entry[1])

    async def save(
        self, identity: ChatIdentity, channel: str, thread: str, conversation_id: str, parent_message_id: str,
        *, turn: RedisLock | None = None,
    ) -> None:
        """Record the thread's conversation and latest system message, and that `identity` owns it; with `turn`,
        the thread's lock is let go in the same atomic step (the turn ends here)."""
        key = self.threads_key(identity)
        value = json.dumps([conversation_id, parent_message_id, int(time.time() * 1000)], separators=(",", ":"))
        args: list[str | int] = [_field(channel, thread), value, self._ttl, identity.key]
        end = partial(
            self._end_turn,
            keys=[key, self.owner_key(conversation_id)] + ([turn.key] if turn else []),
            args=args + ([turn.token] if turn else []),
        )
        count = await (turn.let_go_in(end) if turn else end())
        if int(count) > self._max:
            await self._prune(key)

    async def _prune(self, key: str) -> None:
        """Drop expired entries, then the least recently saved, down to 3/4 of the cap (amortised)."""
        entries = await self._redis.hgetall(key)
        now = time.time()
        ranked: list[tuple[float, bytes | str]] = []
        stale: list[bytes | str] = []
        for name, raw in entries.items():
            entry = _parse(raw)
            if entry is None or now - entry[2] > self._ttl:
                stale.append(name)
            else:
                ranked.append((entry[2], name))
        ranked.sort(key=lambda item: item[0])
        keep = max(1, self._max - self._max // 4)
        stale.extend(name for _, name in ranked[: max(0, len(ranked) - keep)])
        if stale:
            await self._redis.hdel(key, *stale)

    async def forget(self, identity: ChatIdentity, channel: str, thread: str) -> str | None:
        """Forget this thread's conversation (`qnew`); returns its id, or None if there was none. Its owner
        record stays, so feedback on answers already given still works."""
        key, name = self.threads_key(identity), _field(channel, thread)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, name)
            pipe.hdel(key, name)
            raw, _ = await pipe.execute()
        entry = None if raw is None else _parse(raw)
        return None if entry is None else entry[0]

    async def forget_all(self, identity: ChatIdentity) -> list[str]:
        """Remove every conversation mapping of `identity` and its owner records (`qunlink`); returns the
        conversation ids that were mapped."""
        key = self.threads_key(identity)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            entries, _ = await pipe.execute()
        ids: list[str] = []
        for raw in entries.values():
            entry = _parse(raw)
            if entry is not None and entry[0] not in ids:
                ids.append(entry[0])
        if ids:
            await self._delete_if_owned(keys=[self.owner_key(cid) for cid in ids], args=[identity.key])
        return ids

    async def begin_turn(
        self, identity: ChatIdentity, channel: str, thread: str, client_token: str
    ) -> ConversationRef | None:
        """`get` and `pin_turn` in one atomic step: the conversation this turn is asked in (the thread's, the first
        time; the first delivery's pin for a redelivery), None for a new conversation."""
        raw = await self._begin_turn(
            keys=[self.threads_key(identity), f"{PREFIX}turn:{client_token}"],
            args=[_field(channel, thread), self._ttl, TURN_PIN_SECONDS, int(time.time() * 1000)],
        )
        pinned = json.loads(raw)
        return ConversationRef(str(pinned[0]), str(pinned[1])) if pinned else None

    async def pin_turn(self, client_token: str, current: ConversationRef | None) -> ConversationRef | None:
        """The conversation this turn is asked in: `current` the first time, the first answer's pin thereafter.

        Atomic (SET NX): of two deliveries of one message, both send identical ChatSync requests.
        """
        key = f"{PREFIX}turn:{client_token}"
        value = json.dumps([current.conversation_id, current.parent_message_id] if current else None)
        if await self._redis.set(key, value, nx=True, ex=TURN_PIN_SECONDS):
            return current
        raw = await self._redis.get(key)
        if raw is None:  # expired between the two calls: this delivery is the first again
            return current
        pinned = json.loads(raw)
        return ConversationRef(str(pinned[0]), str(pinned[1])) if pinned else None

    async def owner(self, conversation_id: str) -> str | None:
        """The identity key that owns `conversation_id`, or None if unknown or expired."""
        if not conversation_id or len(conversation_id) > MAX_CONVERSATION_ID_LENGTH:
            return None
        raw = await self._redis.get(self.owner_key(conversation_id))
        return None if raw is None else _text(raw)
