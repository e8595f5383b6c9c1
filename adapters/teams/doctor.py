"""`qbot doctor`'s Teams check: the settings the adapter would start with, and a Bot Framework token asked for
with the app's id and password (client credentials at the Microsoft login service; nothing is sent to Teams).

It reads the environment through `TeamsSettings`, so tenant, login URL and the anonymous mode mean here what
they mean to the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from adapters.checks import FAIL, OK, SKIP, WARN, Check, json_field
from adapters.teams.settings import TeamsSettings
from bot.errors import ConfigError

BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"


def check_teams(env: Mapping[str, str], http: httpx.Client) -> Check:
    try:
        settings = TeamsSettings.from_env(env)
    except ConfigError as err:
        return Check("Teams", FAIL, str(err), "fix the QBOT_TEAMS_* setting it names")
    app_id = settings.app_id
    if not app_id:
        return Check("Teams", SKIP, "not configured (QBOT_TEAMS_APP_ID)")
    if not settings.app_password:
        if settings.allow_anonymous:
            return Check("Teams", WARN, "anonymous mode: replies go out unauthenticated (local testing only)",
                         "set QBOT_TEAMS_APP_PASSWORD for a real Teams deployment")
        return Check("Teams", FAIL, "QBOT_TEAMS_APP_PASSWORD is unset", "set it to a client secret of the app")
    tenant = settings.token_tenant
    url = f"{settings.login_url}/{tenant}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": app_id,
        "client_secret": settings.app_password,
        "scope": BOT_FRAMEWORK_SCOPE,
    }
    try:
        response = http.post(url, data=form)
    except httpx.HTTPError as err:
        return Check("Teams", FAIL, f"{url} cannot be reached ({type(err).__name__})",
                     "check the network path to the Microsoft login service")
    if response.status_code == 200 and json_field(response, "access_token"):
        return Check("Teams", OK, f"app {app_id} obtains a Bot Framework token from tenant {tenant}")
    error = json_field(response, "error") or f"HTTP {response.status_code}"
    description = (json_field(response, "error_description") or "").split("\n")[0][:160]
    if error == "invalid_client":
        fix = "QBOT_TEAMS_APP_PASSWORD is wrong or expired: make a new client secret for the app"
    elif error in ("unauthorized_client", "invalid_request"):
        fix = "check QBOT_TEAMS_APP_ID, and QBOT_TEAMS_TENANT_ID for a single-tenant app (unset for multi-tenant)"
    else:
        fix = "check QBOT_TEAMS_APP_ID, QBOT_TEAMS_APP_PASSWORD and QBOT_TEAMS_TENANT_ID"
    return Check("Teams", FAIL, f"no token for app {app_id} ({error}: {description})".rstrip(": )") + ")", fix)
