"""`qbot doctor`'s AWS checks, read with the AWS credentials of wherever the doctor runs (the bot's own, in its
container): the IAM role trusts the IdP for this client with the Email tag (in SAML mode: the SAML provider, for
assertions posted to the bot's ACS URL, with sessions as long as the bot asks for), the Q Business application
fits, and group sync can read its index. A check these credentials may not read is skipped, not failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import NoCredentialsError

from adapters.checks import FAIL, OK, SKIP, WARN, Check
from bot.aws_clients import AWS_ERRORS, AdminAws, describe, error_code
from bot.errors import ConfigError
from bot.group_sync import GroupSyncSettings
from bot.groups import IndexGroups
from qbot.admin.doctor_saml import saml_mode
from qbot.admin.policies import SESSION_TAG_KEYS, email_patterns, path_of_provider_arn, provider_path
from qbot.admin.saml_metadata import acs_url

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}


class AwsChecks:
    """The group sync check is skipped when the application check failed (it would only repeat that failure)."""

    def __init__(self, env: Mapping[str, str], aws: AdminAws) -> None:
        self.env = env
        self._aws = aws
        self.issuer = (env.get("QBOT_OIDC_ISSUER") or "").rstrip("/")
        self.client_id = env.get("QBOT_OIDC_CLIENT_ID") or ""
        self.saml = saml_mode(env)
        self.saml_provider = env.get("QBOT_SAML_PROVIDER_ARN") or ""
        self.acs = acs_url(env.get("QBOT_PUBLIC_URL") or "")
        self._application_failed = False

    def role(self) -> Check:
        role_arn = self.env.get("QBOT_ROLE_ARN") or ""
        if ":role/" not in role_arn:
            return Check("IAM role", FAIL, "QBOT_ROLE_ARN is unset or not a role ARN",
                         "set it to the QBOT_ROLE_ARN line `qbot admin provision` prints")
        name = role_arn.rsplit("/", 1)[1]
        if self.env.get("QBOT_STS_ENDPOINT_URL") and not self.env.get("QBOT_IAM_ENDPOINT_URL"):
            # STS is a stand-in (the sandbox, say): the role lives there, not in the account's IAM
            return Check("IAM role", SKIP, "STS is a custom endpoint (QBOT_STS_ENDPOINT_URL) and no "
                         "QBOT_IAM_ENDPOINT_URL is set to read the role from")
        try:
            role = self._aws.iam().get_role(RoleName=name)["Role"]
        except NoCredentialsError:
            return Check("IAM role", SKIP, "no AWS credentials here to read it with")
        except AWS_ERRORS as err:
            code = error_code(err)
            if code == "NoSuchEntity":
                return Check("IAM role", FAIL, f"{role_arn} does not exist",
                             "run `qbot admin provision`, or set QBOT_ROLE_ARN to the role it created")
            if code in _DENIED:
                return Check("IAM role", SKIP, f"these AWS credentials may not read it ({code})")
            return Check("IAM role", FAIL, f"IAM GetRole failed: {describe(err)}", "check the AWS credentials here")
        if role.get("Arn") and role["Arn"] != role_arn:
            return Check("IAM role", FAIL, f"the role named {name} is {role['Arn']}, not {role_arn}",
                         f"set QBOT_ROLE_ARN={role['Arn']}")
        document = role.get("AssumeRolePolicyDocument") or {}
        problems = self._trust_problems(document)
        manifest = "saml-trust-policy.json" if self.saml else "trust-policy.json"
        if problems:
            return Check("IAM role", FAIL, f"its trust policy {'; '.join(sorted(set(problems), key=problems.index))}",
                         f"run `qbot admin provision` (or apply manifests/aws/{manifest})")
        domains = sorted({p for p in email_patterns(document) if p != "*"})
        emails = f"an Email in {', '.join(domains)}" if domains else "an Email of any domain"
        if not self.saml:
            return Check(
                "IAM role", OK, f"{name} trusts the IdP for client id {self.client_id!r}, in sessions tagged with "
                f"{emails} and nothing else",
            )
        wanted = self.env.get("QBOT_SAML_SESSION_SECONDS") or ""
        longest = int(role.get("MaxSessionDuration") or 3600)
        if wanted.isdigit() and longest < int(wanted):
            return Check("IAM role", FAIL, f"its sessions last at most {longest}s, and the bot asks for {wanted}s "
                         "(QBOT_SAML_SESSION_SECONDS): STS refuses every sign-in",
                         f"run `qbot admin provision --saml-metadata … --session-seconds {wanted}`, or lower "
                         "QBOT_SAML_SESSION_SECONDS")
        return Check(
            "IAM role", OK, f"{name} trusts {self.saml_provider} for assertions posted to {self.acs}, in sessions "
            f"tagged with {emails} and nothing else; sessions up to {longest}s",
        )

    def _trust_problems(self, document: dict[str, Any] | str) -> list[str]:
        policy = json.loads(document) if isinstance(document, str) else document
        statements = policy.get("Statement") or []
        statements = statements if isinstance(statements, list) else [statements]
        if self.saml:
            return self._saml_trust_problems(statements)
        paths = _issuer_paths(self.issuer)
        assume = False
        seen: list[str] = []
        tagging: list[dict[str, Any]] = []  # the conditions of each statement that allows sts:TagSession
        for statement in statements:
            if statement.get("Effect") != "Allow":
                continue
            actions = _as_list(statement.get("Action"))
            federated = _as_list((statement.get("Principal") or {}).get("Federated"))
            if not any(_provider_path_of(arn) in paths for arn in federated):
                continue
            conditions = statement.get("Condition") or {}
            if "sts:AssumeRoleWithWebIdentity" in actions:
                audiences = [
                    value
                    for operator in ("StringEquals", "ForAnyValue:StringEquals")
                    for key, values in (conditions.get(operator) or {}).items()
                    if key.rsplit(":", 1)[0] in paths and key.endswith(":aud")
                    for value in _as_list(values)
                ]
                seen += audiences
                assume = assume or self.client_id in audiences
            if {"sts:TagSession", "sts:*", "*"} & set(actions):
                tagging.append(conditions)
        problems = []
        if not assume and seen:
            problems.append(f"lets the IdP's tokens for audience(s) {sorted(set(seen))} in, not {self.client_id!r}")
        elif not assume:
            problems.append(
                f"does not allow sts:AssumeRoleWithWebIdentity from the IdP {self.issuer} with "
                f"{(paths or ['<issuer>'])[0]}:aud = {self.client_id!r}"
            )
        return problems + _tagging_problems(tagging)

    def _saml_trust_problems(self, statements: list[dict[str, Any]]) -> list[str]:
        """SAML mode: AssumeRoleWithSAML from QBOT_SAML_PROVIDER_ARN with SAML:aud = the ACS URL, the same tags."""
        assume = False
        seen: list[str] = []
        tagging: list[dict[str, Any]] = []
        for statement in statements:
            if statement.get("Effect") != "Allow":
                continue
            if self.saml_provider not in _as_list((statement.get("Principal") or {}).get("Federated")):
                continue
            actions = _as_list(statement.get("Action"))
            conditions = statement.get("Condition") or {}
            if "sts:AssumeRoleWithSAML" in actions:
                audiences = [
                    value
                    for operator in ("StringEquals", "ForAnyValue:StringEquals")
                    for value in _as_list((conditions.get(operator) or {}).get("SAML:aud"))
                ]
                seen += audiences
                assume = assume or self.acs in audiences
            if {"sts:TagSession", "sts:*", "*"} & set(actions):
                tagging.append(conditions)
        problems = []
        if not assume and seen:
            problems.append(f"lets in assertions posted to {sorted(set(seen))} (SAML:aud), not {self.acs}")
        elif not assume:
            problems.append(
                f"does not allow sts:AssumeRoleWithSAML from {self.saml_provider or 'QBOT_SAML_PROVIDER_ARN'} "
                f"with SAML:aud = {self.acs}"
            )
        return problems + _tagging_problems(tagging)

    def application(self) -> Check:
        app_id = self.env.get("QBOT_Q_APP_ID") or ""
        region = self._aws.region
        self._application_failed = True  # until it passes
        if not app_id:
            return Check("Q Business application", FAIL, "QBOT_Q_APP_ID is unset",
                         "set it to the QBOT_Q_APP_ID line `qbot admin provision` prints")
        try:
            app = self._aws.qbusiness().get_application(applicationId=app_id)
        except NoCredentialsError:
            self._application_failed = False
            return Check("Q Business application", SKIP, "no AWS credentials here to read it with")
        except AWS_ERRORS as err:
            code = error_code(err)
            if code == "ResourceNotFoundException":
                return Check("Q Business application", FAIL, f"no application {app_id} in {region}",
                             "set QBOT_Q_APP_ID (and QBOT_AWS_REGION) to the values `qbot admin provision` printed")
            if code in _DENIED:
                self._application_failed = False
                return Check("Q Business application", SKIP, f"these AWS credentials may not read it ({code})")
            return Check("Q Business application", FAIL, f"GetApplication failed: {describe(err)}",
                         "check QBOT_AWS_REGION and the AWS credentials here")
        if app.get("status") != "ACTIVE":
            return Check("Q Business application", FAIL, f"{app_id} is {app.get('status')}, not ACTIVE",
                         "wait for it to become ACTIVE (or run `qbot admin provision`, which waits)")
        if self.saml:
            return self._saml_application(app)
        if app.get("identityType") != "AWS_IAM_IDP_OIDC":
            return Check("Q Business application", FAIL, f"{app_id} uses identity type {app.get('identityType')}",
                         "qbot needs an AWS_IAM_IDP_OIDC application: create one with `qbot admin provision`")
        if self.client_id not in (app.get("clientIdsForOIDC") or []):
            return Check("Q Business application", FAIL,
                         f"{app_id} accepts client ids {app.get('clientIdsForOIDC')}, not {self.client_id!r}",
                         "set QBOT_OIDC_CLIENT_ID to one of them, or use an application made for this client id")
        provider = str(app.get("iamIdentityProviderArn") or "")
        if self.issuer and _provider_path_of(provider) not in _issuer_paths(self.issuer):
            return Check("Q Business application", FAIL, f"{app_id} trusts {provider}, not the IdP {self.issuer}",
                         "set QBOT_OIDC_ISSUER to the IdP the application trusts, or provision one for this IdP")
        return self._usable(app, f"AWS_IAM_IDP_OIDC, for client id {self.client_id!r}")

    def _saml_application(self, app: dict[str, Any]) -> Check:
        app_id = app.get("applicationId") or self.env.get("QBOT_Q_APP_ID")
        if app.get("identityType") != "AWS_IAM_IDP_SAML":
            return Check("Q Business application", FAIL, f"{app_id} uses identity type {app.get('identityType')}, "
                         "not AWS_IAM_IDP_SAML", "SAML mode needs an AWS_IAM_IDP_SAML application: create one with "
                         "`qbot admin provision --saml-metadata …` (identity settings cannot change on an application)")
        provider = str(app.get("iamIdentityProviderArn") or "")
        if provider != self.saml_provider:
            return Check("Q Business application", FAIL, f"{app_id} trusts {provider}, not QBOT_SAML_PROVIDER_ARN "
                         f"{self.saml_provider}", f"set QBOT_SAML_PROVIDER_ARN={provider}, or provision an "
                         "application for this provider")
        return self._usable(app, f"AWS_IAM_IDP_SAML, for {provider}")

    def _usable(self, app: dict[str, Any], identity: str) -> Check:
        app_id = app.get("applicationId") or self.env.get("QBOT_Q_APP_ID")
        self._application_failed = False
        auto = (app.get("autoSubscriptionConfiguration") or {}).get("autoSubscribe")
        if auto != "ENABLED":
            return Check("Q Business application", WARN, f"{app_id} is ACTIVE, but auto-subscription is off: "
                         "users without a subscription are refused", "run `qbot admin provision` to enable it")
        return Check("Q Business application", OK, f"{app_id} is ACTIVE, {identity}")

    def group_sync(self) -> Check:
        try:
            settings = GroupSyncSettings.from_env(self.env)
        except ConfigError as err:
            return Check("group sync", FAIL, str(err), "set QBOT_Q_INDEX_ID, or QBOT_GROUP_SYNC=false")
        if not settings.enabled:
            return Check("group sync", SKIP, "automatic group sync is off (QBOT_GROUP_SYNC)")
        if self._application_failed:
            return Check("group sync", SKIP, "needs a working Q Business application")
        index = IndexGroups(self._aws.qbusiness(), self.env.get("QBOT_Q_APP_ID") or "", settings.index_id)
        try:
            count = len(index.names())
        except NoCredentialsError:
            return Check("group sync", FAIL, "no AWS credentials here: PutGroup would fail",
                         "give the bot an identity (task role, instance profile, QBOT_AWS_PROFILE) allowed "
                         "manifests/aws/group-sync-policy.json")
        except AWS_ERRORS as err:
            return Check("group sync", FAIL, f"ListGroups on index {settings.index_id} failed: {describe(err)}",
                         "check QBOT_Q_INDEX_ID, and allow the bot's AWS identity manifests/aws/group-sync-policy.json")
        return Check("group sync", OK, f"index {settings.index_id} is readable ({count} groups)")


def _tagging_problems(tagging: list[dict[str, Any]]) -> list[str]:
    """`tagging`: the conditions of each statement that allows sts:TagSession. Allow statements add up, so each
    one must hold both conditions."""
    problems = []
    if not tagging:
        problems.append("does not allow sts:TagSession with aws:RequestTag/Email present")
    for conditions in tagging:
        if not any("aws:RequestTag/Email" in (conditions.get(op) or {}) for op in ("StringLike", "StringEquals")):
            problems.append("allows sts:TagSession without an aws:RequestTag/Email condition")
        keys = set(_as_list((conditions.get("ForAllValues:StringEquals") or {}).get("aws:TagKeys")))
        if keys != set(SESSION_TAG_KEYS):
            allowed = f"aws:TagKeys {sorted(keys)}" if keys else "no ForAllValues:StringEquals aws:TagKeys"
            problems.append(f"lets sessions carry tags other than {', '.join(SESSION_TAG_KEYS)} ({allowed})")
    return problems


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _issuer_paths(issuer: str) -> list[str]:
    """How IAM may name the issuer's provider: host[:port]/path, and without the port (IAM drops it)."""
    if not issuer:
        return []
    full = provider_path(issuer)
    parts = urlsplit(issuer)
    bare = ((parts.hostname or "") + parts.path).rstrip("/")
    return [full] if bare == full else [full, bare]


def _provider_path_of(arn: str) -> str:
    try:
        return path_of_provider_arn(arn)
    except ValueError:
        return ""
