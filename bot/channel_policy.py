"""Per-channel policy: what an administrator decided for one shared place (`qbot admin channels set`).

A policy can say where answers go (`reply`: straight to the thread, or privately to the asker), and what every
ChatSync from the channel carries (a Q Business `attributeFilter`, a `chatMode`; with `PLUGIN_MODE`, the `plugin`
every question asks). A field left unset falls back to the deployment's default (`QBOT_CHANNEL_REPLY_MODE`; no
filter; Q's own chat mode).

Stored in Redis, read on every use and never cached, so a change made through any process (the CLI, another
replica) applies everywhere at once:
- `qbot:channels` — a hash, one field per channel, `<platform>:<channel>` with both parts percent-encoded (as
  `ChatIdentity.key` does, so a Teams id's own ':' cannot collide), value a JSON object with the fields that are
  set (`reply`, `attribute_filter`, `chat_mode`, `plugin`).

Guarantees: a policy that does not validate is never stored (`set`/`update` raise `ChannelPolicyError` and
write nothing); a stored value that no longer parses is reported, never silently ignored (`get` raises, so a
channel's restriction cannot quietly fall away; `qbot doctor` fails on it).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from redis.asyncio import Redis
from redis.exceptions import WatchError

KEY = "qbot:channels"
PLATFORMS = ("slack", "teams")
REPLY_MODES = ("thread", "private")
CHAT_MODES = ("RETRIEVAL_MODE", "CREATOR_MODE", "PLUGIN_MODE")
PLUGIN_MODE = "PLUGIN_MODE"
_PLUGIN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}")  # Q's PluginName; a plugin id fits it too
MAX_FILTER_BYTES = 8 * 1024
_FIELDS = ("reply", "attribute_filter", "chat_mode", "plugin")

_SLACK_CHANNEL = re.compile(r"[CG][A-Z0-9]{1,31}")  # public (C) and private (G) channels; D… are DMs
_TEAMS_CHANNEL = re.compile(r"19:[^\s;]{1,200}@thread\.[A-Za-z0-9.]{1,20}")  # channels and group chats
_HINTS = {
    "slack": "Slack channel ids look like C0123ABCD (in Slack: the channel's name, then About, Channel ID)",
    "teams": "Teams ids look like 19:…@thread.tacv2 (in Teams: the channel's ⋯, Get link to channel; the id is "
    "the part after /channel/)",
}


class ChannelPolicyError(ValueError):
    """A policy, channel or stored value that does not validate; the message says what and how to fix it."""


@dataclass(frozen=True)
class ChannelPolicy:
    """Validated on construction: an instance is always one `set` would accept (but the deep filter check)."""

    reply: str | None = None  # "thread" | "private"; None: the deployment's default (QBOT_CHANNEL_REPLY_MODE)
    attribute_filter: dict[str, Any] | None = None  # a Q Business AttributeFilter every ChatSync from the channel uses
    chat_mode: str | None = None  # "RETRIEVAL_MODE" | "CREATOR_MODE" | "PLUGIN_MODE"
    plugin: str | None = None  # with PLUGIN_MODE: the plugin every question asks (its name, as qplugins lists it)

    def __post_init__(self) -> None:
        if self.reply is not None and self.reply not in REPLY_MODES:
            raise ChannelPolicyError(f"reply must be {' or '.join(REPLY_MODES)}, not {self.reply!r}")
        if self.chat_mode is not None and self.chat_mode not in CHAT_MODES:
            raise ChannelPolicyError(f"chat mode must be {' or '.join(CHAT_MODES)}, not {self.chat_mode!r}")
        if (self.chat_mode == PLUGIN_MODE) != (self.plugin is not None):
            raise ChannelPolicyError("chat mode PLUGIN_MODE needs the plugin to ask (--plugin NAME), and a plugin "
                                     "goes only with chat mode PLUGIN_MODE")
        if self.plugin is not None and not (isinstance(self.plugin, str) and _PLUGIN.fullmatch(self.plugin)):
            raise ChannelPolicyError(f"{self.plugin!r} is not a plugin name (letters, digits, - and _; qplugins "
                                     "lists them)")
        if self.attribute_filter is not None:
            if not isinstance(self.attribute_filter, dict) or not self.attribute_filter:
                raise ChannelPolicyError("the attribute filter must be a non-empty JSON object (a Q Business "
                                         "AttributeFilter, e.g. {\"equalsTo\": {…}})")
            try:
                size = len(_compact(self.attribute_filter).encode())
            except (TypeError, ValueError) as err:
                raise ChannelPolicyError(f"the attribute filter is not JSON ({err})") from None
            if size > MAX_FILTER_BYTES:
                raise ChannelPolicyError(f"the attribute filter is {size} bytes; at most {MAX_FILTER_BYTES} are "
                                         "kept (every question from the channel carries it)")

    @property
    def empty(self) -> bool:
        """Nothing set: the channel behaves as if it had no policy."""
        return all(getattr(self, name) is None for name in _FIELDS)

    def to_json(self) -> str:
        return _compact({name: getattr(self, name) for name in _FIELDS if getattr(self, name) is not None})

    @classmethod
    def from_json(cls, raw: bytes | str) -> ChannelPolicy:
        """The stored form back; an unknown field is refused rather than dropped (it may be a restriction)."""
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as err:
            raise ChannelPolicyError(f"not JSON ({err})") from None
        if not isinstance(document, dict):
            raise ChannelPolicyError("not a JSON object")
        unknown = sorted(set(document) - set(_FIELDS))
        if unknown:
            raise ChannelPolicyError(f"unknown field(s) {', '.join(unknown)}")
        return cls(**document)


def parse_channel(spec: str) -> tuple[str, str]:
    """`"slack:C123"` -> `("slack", "C123")`; a Teams id keeps its own colons (`teams:19:…@thread.tacv2`), and may
    be pasted percent-encoded as it appears in a Teams link. Raises ChannelPolicyError (a ValueError) saying what
    a valid one looks like."""
    platform, sep, channel = spec.strip().partition(":")
    platform = platform.lower()
    if not sep or not platform or not channel:
        raise ChannelPolicyError(f"{spec!r} is not PLATFORM:CHANNEL (e.g. slack:C0123ABCD or "
                                 "teams:19:…@thread.tacv2)")
    if platform == "web":
        raise ChannelPolicyError("the web console has no shared places: its answers are always private to the "
                                 "asker, so it takes no channel policy")
    if platform not in PLATFORMS:
        raise ChannelPolicyError(f"unknown platform {platform!r}: expected {' or '.join(PLATFORMS)}")
    if platform == "teams" and "%" in channel:
        channel = unquote(channel)
    pattern = _SLACK_CHANNEL if platform == "slack" else _TEAMS_CHANNEL
    if not pattern.fullmatch(channel):
        raise ChannelPolicyError(f"{channel!r} is not a {platform.capitalize()} channel id. {_HINTS[platform]}")
    return platform, channel


def channel_field(platform: str, channel: str) -> str:
    """The hash field of a channel: both parts percent-encoded, so the first ':' is the only separator."""
    return f"{quote(platform, safe='')}:{quote(channel, safe='')}"


def channel_spec(field: bytes | str) -> str:
    """A hash field back to `platform:channel` (what `parse_channel` reads and `all` returns)."""
    text = field.decode() if isinstance(field, bytes) else field
    platform, _, channel = text.partition(":")
    return f"{unquote(platform)}:{unquote(channel)}"


def read_entry(field: bytes | str, raw: bytes | str) -> tuple[str, ChannelPolicy]:
    """One stored entry as (`platform:channel`, policy); ChannelPolicyError names the channel and the problem."""
    spec = channel_spec(field)
    try:
        return spec, ChannelPolicy.from_json(raw)
    except ChannelPolicyError as err:
        raise ChannelPolicyError(f"the stored policy of {spec} does not parse: {err}; `qbot admin channels unset "
                                 f"{spec}` removes it") from None


def check_attribute_filter(attribute_filter: dict[str, Any]) -> None:
    """The filter against botocore's Q Business model (member names and types), so a typo is refused when the
    administrator sets it instead of failing every question asked in the channel."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(attribute_filter, _attribute_filter_shape())
    if report.has_errors():
        raise ChannelPolicyError(f"the attribute filter is not a Q Business AttributeFilter: "
                                 f"{report.generate_report()}")
    _check_filter_rules(attribute_filter, "filter")


