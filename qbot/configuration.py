"""The whole `QBOT_*` configuration as `qbot serve` and `qbot doctor` see it before anything starts.

- `configuration_problems`: every problem of every part (the core's settings, each adapter's, group sync, the
  HTTP front, the web console, file downloads) in one list, so an operator fixes them in one round instead of
  meeting them one start at a time.
- `unknown_settings`: a `QBOT_*` name nothing reads (a typo silently does nothing), with the closest known name.
- `read_env_file`: the `--env-file FILE` both commands take.

`KNOWN_SETTINGS` is the one list of the names qbot reads; tests/test_configuration.py keeps it equal to the
`QBOT_*` names in the code.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path

from adapters.slack.settings import SlackSettings
from adapters.teams.settings import TeamsSettings
from adapters.web.console import SESSION_IDLE_SECONDS, SESSION_TTL_SECONDS
from bot.attachments import DownloadBudget
from bot.config import Problems, Settings, env_flag, env_int
from bot.group_sync import GroupSyncSettings
from qbot.server import FrontLimits

KNOWN_SETTINGS = frozenset({
    # the core (bot/config.py), and `qbot serve --role`
    "QBOT_HOST", "QBOT_PORT", "QBOT_PUBLIC_URL", "QBOT_REDIS_URL", "QBOT_REDIS_MAX_CONNECTIONS", "QBOT_ROLE",
    "QBOT_OIDC_ISSUER", "QBOT_OIDC_CLIENT_ID", "QBOT_OIDC_CLIENT_SECRET", "QBOT_OIDC_SCOPES",
    "QBOT_AWS_REGION", "QBOT_ROLE_ARN", "QBOT_Q_APP_ID", "QBOT_STS_ENDPOINT_URL", "QBOT_Q_ENDPOINT_URL",
    "QBOT_TOKEN_KEYS", "QBOT_LINK_TTL_SECONDS", "QBOT_REQUIRE_EMAIL_MATCH", "QBOT_CHANNEL_REPLY_MODE",
    "QBOT_CONVERSATION_TTL_SECONDS", "QBOT_Q_MAX_CONCURRENCY", "QBOT_WORKER_CONCURRENCY",
    "QBOT_TURN_CLAIM_SECONDS", "QBOT_SESSION_SECRET",
    "QBOT_SAML_METADATA_URL", "QBOT_SAML_METADATA_FILE", "QBOT_SAML_SP_ENTITY_ID", "QBOT_SAML_PROVIDER_ARN",
    "QBOT_SAML_SESSION_SECONDS",
    # Slack (adapters/slack/settings.py) and Teams (adapters/teams/settings.py)
    "QBOT_SLACK_BOT_TOKEN", "QBOT_SLACK_SIGNING_SECRET", "QBOT_SLACK_APP_TOKEN", "QBOT_SLACK_API_URL",
    "QBOT_SLACK_ASSISTANT", "QBOT_SLACK_SUGGESTED_PROMPTS",
    "QBOT_TEAMS_APP_ID", "QBOT_TEAMS_APP_PASSWORD", "QBOT_TEAMS_TENANT_ID", "QBOT_TEAMS_ALLOW_ANONYMOUS",
    "QBOT_TEAMS_OPENID_METADATA_URL", "QBOT_TEAMS_FILE_HOSTS", "QBOT_TEAMS_LOGIN_URL",
    # the web console and its sessions (adapters/web/console.py)
    "QBOT_WEB_CONSOLE", "QBOT_WEB_SESSION_TTL_SECONDS", "QBOT_WEB_SESSION_IDLE_SECONDS",
    # files attached to questions (bot/attachments.py)
    "QBOT_FILE_BUDGET_MB", "QBOT_FILE_BUDGET_PER_USER_MB", "QBOT_FILE_WAIT_SECONDS",
    # the HTTP front (qbot/server.py)
    "QBOT_MAX_CONNECTIONS", "QBOT_HEADER_TIMEOUT_SECONDS", "QBOT_BODY_TIMEOUT_SECONDS",
    # group sync (bot/group_sync.py) and the administrator's commands (qbot/admin/, bot/aws_clients.py)
    "QBOT_GROUP_SYNC", "QBOT_GROUP_SYNC_GROUPS", "QBOT_GROUP_SYNC_DEBOUNCE_SECONDS", "QBOT_GROUP_SYNC_SWEEP_SECONDS",
    "QBOT_Q_INDEX_ID", "QBOT_AWS_PROFILE", "QBOT_IAM_ENDPOINT_URL",
    # logging (qbot/logs.py) and who may read /metrics (qbot/health.py)
    "QBOT_LOG_LEVEL", "QBOT_LOG_FORMAT", "QBOT_METRICS_TOKEN",
})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unknown_settings(env: Mapping[str, str]) -> list[str]:
    """One warning per `QBOT_*` name that nothing reads, with the closest known name when there is one."""
    known = {name.removeprefix("QBOT_"): name for name in KNOWN_SETTINGS}  # the prefix they share is no likeness
    warnings = []
    for name in sorted(n for n in env if n.startswith("QBOT_") and n not in KNOWN_SETTINGS):
        close = difflib.get_close_matches(name.removeprefix("QBOT_"), known, n=1)
        hint = f": did you mean {known[close[0]]}?" if close else " (README: Configuration lists every setting)"
        warnings.append(f"{name} is not a qbot setting{hint}")
    return warnings


def configuration_problems(env: Mapping[str, str], *, complete: bool = True) -> list[str]:
    """Every problem `qbot serve` would refuse to start with, in one list ([] when there is none). `complete`:
    also what a serving bot needs (OIDC or SAML, the role, Q, the token keys), not only well-formed values."""
    problems = Problems()
    settings, malformed = Settings.read(env)
    problems.found.extend(malformed)
    if complete:
        problems.read(settings.check_complete, None)
    problems.read(lambda: SlackSettings.from_env(env), None)
    problems.read(lambda: TeamsSettings.from_env(env), None)
    problems.read(lambda: GroupSyncSettings.from_env(env), None)
    problems.read(lambda: FrontLimits.from_env(env), None)
    problems.read(lambda: DownloadBudget.from_env(env), None)
    # the web console's own (adapters/web/console.py reads them again when it is built)
    problems.read(lambda: env_flag(env, "QBOT_WEB_CONSOLE", True), None)
    problems.read(lambda: env_int(env, "QBOT_WEB_SESSION_TTL_SECONDS", SESSION_TTL_SECONDS), None)
    problems.read(lambda: env_int(env, "QBOT_WEB_SESSION_IDLE_SECONDS", SESSION_IDLE_SECONDS), None)
    return problems.found


class EnvFileError(ValueError):
    """An --env-file that cannot be read or has a line that is not KEY=VALUE; the message names file and line."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (an `export ` prefix and quotes around the value are dropped); blank lines and lines starting
    with # are skipped. A # inside a value is part of it (secrets may hold one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise EnvFileError(f"cannot read --env-file {path} ({getattr(err, 'strerror', None) or err})") from None
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not _NAME.fullmatch(key):
            raise EnvFileError(f"{path} line {number}: expected KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env
