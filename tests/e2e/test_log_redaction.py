"""With every logger at DEBUG, no secret of a real link and question reaches a log handler.

botocore logs STS requests (the id_token) and responses (the secret key and session token) and signs with the
session token in its canonical requests; the HTTP clients log token requests and responses. The bot's
redaction is installed by the app factory, so the operator's logging configuration cannot undo it.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from bot.model import Answer, ChatIdentity, Notice
from sandbox.world import CLIENT_ID, CLIENT_SECRET, Sandbox
from tests.e2e.conftest import RunningBot
from tests.signin import follow_link

ALICE = ChatIdentity("test", "T1", "U-ALICE")
LIBRARIES = ("botocore", "boto3", "urllib3", "authlib", "httpx", "httpcore", "aiohttp", "redis", "asyncio",
             "qbot", "bot", "adapters", "sandbox", "joserfc", "s3transfer")


@pytest.fixture
def everything_at_debug() -> Iterator[io.StringIO]:
    """Every logger at DEBUG into one capturing handler, as an operator debugging a problem might set it; the
    record factory starts as Python's own, so only what the bot installs can redact."""
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in LIBRARIES]
    loggers += [item for item in logging.root.manager.loggerDict.values() if isinstance(item, logging.Logger)]
    saved = [(logger, logger.level, logger.disabled) for logger in [logging.root, *loggers]]
    for logger, _, _ in saved:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if logger is logging.root or not logger.propagate:
            logger.addHandler(handler)
    try:
        yield captured
    finally:
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled
            logger.removeHandler(handler)
        logging.setLogRecordFactory(factory)


def secrets_of_the_run(bot: RunningBot, sandbox: Sandbox, id_tokens: list[str], redis_url: str) -> dict[str, str]:
    """Every secret the link and the question involved, by what it is."""
    found: dict[str, str] = {
        "client secret": CLIENT_SECRET,
        "client credentials (HTTP Basic)": base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode(),
    }
    for n, key in enumerate(bot.settings.token_keys):
        found[f"token key {n}"] = key
    for n, token in enumerate(id_tokens):
        found[f"id_token {n}"] = token
    for n, issued in enumerate(sandbox.idp.access_tokens.values()):
        found[f"access token {n}"] = issued.access_token
        if issued.refresh_token:
            found[f"refresh token {n}"] = issued.refresh_token
    for n, creds in enumerate(c for c in sandbox.credentials.all() if c.session_token):
        found[f"AWS secret access key {n}"] = creds.secret_access_key
        found[f"AWS session token {n}"] = str(creds.session_token)
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter("qbot:*"):
            if client.type(key) == b"string":
                value = client.get(key)
                if value and value.startswith(b"gAAAAA"):  # a sealed (Fernet) value
                    found[f"sealed {key.decode()}"] = value.decode()
    return found


def test_no_secret_of_a_link_and_a_question_reaches_any_log_handler(
    everything_at_debug: io.StringIO, make_bot: Callable[..., RunningBot], sandbox: Sandbox, redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    id_tokens: list[str] = []
    mint = sandbox.idp.mint_id_token

    def recorded(*args: Any, **kwargs: Any) -> str:
        token = mint(*args, **kwargs)
        id_tokens.append(token)
        return token

    monkeypatch.setattr(sandbox.idp, "mint_id_token", recorded)  # a spy on the stand-in: it only records
    bot = make_bot()

    notice = bot.ask(ALICE, "qlink", profile_email="alice@example.com")
    assert isinstance(notice, Notice) and notice.url
    assert "Linked as alice@example.com" in follow_link(notice.url, "alice").text
    answer = bot.ask(ALICE, "What is Project Aurora?")
    assert isinstance(answer, Answer) and answer.sources
    secrets = secrets_of_the_run(bot, sandbox, id_tokens, redis_url)  # before unlink: the vault still holds them
    assert "unlinked" in str(bot.ask(ALICE, "qunlink")).lower()  # the refresh token is revoked at the IdP

    logged = everything_at_debug.getvalue()
    assert "botocore" in logged and "AssumeRoleWithWebIdentity" in logged  # DEBUG really was on
    assert len(id_tokens) >= 2 and any(name.startswith("refresh token") for name in secrets)
    assert any(name.startswith("AWS session token") for name in secrets)
    leaked = sorted(name for name, value in secrets.items() if value in logged)
    assert leaked == [], f"{leaked} reached a log handler"


def test_configured_secrets_without_a_shape_are_redacted_by_value(
    everything_at_debug: io.StringIO, make_bot: Callable[..., RunningBot]
) -> None:
    """A secret no pattern knows (a password, an opaque token) is redacted because the app factory registers
    the configured ones."""
    make_bot(QBOT_METRICS_TOKEN="opaque metrics credential 42")
    logging.getLogger("aiohttp.server").debug("request header X-Metrics: %s", "opaque metrics credential 42")
    logged = everything_at_debug.getvalue()
    assert "request header X-Metrics: [redacted]" in logged and "opaque metrics credential 42" not in logged
