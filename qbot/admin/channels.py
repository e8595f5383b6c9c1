"""`qbot admin channels set|unset|list`: the per-channel policies (`bot/channel_policy.py`) in the deployment's Redis.

The command writes the same Redis hash the bot reads on every question, so a change applies to every replica at
once. It needs QBOT_REDIS_URL: the embedded Redis of a `qbot serve` started without it belongs to that process.
Exit status: 0 done; 2 bad input or configuration (nothing written); 1 Redis unreachable, or a stored policy
that does not parse (`list`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis

from bot.channel_policy import (
    CHAT_MODES,
    PLUGIN_MODE,
    REPLY_MODES,
    ChannelPolicies,
    ChannelPolicy,
    ChannelPolicyError,
    parse_channel,
)

DEFAULT = "default"  # an option's value that removes the setting (the channel follows the deployment's default)

DESCRIPTION = """\
Where answers to questions asked in a channel go, and what every question from it asks Q Business with. A
channel without a policy follows QBOT_CHANNEL_REPLY_MODE. Policies live in the deployment's Redis
(QBOT_REDIS_URL, hash qbot:channels) and apply to every running bot at once.
PLATFORM:CHANNEL is slack:<channel id> (C0123ABCD) or teams:<channel or group chat id> (19:…@thread.tacv2).
"""

SET_DESCRIPTION = """\
Set options of a channel's policy. Options not given keep their stored value (set --chat-mode alone keeps the
channel's --reply); the value `default` removes a setting; a policy with nothing left set is removed.
"""


def add_commands(admin_commands: Any) -> None:
    """Add `channels set|unset|list` to the `qbot admin` sub-command parser."""
    channels = admin_commands.add_parser(
        "channels", help="per-channel policy: answers in the thread or privately, attribute filter, chat mode",
        description=DESCRIPTION,
    )
    commands = channels.add_subparsers(dest="channels_command", required=True)

    set_parser = commands.add_parser(
        "set", help="set a channel's policy (options not given keep their stored value)", description=SET_DESCRIPTION,
    )
    set_parser.add_argument("channel", metavar="PLATFORM:CHANNEL",
                            help="the channel: slack:C0123456789 or teams:<conversation id>")
    set_parser.add_argument("--reply", choices=(*REPLY_MODES, DEFAULT),
                            help="thread: answers go to the thread, for everyone in the channel to read; private: "
                            "only the asker sees an answer until they share it; default: QBOT_CHANNEL_REPLY_MODE")
    set_parser.add_argument("--attribute-filter", metavar="JSON|@FILE",
                            help="a Q Business AttributeFilter (JSON object, or @file.json holding one) every "
                            "question from the channel is asked with; `default` removes it")
    set_parser.add_argument("--chat-mode", choices=(*CHAT_MODES, DEFAULT),
                            help="RETRIEVAL_MODE: answers only from documents; CREATOR_MODE: the model may answer "
                            "without them; PLUGIN_MODE: every question asks one plugin (--plugin); default: Q's own")
    set_parser.add_argument("--plugin", metavar="NAME",
                            help="with --chat-mode PLUGIN_MODE: the plugin every question from the channel asks (its "
                            "name, as qplugins lists it)")
    set_parser.set_defaults(func=run_set)

    unset = commands.add_parser("unset", help="remove a channel's policy (it then follows the defaults)",
                                description="Remove a channel's policy; the channel then follows "
                                "QBOT_CHANNEL_REPLY_MODE, with no attribute filter and Q's own chat mode.")
    unset.add_argument("channel", metavar="PLATFORM:CHANNEL", help="the channel whose policy to remove")
    unset.set_defaults(func=run_unset)

    listing = commands.add_parser("list", help="one line per channel with a policy: reply, chat mode, filter",
                                  description="One line per channel with a policy; `default` where the "
                                  "deployment's default applies. Exit status 1 when a stored policy does not parse.")
    listing.set_defaults(func=run_list)


class Refused(Exception):
    """Bad input or configuration: the command writes nothing and exits 2."""


def run_set(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    def changes() -> tuple[str, str, dict[str, Any]]:
        platform, channel = _channel(args.channel)
        found: dict[str, Any] = {}
        if args.reply is not None:
            found["reply"] = None if args.reply == DEFAULT else args.reply
        if args.chat_mode is not None:
            found["chat_mode"] = None if args.chat_mode == DEFAULT else args.chat_mode
            if found["chat_mode"] != PLUGIN_MODE:
                found["plugin"] = None  # another mode asks no plugin
        if args.plugin is not None:
            found["plugin"] = None if args.plugin == DEFAULT else args.plugin
        if args.attribute_filter is not None:
            found["attribute_filter"] = _attribute_filter(args.attribute_filter)
        if not found:
            raise Refused("nothing to set: give --reply, --attribute-filter, --chat-mode or --plugin")
        return platform, channel, found

    async def apply(policies: ChannelPolicies) -> int:
        platform, channel, found = changes()
        try:
            policy = await policies.update(platform, channel, found)
        except ChannelPolicyError as err:
            raise Refused(str(err)) from None
        spec = f"{platform}:{channel}"
        print(describe(spec, policy) if policy else f"{spec}: nothing left set, policy removed (the channel follows "
              "the defaults)")
        return 0

    return _run("admin channels set", env, apply)


def run_unset(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async def apply(policies: ChannelPolicies) -> int:
        platform, channel = _channel(args.channel, strict=False)
        removed = await policies.unset(platform, channel)
        spec = f"{platform}:{channel}"
        print(f"{spec}: policy removed (the channel follows the defaults)" if removed
              else f"{spec} had no policy: nothing changed")
        return 0

    return _run("admin channels unset", env, apply)


def run_list(_args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async def apply(policies: ChannelPolicies) -> int:
        stored = await policies.stored()
        if not stored:
            print("no channel has a policy: every channel follows QBOT_CHANNEL_REPLY_MODE")
        for spec, entry in stored.items():
            print(f"{spec}  UNREADABLE: {entry}" if isinstance(entry, ChannelPolicyError) else describe(spec, entry))
        return 1 if any(isinstance(entry, ChannelPolicyError) for entry in stored.values()) else 0

    return _run("admin channels list", env, apply)


def describe(spec: str, policy: ChannelPolicy) -> str:
    """One line: the channel, then each setting (`default` where the deployment's default applies)."""
    attribute_filter = "none" if policy.attribute_filter is None else json.dumps(
        policy.attribute_filter, separators=(",", ":"), ensure_ascii=False)
    plugin = f"  plugin={policy.plugin}" if policy.plugin else ""
    return (f"{spec}  reply={policy.reply or DEFAULT}  chat-mode={policy.chat_mode or DEFAULT}{plugin}  "
            f"attribute-filter={attribute_filter}")


def _channel(spec: str, *, strict: bool = True) -> tuple[str, str]:
    """`unset` is not strict: whatever is stored can be removed, even a channel `set` would now refuse."""
    try:
        return parse_channel(spec)
    except ChannelPolicyError as err:
        platform, _, channel = spec.partition(":")
        if strict or not platform or not channel:
            raise Refused(str(err)) from None
        return platform, channel


def _attribute_filter(value: str) -> dict[str, Any] | None:
    if value == DEFAULT:
        return None
    source = "--attribute-filter"
    if value.startswith("@"):
        source = value[1:]
        try:
            value = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise Refused(f"cannot read the attribute filter file {source}: {err}") from None
    try:
        document = json.loads(value)
    except ValueError as err:
        raise Refused(f"{source} is not JSON ({err}); give a JSON object or @file.json") from None
    if not isinstance(document, dict):
        raise Refused(f"{source} must be a JSON object (a Q Business AttributeFilter), not {type(document).__name__}")
    return document


def _run(command: str, env: Mapping[str, str], apply: Callable[[ChannelPolicies], Awaitable[int]]) -> int:
    url = env.get("QBOT_REDIS_URL") or ""
    if not url:
        print(f"qbot {command}: QBOT_REDIS_URL is unset. Channel policies live in the deployment's Redis: set "
              "QBOT_REDIS_URL to the one the bot uses (with `qbot sandbox`: the line in sandbox.env). The embedded "
              "Redis a `qbot serve` without QBOT_REDIS_URL starts cannot be reached from another process.",
              file=sys.stderr)
        return 2
    try:
        client = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    except ValueError as err:
        print(f"qbot {command}: QBOT_REDIS_URL is not a Redis URL ({err})", file=sys.stderr)
        return 2
    target = client.connection_pool.connection_kwargs
    where = target.get("path") or f"{target.get('host')}:{target.get('port')}"

    async def main() -> int:
        try:
            return await apply(ChannelPolicies(client))
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except Refused as err:
        print(f"qbot {command}: {err}", file=sys.stderr)
        return 2
    except (redis.RedisError, OSError) as err:
        print(f"qbot {command}: Redis at {where} failed ({type(err).__name__}: {err}); check QBOT_REDIS_URL "
              "(`qbot admin channels list` shows what is stored)", file=sys.stderr)
        return 1
