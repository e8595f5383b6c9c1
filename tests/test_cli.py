"""The `qbot` command line as a user runs it: real processes, real ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
from cryptography.fernet import Fernet


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("QBOT_")}


def test_keygen_prints_a_usable_key() -> None:
    out = subprocess.run([sys.executable, "-m", "qbot", "keygen"], capture_output=True, text=True, check=True)
    Fernet(out.stdout.strip().encode())


def test_version_prints_the_installed_package_version() -> None:
    done = subprocess.run([sys.executable, "-m", "qbot", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"qbot {version('qbot')}"


COMPLETE = {
    "QBOT_OIDC_ISSUER": "https://idp.example.com",
    "QBOT_OIDC_CLIENT_ID": "qbot",
    "QBOT_ROLE_ARN": "arn:aws:iam::123456789012:role/qbot-user",
    "QBOT_Q_APP_ID": "5a4db0a1-1b0e-4f43-9d5c-0e7f3b6a2c11",
}


def test_serve_fails_fast_naming_every_problem_at_once() -> None:
    env = {**_clean_env(), "QBOT_CHANNEL_REPLY_MODE": "loud", "QBOT_TOKEN_KEYS": "not-a-key",
           "QBOT_TEAMS_APP_ID": "app"}
    done = subprocess.run([sys.executable, "-m", "qbot", "serve"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "qbot serve: 4 configuration problems:",
        "  - QBOT_TOKEN_KEYS key #1 is not 32 bytes of URL-safe base64; make one with `qbot keygen`",
        "  - QBOT_CHANNEL_REPLY_MODE must be private or thread, not 'loud'",
        "  - missing configuration: QBOT_OIDC_ISSUER, QBOT_OIDC_CLIENT_ID, QBOT_ROLE_ARN, QBOT_Q_APP_ID",
        "  - Teams needs QBOT_TEAMS_APP_PASSWORD (a client secret of the app) as well, or "
        "QBOT_TEAMS_ALLOW_ANONYMOUS=true to test against a local connector",
    ]


def test_serve_on_a_busy_port_exits_2_with_one_line_and_no_traceback() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**_clean_env(), **COMPLETE, "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(), "QBOT_PORT": str(port)}
        done = subprocess.run([sys.executable, "-m", "qbot", "serve"], env=env, capture_output=True, text=True,
                              timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"qbot serve: port {port} on 127.0.0.1 is in use: stop what holds it, or choose another with QBOT_PORT "
        "(0: any free port) or QBOT_HOST\n"
    )


def test_serve_from_an_env_file_says_what_it_serves_where_and_which_names_it_ignores(
    tmp_path: Path, redis_server: str
) -> None:
    settings = {
        **COMPLETE, "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(), "QBOT_REDIS_URL": redis_server,
        "QBOT_PORT": "0", "QBOT_TEAMS_ALLOW_ANONYMOUS": "true", "QBOT_SLACK_BOT_TOKN": "xoxb-1", "QBOT_ROLE": "worker",
    }
    (tmp_path / "qbot.env").write_text("# qbot\n" + "".join(f"{k}={v}\n" for k, v in settings.items()))
    env = {**_clean_env(), "QBOT_ROLE": "web"}  # the environment wins over the file
    process = subprocess.Popen(
        [sys.executable, "-m", "qbot", "serve", "--env-file", str(tmp_path / "qbot.env")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        surfaces, listening = process.stdout.readline().strip(), process.stdout.readline().strip()
        port = listening.rsplit(":", 1)[1].rstrip(")")  # the one the system chose
        assert surfaces == f"qbot (web) surfaces on: web console (http://127.0.0.1:{port}/), Teams (POST /api/messages)"
        assert listening == f"qbot (web) listening on http://127.0.0.1:{port} (public URL http://127.0.0.1:{port})"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=20)
    assert process.returncode == 0
    assert any(
        line.endswith("WARNING qbot: QBOT_SLACK_BOT_TOKN is not a qbot setting: did you mean QBOT_SLACK_BOT_TOKEN?")
        for line in errors.splitlines()
    ), errors


def test_sandbox_ports_must_be_four_numbers() -> None:
    done = subprocess.run([sys.executable, "-m", "qbot", "sandbox", "--ports", "1,2"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "BOT,IDP,STS,Q" in done.stderr


def _url(output: str, label: str) -> str:
    """The URL `qbot sandbox` printed on its `label` line."""
    line = next(line for line in output.splitlines() if line.startswith(label))
    return next(word for word in line.split() if word.startswith("http"))


@contextlib.contextmanager
def _run_sandbox(tmp_path: Path, *args: str) -> Iterator[tuple[str, dict[str, str]]]:
    """`qbot sandbox ARGS --ports 0,0,0,0` (the system picks free ports: no port is guessed), until it says it is
    ready: yields what it printed and its sandbox.env. Then stopped with SIGTERM, which it handles even when
    started with SIGINT ignored (any background launch); killed if anything failed; its output drained."""
    process = subprocess.Popen(
        [sys.executable, "-m", "qbot", "sandbox", *args, "--ports", "0,0,0,0"],
        cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    stopped = False
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl+C" in line:
                break
        env = dict(line.split("=", 1) for line in (tmp_path / "sandbox.env").read_text().splitlines())
        yield "".join(lines), env
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
        stopped = True
        assert process.returncode == 0
    finally:
        if not stopped:
            process.kill()
            process.communicate(timeout=20)


def test_sandbox_runs_everything_prints_the_urls_and_writes_sandbox_env(tmp_path: Path) -> None:
    with _run_sandbox(tmp_path) as (output, env):
        bot, idp, q = _url(output, "Bot"), _url(output, "IdP"), _url(output, "Q Business")
        assert f"open {bot}/ and sign in as alice (core-team) or bob" in output, output
        assert httpx.get(f"{bot}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{bot}/readyz").status_code == 200
        assert httpx.get(f"{bot}/").status_code == 200
        assert httpx.get(f"{idp}/.well-known/openid-configuration").json()["issuer"] == idp
        assert env["QBOT_OIDC_ISSUER"] == idp and env["QBOT_Q_ENDPOINT_URL"] == q
        assert env["QBOT_PUBLIC_URL"] == bot and env["QBOT_PORT"] == bot.rsplit(":", 1)[1]
        Fernet(env["QBOT_TOKEN_KEYS"].encode())
    with socket.socket() as probe:  # everything it started has stopped with it
        assert probe.connect_ex(("127.0.0.1", int(bot.rsplit(":", 1)[1]))) != 0


def test_sandbox_in_saml_mode_serves_the_bot_and_writes_the_saml_settings(tmp_path: Path) -> None:
    with _run_sandbox(tmp_path, "--saml") as (output, env):
        bot, idp = _url(output, "Bot"), _url(output, "IdP")
        assert "SAML 2.0" in output, output
        assert httpx.get(f"{bot}/healthz").json() == {"status": "ok"}
        assert "EntityDescriptor" in httpx.get(f"{idp}/saml/metadata").text
        assert env["QBOT_SAML_METADATA_URL"] == f"{idp}/saml/metadata" and "QBOT_OIDC_ISSUER" not in env
        provider = env["QBOT_SAML_PROVIDER_ARN"]
        assert provider.startswith("arn:aws:iam::") and ":saml-provider/" in provider
