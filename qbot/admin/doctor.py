"""`qbot doctor`: checks a configuration end to end, one line per check, each failure with its fix.

Every check talks to the real thing with the configured values and changes nothing anywhere: Redis
(`doctor_redis`), the IdP (`doctor_idp`; in SAML mode `doctor_saml` instead), IAM and Q Business
(`doctor_aws`), and each chat platform through its adapter's own settings (`adapters/slack/doctor.py`,
`adapters/teams/doctor.py`). A check that breaks is a failed check, never a crashed doctor.
Statuses: ok, FAIL (exit status 1), warn (works, but worth fixing), skip (not configured, or not readable).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import httpx

from adapters.checks import FAIL, OK, SKIP, WARN, Check
from adapters.slack.doctor import check_slack
from adapters.teams.doctor import check_teams
from bot.aws_clients import AdminAws
from bot.config import env_flag
from bot.errors import ConfigError
from qbot.admin.doctor_aws import AwsChecks
from qbot.admin.doctor_idp import IdpChecks
from qbot.admin.doctor_redis import RedisChecks
from qbot.admin.doctor_saml import SamlChecks, saml_mode
from qbot.configuration import configuration_problems, unknown_settings

__all__ = ["Check", "Doctor", "run_doctor"]


class Doctor:
    def __init__(self, env: Mapping[str, str], *, http: httpx.Client, aws: AdminAws | None = None) -> None:
        self.env = env
        self._http = http
        self._aws = aws or AdminAws.from_env(env)

    def run(self) -> Iterator[Check]:
        stores = RedisChecks(self.env)
        aws = AwsChecks(self.env, self._aws)
        steps: list[tuple[str, Callable[[], Check]]] = [
            ("configuration", self.configuration),
            ("email match", self.email_match),
            ("Redis", stores.redis),
            ("Redis memory", stores.redis_memory),
            ("token keys", stores.token_keys),
            ("channel policies", stores.channel_policies),
            *self._identity_provider_steps(),
            ("IAM role", aws.role),
            ("Q Business application", aws.application),
            ("group sync", aws.group_sync),
            ("Slack", lambda: check_slack(self.env, self._http)),
            ("Teams", lambda: check_teams(self.env, self._http)),
        ]
        try:
            for name, step in steps:
                try:
                    yield step()
                except Exception as err:  # a check that breaks is a failed check, never a crashed doctor
                    yield Check(name, FAIL, f"the check itself failed: {type(err).__name__}: {err}")
        finally:
            stores.close()

    def _identity_provider_steps(self) -> list[tuple[str, Callable[[], Check]]]:
        """The IdP checks of the deployment's mode: OIDC's need an issuer and a client, SAML's the metadata."""
        if saml_mode(self.env):
            saml = SamlChecks(self.env, self._http, self._aws)
            return [
                ("SAML metadata", saml.metadata),
                ("SAML certificates", saml.certificates),
                ("SAML ACS URL", saml.acs),
                ("SAML provider", saml.provider),
            ]
        idp = IdpChecks(self.env, self._http)
        return [
            ("IdP discovery", idp.idp_discovery),
            ("IdP client", idp.idp_client),
            ("IdP redirect URI", idp.idp_redirect_uri),
        ]

    def configuration(self) -> Check:
        """Every problem `qbot serve` would refuse to start with, all in one line; misspelt names as a warning."""
        problems = configuration_problems(self.env)
        unknown = unknown_settings(self.env)
        if problems:
            count = f"{len(problems)} problems: " if len(problems) > 1 else ""
            return Check("configuration", FAIL, count + "; ".join([*problems, *unknown]),
                         "set the QBOT_* variables they name (README: Configuration)")
        if unknown:
            return Check("configuration", WARN, "; ".join(unknown), "rename or remove them: qbot ignores them")
        return Check("configuration", OK, "every required QBOT_* setting is present and well-formed")

    def email_match(self) -> Check:
        """A warning, not a failure: turning the rule off is a deployment's choice (an IdP without emails, say),
        but whoever makes it must know what it costs."""
        try:
            required = env_flag(self.env, "QBOT_REQUIRE_EMAIL_MATCH", True)
        except ConfigError:
            return Check("email match", SKIP, "QBOT_REQUIRE_EMAIL_MATCH is neither true nor false (see configuration)")
        if not required:
            return Check(
                "email match", WARN, "QBOT_REQUIRE_EMAIL_MATCH=false: sign-in links become forwardable. Whoever "
                "opens a link and signs in binds their own IdP account to the chat account that asked for it, which "
                "then asks Q as them", "unset QBOT_REQUIRE_EMAIL_MATCH (on by default) unless chat profiles carry "
                "no email; then tell users never to pass a link on",
            )
        return Check("email match", OK, "a sign-in must be by the person whose chat profile email asked for the link")


def run_doctor(env: Mapping[str, str], out: Callable[[str], None], *, aws: AdminAws | None = None) -> int:
    """Print one line per check and a summary; 1 when any check failed, else 0."""
    with httpx.Client(timeout=httpx.Timeout(8.0, connect=4.0), follow_redirects=False) as http:
        checks = []
        for check in Doctor(env, http=http, aws=aws).run():
            checks.append(check)
            out(check.line())
    counts = {status: sum(1 for c in checks if c.status == status) for status in (OK, FAIL, WARN, SKIP)}
    out(f"\n{counts[OK]} ok, {counts[FAIL]} failed, {counts[WARN]} warning(s), {counts[SKIP]} skipped")
    return 1 if counts[FAIL] else 0