_LIST_OPERATORS = ("containsAll", "containsAny")
_ORDERED_OPERATORS = ("greaterThan", "greaterThanOrEquals", "lessThan", "lessThanOrEquals")


def _check_filter_rules(node: dict[str, Any], path: str) -> None:
    """What Q's documentation asks of a filter beyond its shapes: one operator per node (combine with
    andAllFilters), non-empty and/or lists, string lists for containsAll/Any, longs or dates to compare."""
    operators = [key for key, value in node.items() if value is not None]
    if len(operators) != 1:
        raise ChannelPolicyError(
            f"{path} must set exactly one operator (it sets {', '.join(operators) or 'none'}); "
            "combine conditions with andAllFilters"
        )
    (operator,) = operators
    value = node[operator]
    if operator in ("andAllFilters", "orAllFilters"):
        if not value:
            raise ChannelPolicyError(f"{path}.{operator} must list at least one filter")
        for n, child in enumerate(value):
            _check_filter_rules(child, f"{path}.{operator}[{n}]")
    elif operator == "notFilter":
        _check_filter_rules(value, f"{path}.notFilter")
    else:
        kinds = set(value.get("value") or {})
        if operator in _LIST_OPERATORS and kinds != {"stringListValue"}:
            raise ChannelPolicyError(f"{path}.{operator} compares with a stringListValue")
        if operator in _ORDERED_OPERATORS and not kinds <= {"longValue", "dateValue"}:
            raise ChannelPolicyError(f"{path}.{operator} compares with a longValue or dateValue")


