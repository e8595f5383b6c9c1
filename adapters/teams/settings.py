"""The `QBOT_TEAMS_*` settings, and which of the three ways to run follows from them.

- App id and password (and tenant id for a single-tenant bot): the real thing. Every activity must carry a
  Bot Framework token for the app id; replies are authenticated with an Entra token (MSAL).
- `QBOT_TEAMS_ALLOW_ANONYMOUS=true` with an app id but no password: tokens are still checked on the way in,
  replies go out without credentials (only a local stand-in of the Bot Framework accepts them). Tests run so.
- `QBOT_TEAMS_ALLOW_ANONYMOUS=true` without an app id: nothing is checked; local testing only.

With none of these set, Teams is off. Half a configuration (an app id without a password or anonymous mode, a
password or tenant without an app id) is a ConfigError at start-up, as half a Slack one is: never a
silently missing adapter. `qbot doctor` checks these same settings (`adapters/teams/doctor.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from adapters.teams.files import DEFAULT_FILE_HOSTS, parse_file_hosts
from bot.config import Problems, Settings, env_flag

DEFAULT_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
DEFAULT_LOGIN_URL = "https://login.microsoftonline.com"  # where the app's Entra tokens come from
MULTI_TENANT = "botframework.com"  # the token authority of a (legacy) multi-tenant bot registration


@dataclass(frozen=True)
class TeamsSettings:
    app_id: str = ""
    app_password: str = ""
    tenant_id: str = ""
    allow_anonymous: bool = False
    openid_metadata_url: str = DEFAULT_OPENID_METADATA_URL
    file_hosts: tuple[str, ...] = DEFAULT_FILE_HOSTS  # where attached files' downloadUrls may point
    login_url: str = DEFAULT_LOGIN_URL

    @classmethod
    def from_settings(cls, settings: Settings) -> TeamsSettings:
        return cls.from_env(settings.extra)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TeamsSettings:
        """ConfigProblems naming every malformed value (QBOT_TEAMS_ALLOW_ANONYMOUS, QBOT_TEAMS_FILE_HOSTS) and
        half a configuration, all at once."""
        problems = Problems()
        app_id = (env.get("QBOT_TEAMS_APP_ID") or "").strip()
        app_password = env.get("QBOT_TEAMS_APP_PASSWORD") or ""
        tenant_id = (env.get("QBOT_TEAMS_TENANT_ID") or "").strip()
        allow_anonymous = problems.read(lambda: env_flag(env, "QBOT_TEAMS_ALLOW_ANONYMOUS", False), None)
        if app_id and not app_password and allow_anonymous is False:
            problems.add(
                "Teams needs QBOT_TEAMS_APP_PASSWORD (a client secret of the app) as well, "
                "or QBOT_TEAMS_ALLOW_ANONYMOUS=true to test against a local connector"
            )
        if not app_id and (app_password or tenant_id):
            given = " and ".join(n for n, v in (("QBOT_TEAMS_APP_PASSWORD", app_password),
                                                ("QBOT_TEAMS_TENANT_ID", tenant_id)) if v)
            problems.add(f"Teams needs QBOT_TEAMS_APP_ID (the bot's Microsoft app id) as well: {given} is set")
        fallback: tuple[str, ...] = DEFAULT_FILE_HOSTS
        file_hosts = problems.read(lambda: parse_file_hosts(env.get("QBOT_TEAMS_FILE_HOSTS")), fallback)
        problems.raise_any()
        return cls(
            app_id=app_id,
            app_password=app_password,
            tenant_id=tenant_id,
            allow_anonymous=bool(allow_anonymous),
            openid_metadata_url=(env.get("QBOT_TEAMS_OPENID_METADATA_URL") or DEFAULT_OPENID_METADATA_URL).strip(),
            file_hosts=file_hosts,
            login_url=(env.get("QBOT_TEAMS_LOGIN_URL") or DEFAULT_LOGIN_URL).strip().rstrip("/"),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.app_id and self.app_password) or self.allow_anonymous

    @property
    def token_tenant(self) -> str:
        """Whose Entra tokens the app's replies carry: the tenant, or Bot Framework's for a multi-tenant bot."""
        return self.tenant_id or MULTI_TENANT

    @property
    def checks_tokens(self) -> bool:
        """Incoming activities must carry a valid Bot Framework token (always, once there is an app id)."""
        return bool(self.app_id)

    @property
    def signs_replies(self) -> bool:
        """Outgoing calls carry an Entra token for the app; otherwise they go out anonymously."""
        return bool(self.app_id and self.app_password)
