"""`qbot` — the command line of the external contract (DESIGN.md): serve, sandbox, keygen, admin, doctor."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.fernet import Fernet

from bot.redaction import configured_secrets, install_redaction
from qbot import slack, teams
from qbot.admin import cli as admin
from qbot.embedded_redis import EmbeddedRedis
from qbot.logs import configure_logging
from qbot.server import BotServer, FrontLimits, bind

if TYPE_CHECKING:
    from bot.config import Settings

DEFAULT_PORTS = (3978, 3979, 3980, 3981)


def _ports(value: str) -> tuple[int, int, int, int]:
    parts = value.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError("expected four ports: BOT,IDP,STS,Q (e.g. 3978,3979,3980,3981)")
    bot, idp, sts, q = (int(p) for p in parts)
    return bot, idp, sts, q


Command = Callable[[argparse.Namespace, Mapping[str, str]], int]


def build_parser() -> argparse.ArgumentParser:
    """Each sub-command names its handler with `set_defaults(func=...)`: `main` calls it with the environment."""
    parser = argparse.ArgumentParser(prog="qbot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the bot with the configuration from the environment")
    serve_parser.add_argument(
        "--role", choices=("web", "worker", "all"), default=None,
        help="web: take questions in; worker: answer them; all (default, or QBOT_ROLE): both",
    )
    serve_parser.set_defaults(func=serve_command)
    sandbox = commands.add_parser("sandbox", help="run everything locally with no cloud or chat account")
    sandbox.add_argument(
        "--ports", type=_ports, default=DEFAULT_PORTS, metavar="BOT,IDP,STS,Q",
        help="the four ports [3978,3979,3980,3981]; 0 lets the system pick a free one (the URLs are printed)",
    )
    sandbox.add_argument("--no-bot", action="store_true", help="run only the stand-ins and Redis")
    sandbox.add_argument(
        "--saml", action="store_true",
        help="SAML mode: the IdP signs users in with SAML 2.0 and STS answers AssumeRoleWithSAML",
    )
    sandbox.add_argument("--env-file", default="sandbox.env", help="where to write the QBOT_* lines")
    sandbox.set_defaults(func=sandbox_command)
    keygen = commands.add_parser("keygen", help="print a new QBOT_TOKEN_KEYS key (32 random bytes, URL-safe base64)")
    keygen.set_defaults(func=keygen_command)
    admin.add_commands(commands)  # admin provision, admin groups sync, doctor
    slack.add_commands(commands)  # slack manifest
    teams.add_commands(commands)  # teams package
    return parser


def package_version() -> str:
    try:
        return version("qbot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def serve_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    return serve({**env, "QBOT_ROLE": args.role} if args.role else dict(env))


def keygen_command(_args: argparse.Namespace, _env: Mapping[str, str]) -> int:
    print(Fernet.generate_key().decode())
    return 0


def sandbox_command(args: argparse.Namespace, _env: Mapping[str, str]) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        run_async(run_sandbox(args.ports, no_bot=args.no_bot, env_file=Path(args.env_file), saml=args.saml))
    return 0


T = TypeVar("T")


async def stop_requested() -> None:
    """Until SIGTERM (docker stop, systemd, a test) or SIGINT (Ctrl+C) arrives: then the caller shuts down cleanly
    and the process exits 0. Handled on the loop, so a SIGINT ignored by a background launch doesn't matter."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (measured: ~15% less CPU per answered message), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    # First: secrets never reach a log handler, whatever the levels (these loggers' included).
    install_redaction().add_secrets(configured_secrets(os.environ))
    configure_logging(os.environ)  # QBOT_LOG_LEVEL, QBOT_LOG_FORMAT (qbot/logs.py)
    args = build_parser().parse_args(argv)
    command: Command = args.func
    return command(args, dict(os.environ))


