"""`qbot doctor`'s Slack check: the settings the adapter would start with, and the bot token tried on auth.test.

It reads the environment through `SlackSettings`, so it fails exactly where `qbot serve` would refuse to start
(half a configuration, a plain-http API URL) and calls the API URL the adapter would use.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from adapters.checks import FAIL, OK, SKIP, Check
from adapters.slack.settings import SlackSettings
from bot.errors import ConfigError


def check_slack(env: Mapping[str, str], http: httpx.Client) -> Check:
    try:
        settings = SlackSettings.from_env(env)
    except ConfigError as err:
        return Check("Slack", FAIL, str(err), "complete the QBOT_SLACK_* settings, or unset them all to turn Slack off")
    if settings is None:
        return Check("Slack", SKIP, "not configured (QBOT_SLACK_BOT_TOKEN)")
    api = settings.api_url
    try:
        response = http.post(api + "auth.test", headers={"Authorization": f"Bearer {settings.bot_token}"})
        answer = response.json()
    except (httpx.HTTPError, ValueError) as err:
        return Check("Slack", FAIL, f"{api}auth.test cannot be reached ({type(err).__name__})",
                     "check the network path to Slack (and QBOT_SLACK_API_URL)")
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else None
        return Check("Slack", FAIL, f"auth.test refuses the bot token ({error or response.status_code})",
                     "reinstall the Slack app and set QBOT_SLACK_BOT_TOKEN to its Bot User OAuth Token (xoxb-...)")
    return Check("Slack", OK, f"the bot token works: {answer.get('user', '?')} in {answer.get('team', '?')}")
