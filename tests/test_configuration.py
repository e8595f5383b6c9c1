"""The whole configuration before anything starts (qbot/configuration.py): every problem of every part at once,
half a Teams configuration refused like half a Slack one, misspelt names warned about, --env-file files read."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from adapters.slack.settings import SlackSettings
from adapters.teams.settings import TeamsSettings
from bot.config import ConfigProblems, Settings
from bot.errors import ConfigError
from qbot.admin.doctor import Doctor
from qbot.app import build_app
from qbot.configuration import (
    KNOWN_SETTINGS,
    EnvFileError,
    configuration_problems,
    read_env_file,
    unknown_settings,
)

ROOT = Path(__file__).resolve().parents[1]
COMPLETE = {
    "QBOT_OIDC_ISSUER": "https://idp.example.com",
    "QBOT_OIDC_CLIENT_ID": "qbot",
    "QBOT_ROLE_ARN": "arn:aws:iam::123456789012:role/qbot-user",
    "QBOT_Q_APP_ID": "5a4db0a1-1b0e-4f43-9d5c-0e7f3b6a2c11",
    "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(),
}
TEAMS_PASSWORD_MISSING = (
    "Teams needs QBOT_TEAMS_APP_PASSWORD (a client secret of the app) as well, "
    "or QBOT_TEAMS_ALLOW_ANONYMOUS=true to test against a local connector"
)


def test_a_complete_configuration_has_no_problem() -> None:
    assert configuration_problems(COMPLETE) == []


def test_every_part_reports_every_problem_in_one_list() -> None:
    env = {
        "QBOT_CHANNEL_REPLY_MODE": "loud",
        "QBOT_PUBLIC_URL": "http://qbot.example.com",
        "QBOT_SLACK_SIGNING_SECRET": "s",
        "QBOT_SLACK_APP_TOKEN": "xoxb-not-an-app-token",
        "QBOT_TEAMS_APP_ID": "11111111-2222-3333-4444-555555555555",
        "QBOT_GROUP_SYNC": "true",
        "QBOT_MAX_CONNECTIONS": "many",
        "QBOT_FILE_BUDGET_MB": "0",
        "QBOT_WEB_CONSOLE": "sometimes",
        "QBOT_WEB_SESSION_IDLE_SECONDS": "-1",
    }
    assert configuration_problems(env) == [
        "QBOT_CHANNEL_REPLY_MODE must be private or thread, not 'loud'",
        "missing configuration: QBOT_OIDC_ISSUER, QBOT_OIDC_CLIENT_ID, QBOT_ROLE_ARN, QBOT_Q_APP_ID, QBOT_TOKEN_KEYS",
        "QBOT_PUBLIC_URL must be https:// (plain http only on loopback, for testing)",
        "Slack needs QBOT_SLACK_BOT_TOKEN (the xoxb- bot token) as well",
        "QBOT_SLACK_APP_TOKEN must be an app-level token (xapp-...) with connections:write",
        TEAMS_PASSWORD_MISSING,
        "QBOT_GROUP_SYNC=true needs QBOT_Q_INDEX_ID (`qbot admin provision` prints it)",
        "QBOT_MAX_CONNECTIONS must be a whole number, not 'many'",
        "QBOT_FILE_BUDGET_MB must be at least 1",
        "QBOT_WEB_CONSOLE must be true or false, not 'sometimes'",
        "QBOT_WEB_SESSION_IDLE_SECONDS must be at least 1",
    ]
    # the doctor reads well-formedness only where asked: what a serving bot needs is `complete`'s to add
    assert "missing configuration" not in " ".join(configuration_problems(env, complete=False))


def test_slack_names_everything_it_lacks_at_once() -> None:
    with pytest.raises(ConfigProblems) as refused:
        SlackSettings.from_env({"QBOT_SLACK_APP_TOKEN": "xoxb-1", "QBOT_SLACK_API_URL": "http://slack.example.com/"})
    assert refused.value.problems == (
        "Slack needs QBOT_SLACK_BOT_TOKEN (the xoxb- bot token) as well",
        "QBOT_SLACK_APP_TOKEN must be an app-level token (xapp-...) with connections:write",
        "QBOT_SLACK_API_URL must be an https URL (plain http only on loopback), not 'http://slack.example.com/'",
    )


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"QBOT_TEAMS_APP_ID": "app"}, TEAMS_PASSWORD_MISSING),
        ({"QBOT_TEAMS_APP_PASSWORD": "secret"},
         "Teams needs QBOT_TEAMS_APP_ID (the bot's Microsoft app id) as well: QBOT_TEAMS_APP_PASSWORD is set"),
        ({"QBOT_TEAMS_APP_PASSWORD": "secret", "QBOT_TEAMS_TENANT_ID": "contoso", "QBOT_TEAMS_ALLOW_ANONYMOUS": "1"},
         "Teams needs QBOT_TEAMS_APP_ID (the bot's Microsoft app id) as well: QBOT_TEAMS_APP_PASSWORD and "
         "QBOT_TEAMS_TENANT_ID is set"),
    ],
    ids=["app id only", "password only", "password and tenant, anonymous"],
)
def test_half_a_teams_configuration_is_refused_like_half_a_slack_one(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        TeamsSettings.from_env(env)
    assert refused.value.user_message == problem
    assert configuration_problems({**COMPLETE, **env}) == [problem]


def test_whole_teams_configurations_and_none_at_all_are_accepted() -> None:
    assert not TeamsSettings.from_env({}).enabled
    assert TeamsSettings.from_env({"QBOT_TEAMS_APP_ID": "app", "QBOT_TEAMS_APP_PASSWORD": "secret"}).enabled
    local = TeamsSettings.from_env({"QBOT_TEAMS_APP_ID": "app", "QBOT_TEAMS_ALLOW_ANONYMOUS": "true"})
    assert local.enabled and not local.signs_replies
    # a malformed flag is named once, not also as the half configuration it would otherwise make
    with pytest.raises(ConfigProblems) as refused:
        TeamsSettings.from_env({"QBOT_TEAMS_APP_ID": "app", "QBOT_TEAMS_ALLOW_ANONYMOUS": "maybe"})
    assert refused.value.problems == ("QBOT_TEAMS_ALLOW_ANONYMOUS must be true or false, not 'maybe'",)


def test_the_bot_is_not_built_with_half_a_teams_configuration(redis_server: str) -> None:
    """It used to start with Teams silently off (an ERROR in the log): now serve refuses, as for Slack."""
    settings = Settings.from_env({**COMPLETE, "QBOT_REDIS_URL": redis_server, "QBOT_TEAMS_APP_ID": "app"})
    with pytest.raises(ConfigError) as refused:
        build_app(settings)
    assert refused.value.user_message == TEAMS_PASSWORD_MISSING


def test_a_misspelt_setting_is_named_with_the_closest_known_one() -> None:
    env = {**COMPLETE, "QBOT_SLACK_BOT_TOKN": "xoxb-1", "QBOT_PUBLIC_ULR": "https://q.example.com",
           "QBOT_REDIS": "redis://r", "QBOT_FAVOURITE_COLOUR": "blue", "QBOTX": "x", "OTHER": "y"}
    assert unknown_settings(env) == [
        "QBOT_FAVOURITE_COLOUR is not a qbot setting (README: Configuration lists every setting)",
        "QBOT_PUBLIC_ULR is not a qbot setting: did you mean QBOT_PUBLIC_URL?",
        "QBOT_REDIS is not a qbot setting: did you mean QBOT_REDIS_URL?",
        "QBOT_SLACK_BOT_TOKN is not a qbot setting: did you mean QBOT_SLACK_BOT_TOKEN?",
    ]
    assert unknown_settings(COMPLETE) == []


@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ, reason="reads the source, which mutation testing rewrites"
)
def test_the_known_settings_are_exactly_the_qbot_names_in_the_code() -> None:
    """A setting added to the code but not to KNOWN_SETTINGS would be warned about as unknown; one retired from the
    code but still listed would never be."""
    in_code: set[str] = set()
    for folder in ("bot", "adapters", "qbot", "sandbox", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            in_code.update(re.findall(r"\bQBOT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    in_code = {name for name in in_code if not name.endswith("_")}  # prefixes (QBOT_SLACK_) are no settings
    assert in_code - KNOWN_SETTINGS == set(), "add these to qbot/configuration.py KNOWN_SETTINGS"
    assert KNOWN_SETTINGS - in_code == set(), "nothing reads these any more"


def test_an_env_file_is_read_as_key_value_lines(tmp_path: Path) -> None:
    path = tmp_path / "qbot.env"
    path.write_text(
        "# production\n\nQBOT_PORT=4000\nexport QBOT_HOST = 0.0.0.0\nQBOT_SESSION_SECRET=\"a#b c\"\n"
        "QBOT_OIDC_CLIENT_SECRET='x=y'\nQBOT_PUBLIC_URL=\n"
    )
    assert read_env_file(path) == {
        "QBOT_PORT": "4000", "QBOT_HOST": "0.0.0.0", "QBOT_SESSION_SECRET": "a#b c",
        "QBOT_OIDC_CLIENT_SECRET": "x=y", "QBOT_PUBLIC_URL": "",
    }
    path.write_text("QBOT_PORT=4000\nQBOT_HOST 0.0.0.0\n")
    with pytest.raises(EnvFileError) as refused:
        read_env_file(path)
    assert str(refused.value) == f"{path} line 2: expected KEY=VALUE"
    with pytest.raises(EnvFileError) as missing:
        read_env_file(tmp_path / "absent.env")
    assert str(missing.value) == f"cannot read --env-file {tmp_path / 'absent.env'} (No such file or directory)"


def test_the_doctor_names_every_problem_in_its_configuration_check_and_warns_of_misspelt_names() -> None:
    env = {**COMPLETE, "QBOT_CHANNEL_REPLY_MODE": "loud", "QBOT_TEAMS_APP_ID": "app", "QBOT_PORTT": "80"}
    with httpx.Client() as http:
        broken = Doctor(env, http=http).configuration()
        misspelt = Doctor({**COMPLETE, "QBOT_PORTT": "80"}, http=http).configuration()
    assert broken.line() == (
        "[FAIL] configuration: 2 problems: QBOT_CHANNEL_REPLY_MODE must be private or thread, not 'loud'; "
        f"{TEAMS_PASSWORD_MISSING}; QBOT_PORTT is not a qbot setting: did you mean QBOT_PORT? "
        "-> fix: set the QBOT_* variables they name (README: Configuration)"
    )
    assert misspelt.line() == (
        "[warn] configuration: QBOT_PORTT is not a qbot setting: did you mean QBOT_PORT? "
        "-> fix: rename or remove them: qbot ignores them"
    )