def serve(env: dict[str, str]) -> int:
    from bot.config import Settings
    from bot.errors import ConfigError

    try:
        settings = Settings.from_env(env)
        settings.check_complete()
    except ConfigError as exc:
        print(f"qbot serve: {exc}", file=sys.stderr)
        return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_async(_serve(settings))
    except ConfigError as exc:  # found while building the app (an adapter's or group sync's settings)
        print(f"qbot serve: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(settings: Settings) -> None:
    from qbot.app import build_app

    redis: EmbeddedRedis | None = None
    if not settings.redis_url:
        redis = EmbeddedRedis().start()
        logging.getLogger("qbot").warning(
            "QBOT_REDIS_URL is unset: using an embedded, non-persistent Redis at %s", redis.url
        )
        settings = dataclasses.replace(settings, redis_url=redis.url)
    try:
        limits = FrontLimits.from_env(settings.extra)
        server = BotServer(build_app(settings), bind(settings.host, settings.port), limits)
    except BaseException:
        if redis is not None:
            redis.stop()
        raise
    try:
        await server.start()
        port = server.sock.getsockname()[1]  # QBOT_PORT=0: the one the OS chose
        print(
            f"qbot ({settings.role}) listening on http://{settings.host}:{port} (public URL {settings.public_url})",
            flush=True,
        )
        await stop_requested()
    finally:
        await server.stop()
        server.sock.close()
        if redis is not None:
            redis.stop()


def write_env_file(path: Path, env: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in env.items()))


async def run_sandbox(
    ports: tuple[int, int, int, int], *, no_bot: bool, env_file: Path, saml: bool = False
) -> None:
    from sandbox.world import Sandbox, SandboxPorts

    bot_port, idp_port, sts_port, q_port = ports
    # The bot's socket first (port 0: the OS picks one), so the IdP knows the bot's exact redirect URI.
    bot_sock = bind("127.0.0.1", bot_port)
    bot_port = bot_sock.getsockname()[1]
    if no_bot:
        bot_sock.close()  # the port is for the operator's own `qbot serve` (sandbox.env names it)
    world = Sandbox(
        ports=SandboxPorts(idp=idp_port, sts=sts_port, q=q_port),
        bot_public_url=f"http://127.0.0.1:{bot_port}",
        saml=saml,
    )
    redis = EmbeddedRedis().start()
    server: BotServer | None = None
    try:
        await world.start()
        env = {
            **world.env(), "QBOT_PORT": str(bot_port), "QBOT_REDIS_URL": redis.url,
            "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(),
        }
        write_env_file(env_file, env)
        if not no_bot:
            from bot.config import Settings
            from qbot.app import build_app

            settings = Settings.from_env(env)
            limits = FrontLimits.from_env(os.environ)  # QBOT_MAX_CONNECTIONS and the timeouts, if set
            server = BotServer(build_app(settings), bot_sock, limits)
            await server.start()
        print(f"Redis        {redis.url}")
        users = ", ".join(world.directory.users)
        if saml:
            print(f"IdP          {world.idp_url}   (SAML 2.0: {world.idp_url}/saml/metadata; users: {users})")
        else:
            print(f"IdP          {world.idp_url}   (issuer; users: {users})")
        print(f"STS          {world.sts_url}")
        print(f"Q Business   {world.q_url}   (application {env['QBOT_Q_APP_ID']})")
        print(f"Wrote {env_file}: the QBOT_* lines that point a bot at these stand-ins.")
        if not no_bot:
            print(f"Bot          {world.bot_public_url}")
            users = ", ".join(
                f"{u.username} ({', '.join(u.groups)})" if u.groups else u.username
                for u in world.directory.users.values()
            )
            print(f"\nopen {world.bot_public_url}/ and sign in as alice (core-team) or bob  [users: {users}]")
        print("Press Ctrl+C to stop.", flush=True)
        await stop_requested()
    finally:
        if server is not None:
            await server.stop()
        bot_sock.close()
        await world.stop()
        redis.stop()
