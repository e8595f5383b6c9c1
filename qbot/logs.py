"""Where logs go and how they look: `QBOT_LOG_LEVEL` [INFO] and `QBOT_LOG_FORMAT` [text | json].

`json` writes one JSON object per line (time, level, logger, message, and the traceback as `exception`), the
shape log collectors (CloudWatch, Loki, Elasticsearch) index without a parsing rule. Redaction is not this
module's job and does not depend on the format: `bot.redaction` redacts every record as it is born, before any
formatter sees it, so both formats print only the redacted message and traceback (a record's `args` and
exception object are gone by then).

A misspelt level or format does not stop the bot: it logs at the default and says so in the first log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries that are noisy below WARNING (and not trusted to be discreet: redaction is what guarantees that).
NOISY = ("botocore", "boto3", "urllib3", "authlib", "httpx", "httpcore")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; newlines inside a message or traceback are escaped, never split the line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:  # only without redaction installed (tests of this class)
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(env: Mapping[str, str]) -> None:
    """Set up the root logger from the environment (once: like `logging.basicConfig`, nothing changes when the
    root logger already has handlers, as under pytest)."""
    problems: list[str] = []
    level_name = (env.get("QBOT_LOG_LEVEL") or "INFO").strip().upper()
    if level_name not in LEVELS:
        problems.append(f"QBOT_LOG_LEVEL={level_name!r} is not one of {', '.join(LEVELS)}: logging at INFO")
        level_name = "INFO"
    form = (env.get("QBOT_LOG_FORMAT") or "text").strip().lower()
    if form not in FORMATS:
        problems.append(f"QBOT_LOG_FORMAT={form!r} is not text or json: logging as text")
        form = "text"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    level = logging.getLevelNamesMapping()[level_name]
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    for problem in problems:
        logging.getLogger("qbot").warning(problem)
