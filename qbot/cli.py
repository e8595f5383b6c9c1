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
from qbot.configuration import EnvFileError, configuration_problems, read_env_file, unknown_settings
from qbot.embedded_redis import EmbeddedRedis
from qbot.logs import configure_logging
from qbot.server import BotServer, FrontLimits
from qbot.startup import CannotStart, cannot_listen, listen, require_redis, surfaces_line

if TYPE_CHECKING:
    from bot.config import Settings

DEFAULT_PORTS = (3978, 3979, 3980, 3981)
SANDBOX_PORTS = "--ports BOT,IDP,STS,Q (0: any free port)"
log = logging.getLogger("qbot")


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
    serve_parser = commands.add_parser(
        "serve", help="run the bot with the configuration from the environment",
        description="Run the bot with the QBOT_* configuration from the environment (and --env-file). Every "
        "configuration problem is listed at once; a busy port or an unreachable Redis stops it (exit status 2).",
    )
    serve_parser.add_argument(
        "--role", choices=("web", "worker", "all"), default=None,
        help="web: take questions in; worker: answer them; all (default, or QBOT_ROLE): both",
    )
    reads_env_file(serve_parser)
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
    sandbox.add_argument("--env-file", default="sandbox.env", metavar="FILE",
                         help="where to write the QBOT_* lines that point a bot at the stand-ins [%(default)s]")
    sandbox.set_defaults(func=sandbox_command)
    keygen = commands.add_parser("keygen", help="print a new QBOT_TOKEN_KEYS key (32 random bytes, URL-safe base64)")
    keygen.set_defaults(func=keygen_command)
    admin.add_commands(commands)  # admin provision, admin groups sync, doctor
    reads_env_file(commands.choices["doctor"])
    slack.add_commands(commands)  # slack manifest
    teams.add_commands(commands)  # teams package
    return parser


def reads_env_file(command: argparse.ArgumentParser) -> None:
    """`--env-file FILE` for a command that reads the configuration (serve, doctor); `main` merges the file."""
    command.add_argument(
        "--env-file", dest="settings_file", type=Path, metavar="FILE",
        help="read QBOT_* settings from FILE (KEY=VALUE lines, # comments); a variable set in the environment "
        "wins over the same one in the file",
    )


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
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_async(run_sandbox(args.ports, no_bot=args.no_bot, env_file=Path(args.env_file), saml=args.saml))
    except CannotStart as exc:
        print(f"qbot sandbox: {exc}", file=sys.stderr)
        return 2
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
    args = build_parser().parse_args(argv)
    env = dict(os.environ)
    if getattr(args, "settings_file", None) is not None:
        try:  # the environment wins: a one-off `QBOT_PORT=4000 qbot serve --env-file prod.env` does what it says
            env = {**read_env_file(args.settings_file), **env}
        except EnvFileError as err:
            print(f"qbot {args.command}: {err}", file=sys.stderr)
            return 2
        install_redaction().add_secrets(configured_secrets(env))
    configure_logging(env)  # QBOT_LOG_LEVEL, QBOT_LOG_FORMAT (qbot/logs.py)
    command: Command = args.func
    return command(args, env)


def serve(env: dict[str, str]) -> int:
    from bot.config import Settings
    from bot.errors import ConfigError

    problems = configuration_problems(env)
    if len(problems) == 1:
        print(f"qbot serve: {problems[0]}", file=sys.stderr)
    elif problems:
        print(f"qbot serve: {len(problems)} configuration problems:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
    if problems:
        return 2
    for warning in unknown_settings(env):
        log.warning(warning)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_async(_serve(Settings.from_env(env)))
    except (ConfigError, CannotStart) as exc:  # a ConfigError here: one `configuration_problems` does not know
        print(f"qbot serve: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(settings: Settings) -> None:
    from qbot.app import GRAPH, build_app

    sock = listen(settings.host, settings.port, what="", choose="QBOT_PORT (0: any free port) or QBOT_HOST")
    settings = settings.listening_on(sock.getsockname()[1])  # QBOT_PORT=0: the one the OS chose
    redis: EmbeddedRedis | None = None
    try:
        if settings.redis_url:
            await require_redis(settings.redis_url)
        else:
            redis = EmbeddedRedis().start()
            log.warning("QBOT_REDIS_URL is unset: using an embedded, non-persistent Redis at %s", redis.url)
            settings = dataclasses.replace(settings, redis_url=redis.url)
        limits = FrontLimits.from_env(settings.extra)
        app = build_app(settings)
        server = BotServer(app, sock, limits)
    except BaseException:
        sock.close()
        if redis is not None:
            redis.stop()
        raise
    try:
        await server.start()
        print(surfaces_line(settings, (adapter.platform for adapter in app[GRAPH].adapters)), flush=True)
        print(
            f"qbot ({settings.role}) listening on http://{settings.host}:{settings.port} "
            f"(public URL {settings.public_url})",
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
    bot_sock = listen("127.0.0.1", bot_port, what="bot", choose=SANDBOX_PORTS)
    bot_port = bot_sock.getsockname()[1]
    if no_bot:
        bot_sock.close()  # the port is for the operator's own `qbot serve` (sandbox.env names it)
    try:
        world = Sandbox(
            ports=SandboxPorts(idp=idp_port, sts=sts_port, q=q_port),
            bot_public_url=f"http://127.0.0.1:{bot_port}",
            saml=saml,
        )
    except OSError as err:
        bot_sock.close()
        stand_ins = {"IdP": idp_port, "STS": sts_port, "Q Business": q_port}
        raise CannotStart(_stand_in_cannot_listen(err, stand_ins)) from None
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


def _stand_in_cannot_listen(err: OSError, ports: dict[str, int]) -> str:
    """Which stand-in's port could not be had (the sandbox binds all three at once): the first that still cannot."""
    for what, port in ports.items():
        if port:
            try:
                listen("127.0.0.1", port, what=what, choose=SANDBOX_PORTS).close()
            except CannotStart as busy:
                return str(busy)
    return cannot_listen("127.0.0.1", 0, err, what="a stand-in", choose=SANDBOX_PORTS)
