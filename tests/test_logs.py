"""QBOT_LOG_LEVEL and QBOT_LOG_FORMAT, as `qbot` sets them up: each case is a fresh `python` process that runs
`qbot.cli.main` (so the set-up is the command line's own) and then logs as the bot's modules do."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cryptography.fernet import Fernet

OPAQUE = "opaque-client-secret-4711"  # no pattern knows its shape: only the configured value can redact it
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLWFsaWNl"

SCRIPT = f"""
import logging
from qbot.cli import main
main(["keygen"])
log = logging.getLogger("bot.broker")
log.debug("debug line")
log.info("info line")
log.warning("refreshing with client secret %s and id_token %s", {OPAQUE!r}, {JWT!r})
try:
    raise RuntimeError("IdP said no to " + {OPAQUE!r})
except RuntimeError:
    log.exception("refresh failed\\nsecond line")
"""


def run(**env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QBOT_")}
    environment.update({"QBOT_OIDC_CLIENT_SECRET": OPAQUE, "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(), **env})
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=environment, capture_output=True, text=True,
                            check=True, timeout=60)
    return result.stderr.splitlines()


def test_json_logs_are_one_object_per_line_and_redacted() -> None:
    lines = run(QBOT_LOG_FORMAT="json")
    records = [json.loads(line) for line in lines]  # every line is one JSON object, tracebacks included
    assert [(r["level"], r["logger"]) for r in records] == [
        ("INFO", "bot.broker"), ("WARNING", "bot.broker"), ("ERROR", "bot.broker"),
    ]
    assert records[0]["message"] == "info line" and records[0]["time"].endswith("+00:00")
    assert records[1]["message"] == "refreshing with client secret [redacted] and id_token [redacted]"
    assert records[2]["message"] == "refresh failed\nsecond line"
    assert "RuntimeError: IdP said no to [redacted]" in records[2]["exception"]
    text = "\n".join(lines)
    assert OPAQUE not in text and JWT not in text


def test_text_is_the_default_and_redacted_too() -> None:
    lines = run()
    assert any(line.endswith("WARNING bot.broker: refreshing with client secret [redacted] and id_token [redacted]")
               for line in lines), lines
    assert "RuntimeError: IdP said no to [redacted]" in lines
    assert not any(line.startswith("{") for line in lines)
    assert not any("debug line" in line for line in lines) and any("info line" in line for line in lines)


def test_the_level_is_set_by_qbot_log_level() -> None:
    assert not any("info line" in line for line in run(QBOT_LOG_LEVEL="warning"))
    assert any("debug line" in line for line in run(QBOT_LOG_LEVEL="DEBUG"))


def test_a_misspelt_level_or_format_logs_at_the_defaults_and_says_so() -> None:
    lines = run(QBOT_LOG_LEVEL="verbose", QBOT_LOG_FORMAT="jsn")
    assert "QBOT_LOG_LEVEL='VERBOSE' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL: logging at INFO" in lines[0]
    assert "QBOT_LOG_FORMAT='jsn' is not text or json: logging as text" in lines[1]
    assert any(line.endswith("INFO bot.broker: info line") for line in lines)
