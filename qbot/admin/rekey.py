"""`qbot admin rekey`: every value sealed in Redis re-sealed under the first key of `QBOT_TOKEN_KEYS`, so the older
keys can be dropped without anyone linking again.

What is sealed (`TokenCipher`, each blob bound to its Redis key): linked accounts (`qbot:vault:`), cached AWS
credentials (`qbot:creds:`), one-time links (`qbot:link:`), private answers (`qbot:shareable:`), pending questions
(`qbot:pending-question:`), the adapters' memory (`qbot:memo:`) — found by scanning every `qbot:*` string that
holds a Fernet token, so a kind added later is covered too — and the questions in the turn stream.

Guarantees:
- a value is replaced only by itself re-sealed (same Redis key as context, same payload, same TTL), and only if it
  is still the value that was read (compare-and-set in one Lua step): a refresh-token rotation the bot writes
  meanwhile is never overwritten with the older token;
- idempotent: a value already under the first key is left as it is, so a second run writes nothing;
- a value no configured key opens is left untouched and counted (the bot reads it as absent).
Stream entries cannot be rewritten in place: those still under an older key are counted; they are questions in
flight, answered (and deleted) within seconds, so a later run finds none. Sign-ins in progress carry their state in
the browser's cookie, sealed too: they finish within `QBOT_LINK_TTL_SECONDS` of the bots using the new key first.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from bot.cipher import CipherError, TokenCipher
from bot.config import parse_token_keys
from bot.errors import ConfigError
from bot.turn_queue import STREAM

SEALED_PREFIX = b"gAAAAA"  # every Fernet token starts so (version byte 0x80, then a timestamp)
KINDS = {
    "vault": "linked accounts",
    "creds": "cached AWS credentials",
    "link": "one-time links",
    "shareable": "private answers",
    "pending-question": "pending questions",
    "memo": "adapter memory",
}
TURN_STREAM = "turn stream"
_BATCH = 500

# KEYS[1]: the key; ARGV[1]: the value read, ARGV[2]: the same value re-sealed. 1 when replaced, 0 when it changed.
_RESEAL_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""


@dataclass
class RekeyReport:
    """Counts per kind: re-sealed (or would be, in a dry run), already under the first key, opened by no key."""

    resealed: Counter[str] = field(default_factory=Counter)
    current: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    in_flight_under_old_key: int = 0  # turn stream entries: they cannot be rewritten, only answered

    @property
    def done(self) -> bool:
        """Nothing in Redis needs a key other than the first: the others may be dropped."""
        return not self.unreadable and not self.in_flight_under_old_key


def kind_of(key: bytes) -> str:
    name = key.decode(errors="replace").removeprefix("qbot:").split(":", 1)[0]
    return KINDS.get(name, name)


class Rekeyer:
    def __init__(self, client: redis.Redis, keys: Sequence[str]) -> None:
        self._redis = client
        self._first = TokenCipher([keys[0]])
        self._all = TokenCipher(list(keys))
        self._reseal = client.register_script(_RESEAL_IF_UNCHANGED)

    def run(self, *, dry_run: bool = False) -> RekeyReport:
        report = RekeyReport()
        cursor = 0
        while True:
            cursor, keys = self._redis.scan(cursor, match="qbot:*", count=_BATCH, _type="STRING")
            if keys:
                for key, value in zip(keys, self._redis.mget(keys), strict=True):
                    self._value(_bytes(key) or b"", _bytes(value), report, dry_run=dry_run)
            if cursor == 0:
                break
        self._stream(report)
        return report

    def _value(self, key: bytes, value: bytes | None, report: RekeyReport, *, dry_run: bool) -> None:
        kind = kind_of(key)
        for _ in range(5):  # a value the bot rewrote meanwhile is looked at again
            if value is None or not value.startswith(SEALED_PREFIX):
                return  # gone, or not a sealed value (a generation, a lock, a mark)
            context = key.decode()
            try:
                self._first.open(context, value)
            except CipherError:
                pass
            else:
                report.current[kind] += 1
                return
            try:
                payload = self._all.open(context, value)
            except CipherError:
                report.unreadable[kind] += 1
                return
            if dry_run or self._reseal(keys=[key], args=[value, self._first.seal(context, payload)]):
                report.resealed[kind] += 1
                return
            value = _bytes(self._redis.get(key))
        report.unreadable[kind] += 1  # rewritten under our feet five times: count it, a later run takes it

    def _stream(self, report: RekeyReport) -> None:
        start = "-"
        while True:
            entries = list(self._redis.xrange(STREAM, min=start, count=_BATCH) or [])
            for _entry_id, fields in entries:
                blob = _bytes((fields or {}).get(b"b")) or b""
                try:
                    self._first.open(STREAM, blob)
                    report.current[TURN_STREAM] += 1
                    continue
                except CipherError:
                    pass
                try:
                    self._all.open(STREAM, blob)
                    report.in_flight_under_old_key += 1
                except CipherError:
                    report.unreadable[TURN_STREAM] += 1
            if len(entries) < _BATCH:
                return
            start = "(" + (_bytes(entries[-1][0]) or b"").decode()


def _bytes(value: object) -> bytes | None:
    """What the Redis client returns (bytes: it never decodes here), typed."""
    if isinstance(value, str):
        return value.encode()
    return value if isinstance(value, bytes) else None


def add_commands(admin_commands: Any) -> None:
    rekey = admin_commands.add_parser(
        "rekey", help="re-seal every token and value stored in Redis under the first key of QBOT_TOKEN_KEYS",
        description="Re-seal every sealed value in the bot's Redis (QBOT_REDIS_URL) under the first key of "
        "QBOT_TOKEN_KEYS, so the older keys can be dropped. Run it after every bot runs with the new key first. "
        "Idempotent. Exit status 0 when nothing in Redis needs an older key any more, 1 when something still "
        "does (it says what), 2 on bad settings.",
    )
    rekey.add_argument("--dry-run", action="store_true", help="count what would be re-sealed, write nothing")
    rekey.set_defaults(func=run_rekey)


def run_rekey(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        keys = parse_token_keys(env.get("QBOT_TOKEN_KEYS", ""))
    except ConfigError as err:
        print(f"qbot admin rekey: {err}", file=sys.stderr)
        return 2
    url = env.get("QBOT_REDIS_URL") or ""
    if not keys or not url:
        missing = " and ".join(n for n, v in (("QBOT_TOKEN_KEYS", keys), ("QBOT_REDIS_URL", url)) if not v)
        print(f"qbot admin rekey: {missing} unset: run it with the bot's own settings (the new key first, "
              "then the old ones)", file=sys.stderr)
        return 2
    try:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    except ValueError as err:
        print(f"qbot admin rekey: QBOT_REDIS_URL is not a Redis URL ({err})", file=sys.stderr)
        return 2
    where = "{host}:{port}".format_map(client.connection_pool.connection_kwargs)
    try:
        report = Rekeyer(client, keys).run(dry_run=args.dry_run)
    except (redis.RedisError, OSError) as err:
        print(f"qbot admin rekey: Redis at {where} failed ({type(err).__name__}: {err}); nothing is lost: run it "
              "again", file=sys.stderr)
        return 1
    finally:
        client.close()
    print_report(report, where=where, key_count=len(keys), dry_run=args.dry_run)
    return 0 if report.done and not (args.dry_run and report.resealed) else 1


def print_report(report: RekeyReport, *, where: str, key_count: int, dry_run: bool) -> None:
    resealed = "would re-seal" if dry_run else "re-sealed"
    print(f"Redis at {where}, {key_count} key(s) in QBOT_TOKEN_KEYS{' (dry run: nothing written)' if dry_run else ''}:")
    kinds = [*KINDS.values(), TURN_STREAM]
    kinds += sorted({*report.resealed, *report.current, *report.unreadable} - set(kinds))
    for kind in kinds:
        parts = []
        if report.resealed[kind]:
            parts.append(f"{report.resealed[kind]} {resealed}")
        if report.current[kind]:
            parts.append(f"{report.current[kind]} already under the first key")
        if kind == TURN_STREAM and report.in_flight_under_old_key:
            parts.append(f"{report.in_flight_under_old_key} question(s) in flight under an older key")
        if report.unreadable[kind]:
            parts.append(f"{report.unreadable[kind]} open with no configured key")
        print(f"  {kind:<24} {', '.join(parts) or 'none'}")
    total = sum(report.resealed.values())
    print(f"{total} value(s) {resealed} under the first key.")
    if report.unreadable:
        print(f"Not done: {sum(report.unreadable.values())} value(s) open with no key in QBOT_TOKEN_KEYS: the bot "
              "reads them as absent (those users link again). If a key is missing from this run, add it after the "
              "first and run again.")
    if report.in_flight_under_old_key:
        print("Not done: questions in the turn stream were sealed under an older key; they are answered within "
              "seconds (workers must be running): run this again before dropping a key.")
    if report.done and not dry_run:
        print("Done: nothing in Redis needs the older keys. Drop them from QBOT_TOKEN_KEYS once sign-ins begun "
              "before the bots used the new key are over (QBOT_LINK_TTL_SECONDS after that).")
