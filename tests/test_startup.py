"""What `qbot serve`, `qbot sandbox` and `qbot doctor` say when they cannot start, run in this process through
`main` (fast; tests/test_cli.py runs the few that need a real process): one line each, exit status 2."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from qbot.cli import build_parser, main
from qbot.startup import redacted_url, surfaces_line
from tests.conftest import refusing_socket
from tests.test_configuration import COMPLETE  # a complete OIDC configuration


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No QBOT_* variable but the test's own; the current directory is the test's (sandbox.env lands there)."""
    for name in [n for n in os.environ if n.startswith("QBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else listens on, for as long as the test holds it."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serve_on_a_busy_port_says_so_in_one_line_naming_qbot_port(
    environment: pytest.MonkeyPatch, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {**COMPLETE, "QBOT_PORT": str(busy_port)}.items():
        environment.setenv(name, value)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        f"qbot serve: port {busy_port} on 127.0.0.1 is in use: stop what holds it, or choose another with "
        "QBOT_PORT (0: any free port) or QBOT_HOST\n"
    )


def test_serve_refuses_to_start_when_redis_does_not_answer_and_never_shows_its_password(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with refusing_socket() as refused:
        port = refused.getsockname()[1]
        url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
        for name, value in {**COMPLETE, "QBOT_PORT": "0", "QBOT_REDIS_URL": url}.items():
            environment.setenv(name, value)
        assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        f"qbot serve: Redis at redis://:***@127.0.0.1:{port}/0 does not answer (ConnectionError: Error 111 "
        f"connecting to 127.0.0.1:{port}. Connection refused.): start it, or fix QBOT_REDIS_URL (host, port, "
        "password; rediss:// for TLS)\n"
    )


def test_serve_lists_every_configuration_problem_at_once(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("QBOT_CHANNEL_REPLY_MODE", "loud")
    environment.setenv("QBOT_TEAMS_APP_PASSWORD", "secret")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "qbot serve: 3 configuration problems:",
        "  - QBOT_CHANNEL_REPLY_MODE must be private or thread, not 'loud'",
        "  - missing configuration: QBOT_OIDC_ISSUER, QBOT_OIDC_CLIENT_ID, QBOT_ROLE_ARN, QBOT_Q_APP_ID, "
        "QBOT_TOKEN_KEYS",
        "  - Teams needs QBOT_TEAMS_APP_ID (the bot's Microsoft app id) as well: QBOT_TEAMS_APP_PASSWORD is set",
    ]


@pytest.mark.parametrize(("position", "whose"), [(0, "bot"), (1, "IdP"), (2, "STS"), (3, "Q Business")])
def test_sandbox_on_a_busy_port_names_the_port_and_ports(
    environment: pytest.MonkeyPatch, busy_port: int, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    position: int, whose: str,
) -> None:
    ports = ["0", "0", "0", "0"]
    ports[position] = str(busy_port)
    assert main(["sandbox", "--ports", ",".join(ports)]) == 2
    assert capsys.readouterr().err == (
        f"qbot sandbox: port {busy_port} ({whose}) on 127.0.0.1 is in use: stop what holds it, or choose another "
        "with --ports BOT,IDP,STS,Q (0: any free port)\n"
    )
    assert not (tmp_path / "sandbox.env").exists()


def test_env_file_settings_count_and_the_environment_wins_over_them(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "client-secret-from-the-file-9"
    (tmp_path / "qbot.env").write_text(
        "# the IdP's settings\nQBOT_OIDC_ISSUER=https://idp.example.com\nQBOT_OIDC_CLIENT_ID=qbot\n"
        f"QBOT_OIDC_CLIENT_SECRET={secret}\nQBOT_CHANNEL_REPLY_MODE=loud\n"
    )
    environment.setenv("QBOT_CHANNEL_REPLY_MODE", "thread")  # wins over the file's malformed value
    assert main(["serve", "--env-file", "qbot.env"]) == 2
    assert capsys.readouterr().err == (
        "qbot serve: missing configuration: QBOT_ROLE_ARN, QBOT_Q_APP_ID, QBOT_TOKEN_KEYS\n"
    )
    logging.getLogger("qbot.test").warning("the secret is %s", secret)  # a secret the file holds is redacted too
    assert secret not in caplog.text and "the secret is" in caplog.text


def test_an_env_file_that_cannot_be_read_stops_serve_and_doctor_in_one_line(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["serve", "--env-file", "absent.env"]) == 2
    assert capsys.readouterr().err == "qbot serve: cannot read --env-file absent.env (No such file or directory)\n"
    (tmp_path / "broken.env").write_text("QBOT_PORT=1\nQBOT_HOST: 0.0.0.0\n")
    assert main(["doctor", "--env-file", "broken.env"]) == 2
    assert capsys.readouterr().err == "qbot doctor: broken.env line 2: expected KEY=VALUE\n"


def test_the_surfaces_line_names_what_is_on_and_how_slack_is_reached() -> None:
    http = Settings.from_env({"QBOT_SLACK_BOT_TOKEN": "xoxb-1", "QBOT_SLACK_SIGNING_SECRET": "s", "QBOT_PORT": "4000"})
    assert surfaces_line(http, ["web", "slack", "teams"]) == (
        "qbot (all) surfaces on: web console (http://127.0.0.1:4000/), Slack (HTTP: POST /slack/events), "
        "Teams (POST /api/messages)"
    )
    socket_mode = Settings.from_env({"QBOT_SLACK_BOT_TOKEN": "xoxb-1", "QBOT_SLACK_APP_TOKEN": "xapp-1",
                                     "QBOT_ROLE": "worker"})
    assert surfaces_line(socket_mode, ["slack"]) == "qbot (worker) surfaces on: Slack (Socket Mode)"
    assert surfaces_line(Settings.from_env({}), []) == (
        "qbot (all) surfaces on: none (set QBOT_SLACK_* or QBOT_TEAMS_*: README, Configuration)"
    )


def test_a_redis_url_is_shown_without_its_password() -> None:
    assert redacted_url("redis://:pw@redis.example.com:6379/0") == "redis://:***@redis.example.com:6379/0"
    assert redacted_url("rediss://qbot:p%40ss@redis.example.com/1") == "rediss://qbot:***@redis.example.com/1"
    assert redacted_url("redis://redis.example.com:6379/0") == "redis://redis.example.com:6379/0"


def _every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _every_parser(child)


def test_every_flag_and_argument_of_every_command_has_help_text() -> None:
    missing = [
        f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
        for parser in _every_parser(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_an_address_serve_cannot_have_or_a_redis_url_that_is_none_are_one_line_too(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {**COMPLETE, "QBOT_HOST": "192.0.2.1", "QBOT_PORT": "0"}.items():  # not this machine's
        environment.setenv(name, value)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "qbot serve: cannot listen on 192.0.2.1:0 (Cannot assign requested address): choose another with QBOT_PORT "
        "(0: any free port) or QBOT_HOST\n"
    )
    environment.setenv("QBOT_HOST", "127.0.0.1")
    environment.setenv("QBOT_REDIS_URL", "http://:pw@127.0.0.1:6379/0")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "qbot serve: QBOT_REDIS_URL http://:***@127.0.0.1:6379/0 is not a Redis URL (Redis URL must specify one of "
        "the following schemes (redis://, rediss://, unix://))\n"
    )
