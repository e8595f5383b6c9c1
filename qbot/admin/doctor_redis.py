"""`qbot doctor`'s Redis checks: it answers (and keeps what it is told), it cannot silently evict a link, the
configured token keys open the links stored in it, and every channel policy stored in it parses."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import redis

from adapters.checks import FAIL, OK, SKIP, WARN, Check
from bot.channel_policy import KEY as CHANNEL_POLICIES
from bot.channel_policy import ChannelPolicy, ChannelPolicyError, channel_spec, check_attribute_filter, read_entry
from bot.cipher import CipherError, TokenCipher
from bot.config import parse_token_keys
from bot.errors import ConfigError

_SAMPLE_LINKS = 50
_SCAN_ROUNDS = 20
_CHANNELS_SHOWN = 10


class RedisChecks:
    """The client the first check connects is used by the others; `close` it when done."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._redis: redis.Redis | None = None

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    def redis(self) -> Check:
        url = self.env.get("QBOT_REDIS_URL") or ""
        if not url:
            return Check(
                "Redis", WARN, "QBOT_REDIS_URL is unset: qbot serve would start an embedded Redis that forgets "
                "every link on restart", "set QBOT_REDIS_URL to a persistent Redis (appendonly yes)",
            )
        try:
            client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        except ValueError as err:
            return Check("Redis", FAIL, f"QBOT_REDIS_URL is not a Redis URL ({err})",
                         "use redis://[:password@]host:port/db (rediss:// for TLS)")
        where = "{host}:{port}".format_map(client.connection_pool.connection_kwargs)
        try:
            client.ping()
        except (redis.RedisError, OSError) as err:
            client.close()
            return Check("Redis", FAIL, f"{where} does not answer ({type(err).__name__}: {err})",
                         "check QBOT_REDIS_URL (host, port, password, rediss:// for TLS) and the network path")
        self._redis = client
        try:
            persistence: dict[str, Any] = dict(client.info("persistence"))
        except redis.RedisError:  # managed Redis may refuse INFO: nothing to say then
            persistence = {}
        if persistence and not persistence.get("aof_enabled"):
            return Check(
                "Redis", WARN, f"{where} answers, but append-only persistence is off: after a restart, refresh "
                "tokens rotated since the last snapshot are lost and those users must link again",
                "appendonly yes (or a replicated managed Redis)",
            )
        return Check("Redis", OK, f"{where} answers")

    def redis_memory(self) -> Check:
        """Linked accounts (`qbot:vault:` keys of chat users) have no TTL: a policy that evicts any key under memory
        pressure silently unlinks users. volatile-* policies evict only keys with a TTL (login states, cached
        credentials, web console sessions): those cost a user a new sign-in at most."""
        if self._redis is None:
            return Check("Redis memory", SKIP, "needs a reachable Redis")
        fix = "set maxmemory-policy noeviction (or volatile-lru) and give Redis enough maxmemory"
        policy, limit = self._memory_policy()
        if policy is None:
            return Check("Redis memory", WARN, "the eviction policy cannot be read here (CONFIG and INFO are refused, "
                         "as on some managed Redis services)", "make sure it is noeviction or volatile-*: " + fix)
        limited = f", maxmemory {limit} bytes" if limit else ", no maxmemory limit"
        if policy.startswith("allkeys-"):
            return Check("Redis memory", FAIL, f"maxmemory-policy {policy} can evict any key, linked accounts "
                         "included: when memory runs short, users are silently unlinked", fix)
        if policy == "noeviction" or policy.startswith("volatile-"):
            evicts = "nothing is evicted" if policy == "noeviction" else "only keys with a TTL can be evicted"
            return Check("Redis memory", OK, f"maxmemory-policy {policy}{limited}: {evicts}, never a chat link")
        return Check("Redis memory", WARN, f"unknown maxmemory-policy {policy!r}", fix)

    def _memory_policy(self) -> tuple[str | None, int]:
        """maxmemory-policy and maxmemory from CONFIG GET, else from INFO memory; (None, 0) when neither answers."""
        assert self._redis is not None
        try:
            config = {_text(k): _text(v) for k, v in self._redis.config_get("maxmemory*").items()}
            return config["maxmemory-policy"], int(config.get("maxmemory") or 0)
        except (redis.RedisError, KeyError, ValueError):
            pass
        try:
            memory = self._redis.info("memory")
        except redis.RedisError:
            return None, 0
        policy = memory.get("maxmemory_policy")
        return (_text(policy) if policy else None), int(memory.get("maxmemory") or 0)

    def token_keys(self) -> Check:
        raw = self.env.get("QBOT_TOKEN_KEYS") or ""
        try:
            keys = parse_token_keys(raw)
        except ConfigError as err:
            return Check("token keys", FAIL, str(err), "make a key with `qbot keygen`; keep old keys after the new one")
        if not keys:
            return Check("token keys", FAIL, "QBOT_TOKEN_KEYS is unset", "set it to the output of `qbot keygen`")
        detail = f"{len(keys)} key(s), well-formed"
        if self._redis is None:
            return Check("token keys", OK, detail)
        cipher, first = TokenCipher(keys), TokenCipher(keys[:1])
        sampled = unreadable = older = 0
        for key in self._vault_keys():
            blob = self._redis.get(key)
            if blob is None:
                continue
            sampled += 1
            context = key.decode() if isinstance(key, bytes) else str(key)
            try:
                cipher.open(context, blob)
            except CipherError:
                unreadable += 1
                continue
            try:
                first.open(context, blob)
            except CipherError:
                older += 1
        if unreadable:
            return Check(
                "token keys", FAIL, f"{unreadable} of {sampled} stored links sampled do not open with these keys "
                "(those users would have to link again)",
                "put the key they were sealed with back into QBOT_TOKEN_KEYS, after the new one",
            )
        if older:  # dropping the older keys now would unlink these users: `qbot admin rekey` first
            return Check("token keys", WARN, f"{older} of {sampled} stored links sampled are sealed under an older key",
                         "run `qbot admin rekey` before dropping any key from QBOT_TOKEN_KEYS")
        return Check("token keys", OK, detail + (f"; they open all {sampled} stored links sampled" if sampled else ""))

    def channel_policies(self) -> Check:
        """Lists the channels an administrator gave a policy; fails on one the bot could not read (a question in
        that channel would fail rather than lose the channel's restriction)."""
        if self._redis is None:
            return Check("channel policies", SKIP, "needs a reachable Redis")
        policies: list[tuple[str, ChannelPolicy]] = []
        broken: list[tuple[str, str]] = []
        for field, raw in sorted(self._redis.hgetall(CHANNEL_POLICIES).items()):
            spec = channel_spec(field)
            try:
                spec, policy = read_entry(field, raw)
                if policy.attribute_filter is not None:  # ChatSync would refuse it: every question there fails
                    check_attribute_filter(policy.attribute_filter)
            except ChannelPolicyError as err:
                problem = str(err)
                broken.append((spec, problem if spec in problem else f"the stored policy of {spec}: {problem}"))
            else:
                policies.append((spec, policy))
        if broken:
            spec, problem = broken[0]
            return Check("channel policies", FAIL, f"{len(broken)} of {len(broken) + len(policies)} stored channel "
                         f"policies do not parse; questions in those channels fail. First: {problem}",
                         f"qbot admin channels unset {spec}, then set it again")
        if not policies:
            return Check("channel policies", OK, "no channel has a policy: every channel follows "
                         "QBOT_CHANNEL_REPLY_MODE")
        shown = "; ".join(f"{spec} ({_summary(policy)})" for spec, policy in policies[:_CHANNELS_SHOWN])
        more = len(policies) - _CHANNELS_SHOWN
        rest = f"; and {more} more (qbot admin channels list)" if more > 0 else ""
        return Check("channel policies", OK, f"{len(policies)} channel(s) with a policy: {shown}{rest}")

    def _vault_keys(self) -> Iterator[bytes | str]:
        """Up to _SAMPLE_LINKS stored links, from a bounded number of SCAN rounds (a big keyspace stays cheap)."""
        assert self._redis is not None
        cursor, found = 0, 0
        for _ in range(_SCAN_ROUNDS):
            cursor, keys = self._redis.scan(cursor, match="qbot:vault:*", count=1000)
            for key in keys:
                yield key
                found += 1
                if found >= _SAMPLE_LINKS:
                    return
            if cursor == 0:
                return


def _summary(policy: ChannelPolicy) -> str:
    parts = [f"reply {policy.reply}" if policy.reply else "reply default"]
    if policy.chat_mode:
        parts.append(f"{policy.chat_mode} ({policy.plugin})" if policy.plugin else policy.chat_mode)
    if policy.attribute_filter is not None:
        parts.append("attribute filter")
    return ", ".join(parts)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