@lru_cache(maxsize=1)
def _attribute_filter_shape() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("qbusiness").shape_for("AttributeFilter")


class ChannelPolicies:
    """The policies of every channel, in one Redis hash (see the module docstring). No cache: each `get` reads
    Redis, which is what makes a change visible to every replica at once."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, platform: str, channel: str) -> ChannelPolicy | None:
        """The channel's policy, or None (use the deployment's defaults). Raises ChannelPolicyError when the
        stored value does not parse: the channel's restriction must not silently fall away."""
        raw = await self._redis.hget(KEY, channel_field(platform, channel))
        if raw is None:
            return None
        return read_entry(channel_field(platform, channel), raw)[1]

    async def set(self, platform: str, channel: str, policy: ChannelPolicy) -> None:
        """Store (replace) the channel's policy; a policy with nothing set removes it. Refuses, writing nothing,
        a channel `parse_channel` would refuse or a filter that is not a Q Business AttributeFilter."""
        _check(platform, channel, policy)
        if policy.empty:
            await self.unset(platform, channel)
        else:
            await self._redis.hset(KEY, channel_field(platform, channel), policy.to_json())

    async def update(self, platform: str, channel: str, changes: Mapping[str, Any]) -> ChannelPolicy | None:
        """Change only the named fields (None: back to the default), keeping the others; atomic against any
        other writer (WATCH/MULTI, retried). Returns the policy now stored, None when nothing is left set."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise ChannelPolicyError(f"unknown policy field(s) {', '.join(sorted(unknown))}")
        field = channel_field(platform, channel)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(KEY)
                    raw = await pipe.hget(KEY, field)
                    current = ChannelPolicy() if raw is None else read_entry(field, raw)[1]
                    policy = dataclasses.replace(current, **changes)
                    _check(platform, channel, policy)
                    pipe.multi()
                    if policy.empty:
                        pipe.hdel(KEY, field)
                    else:
                        pipe.hset(KEY, field, policy.to_json())
                    await pipe.execute()
                    return None if policy.empty else policy
                except WatchError:
                    continue

    async def unset(self, platform: str, channel: str) -> bool:
        """Remove the channel's policy (it then follows the defaults); False when it had none. Takes any channel,
        valid or not, so whatever was stored can be removed."""
        return bool(await self._redis.hdel(KEY, channel_field(platform, channel)))

    async def all(self) -> dict[str, ChannelPolicy]:
        """`platform:channel` -> policy, for every channel with one; raises ChannelPolicyError on one that does
        not parse (`stored` reports each entry instead)."""
        result: dict[str, ChannelPolicy] = {}
        for spec, entry in (await self.stored()).items():
            if isinstance(entry, ChannelPolicyError):
                raise entry
            result[spec] = entry
        return result

    async def stored(self) -> dict[str, ChannelPolicy | ChannelPolicyError]:
        """Every stored entry, sorted by channel, each a policy or the error that stops it parsing."""
        result: dict[str, ChannelPolicy | ChannelPolicyError] = {}
        for field, raw in sorted((await self._redis.hgetall(KEY)).items()):
            try:
                spec, policy = read_entry(field, raw)
            except ChannelPolicyError as err:
                result[channel_spec(field)] = err
            else:
                result[spec] = policy
        return result


def _check(platform: str, channel: str, policy: ChannelPolicy) -> None:
    if parse_channel(f"{platform}:{channel}") != (platform, channel):
        raise ChannelPolicyError(f"{platform}:{channel} is not in its canonical form "
                                 f"({':'.join(parse_channel(f'{platform}:{channel}'))})")
    if policy.attribute_filter is not None:
        check_attribute_filter(policy.attribute_filter)


def _compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
