"""What `qbot serve` and `qbot sandbox` refuse to start without, each said in one line an operator can act on
(exit status 2, no traceback): a port they can listen on, a Redis that answers. And the line that says what a
started bot serves.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.exceptions import RedisError

from adapters.slack.settings import SlackSettings
from bot.config import Settings
from qbot.server import bind

REDIS_TIMEOUT_SECONDS = 5.0


class CannotStart(Exception):
    """The one line to print (after the command's name) before exiting with status 2."""


def listen(host: str, port: int, *, what: str, choose: str) -> socket.socket:
    """`bind`, or CannotStart naming the address and how to choose another (`choose`: the flag or variable)."""
    try:
        return bind(host, port)
    except OSError as err:
        raise CannotStart(cannot_listen(host, port, err, what=what, choose=choose)) from None


def cannot_listen(host: str, port: int, err: OSError, *, what: str, choose: str) -> str:
    """`what`: whose port it is ("" for the bot of `qbot serve`, "IdP" for a stand-in of the sandbox)."""
    whose = f" ({what})" if what else ""
    if err.errno == errno.EADDRINUSE:
        return f"port {port}{whose} on {host} is in use: stop what holds it, or choose another with {choose}"
    reason = err.strerror or str(err)
    return f"cannot listen on {host}:{port}{whose} ({reason}): choose another with {choose}"


def redacted_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs (redis://:***@host:6379/0)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    address = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{address}"))


async def require_redis(url: str) -> None:
    """CannotStart unless the Redis at `url` answers PING: a bot that cannot store a link or a turn must not take
    traffic (platforms would see every event fail instead of a deployment that did not start)."""
    shown = redacted_url(url)
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
    except ValueError as err:
        raise CannotStart(f"QBOT_REDIS_URL {shown} is not a Redis URL ({err})") from None
    try:
        await client.ping()
    except (RedisError, OSError) as err:
        raise CannotStart(
            f"Redis at {shown} does not answer ({type(err).__name__}: {err}): start it, or fix QBOT_REDIS_URL "
            "(host, port, password; rediss:// for TLS)"
        ) from None
    finally:
        await client.aclose()


def surfaces_line(settings: Settings, platforms: Iterable[str]) -> str:
    """`qbot (ROLE) surfaces on: …`: which of the web console, Slack (and how) and Teams this process serves."""
    on = set(platforms)
    names = []
    if "web" in on:
        names.append(f"web console ({settings.public_url}/)")
    if "slack" in on:
        slack = SlackSettings.from_env(settings.extra)
        names.append("Slack (Socket Mode)" if slack and slack.socket_mode else "Slack (HTTP: POST /slack/events)")
    if "teams" in on:
        names.append("Teams (POST /api/messages)")
    names.extend(sorted(on - {"web", "slack", "teams"}))
    listed = ", ".join(names) or "none (set QBOT_SLACK_* or QBOT_TEAMS_*: README, Configuration)"
    return f"qbot ({settings.role}) surfaces on: {listed}"
