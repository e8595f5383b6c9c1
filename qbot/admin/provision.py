"""`qbot admin provision`: the IAM federation and the Q Business application qbot needs, created or updated.

What it converges (in this order, because each needs the one before):
1. the IAM OIDC identity provider for the issuer, with our client ids;
2. the Q Business application (identityType AWS_IAM_IDP_OIDC, that provider, those client ids), ACTIVE;
3. its index and a native retriever over it, ACTIVE;
4. auto-subscription, so a user's first ChatSync subscribes them;
5. the IAM role users' credentials come from: trust policy and inline permissions policy from
   `qbot.admin.policies` (the permissions name the application, so the role comes last).

Idempotent: everything is looked up first (provider by issuer, application by id or display name, index
through the application's native retriever or by name, role by name) and only what is missing or differs is
written, so a second run makes no change and says so. A run that stopped half-way (a timeout, a crash) is
finished by running it again. `dry_run` makes only read calls and prints every write it would make, with its
arguments and the policies in full.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from botocore import xform_name

from bot.aws_clients import error_code
from qbot.admin.policies import (
    application_arn,
    email_domain,
    email_patterns,
    path_of_provider_arn,
    permissions_policy,
    provider_arn,
    provider_path,
    same_policy,
    trust_policy,
)

IDENTITY_TYPE = "AWS_IAM_IDP_OIDC"
TAGS = [{"Key": "managed-by", "Value": "qbot"}]
NEW_APPLICATION = "<id of the new application>"
NEW_INDEX = "<id of the new index>"
_POLICY_PARAMS = ("AssumeRolePolicyDocument", "PolicyDocument")


class ProvisionError(Exception):
    """Provisioning cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """What the administrator asked for."""

    issuer: str
    client_ids: tuple[str, ...]
    name: str = "qbot"
    role_name: str = "qbot-user"
    application_id: str | None = None  # adopt this application instead of finding one by name
    email_domains: tuple[str, ...] = ()  # the Email session tag must end in @one of these (any email when empty)
    index_type: str = "ENTERPRISE"
    subscription_type: str = "Q_BUSINESS"

    @property
    def index_name(self) -> str:
        return f"{self.name}-index"

    @property
    def retriever_name(self) -> str:
        return f"{self.name}-retriever"

    @property
    def policy_name(self) -> str:
        return "qbot-chat-as-user"

    @property
    def auto_subscription(self) -> dict[str, str]:
        return {"autoSubscribe": "ENABLED", "defaultSubscriptionType": self.subscription_type}


@dataclass(frozen=True)
class Step:
    """One write call of the plan."""

    service: str
    operation: str
    params: dict[str, Any]
    reason: str

    def render(self) -> str:
        body = json.dumps(self.params, indent=2, default=str)
        return f"  + {self.service} {self.operation}: {self.reason}\n" + _indent(body, 6)

    def wire_params(self) -> dict[str, Any]:
        """The arguments as boto3 takes them: policy documents as JSON text."""
        return {
            key: json.dumps(value) if key in _POLICY_PARAMS and not isinstance(value, str) else value
            for key, value in self.params.items()
        }


@dataclass
class Outcome:
    account_id: str = ""
    provider_arn: str = ""
    application_id: str = ""
    index_id: str = ""
    retriever_id: str = ""
    role_arn: str = ""
    changes: list[Step] = field(default_factory=list)


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines())


class Provisioner:
    """Converges one target. `out` gets the plan and the result, `progress` the waiting (stderr in the CLI)."""

    def __init__(
        self,
        target: Target,
        *,
        iam: Any,
        qbusiness: Any,
        sts: Any,
        region: str,
        dry_run: bool,
        out: Callable[[str], None],
        progress: Callable[[str], None],
        timeout_seconds: float = 1800.0,
        poll_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not target.client_ids:
            raise ProvisionError("at least one client id is needed (--client-id)")
        provider_path(target.issuer)  # a ValueError here names the bad issuer
        target = replace(target, email_domains=tuple(email_domain(domain) for domain in target.email_domains))
        self.target = target
        self._iam = iam
        self._q = qbusiness
        self._sts = sts
        self._region = region
        self._dry_run = dry_run
        self._out = out
        self._progress = progress
        self._timeout = timeout_seconds
        self._poll = poll_seconds
        self._sleep = sleep
        self._clock = clock
        self.outcome = Outcome()
        self._partition = "aws"

    # -- the run ------------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        identity = self._sts.get_caller_identity()
        self.outcome.account_id = str(identity["Account"])
        self._partition = str(identity["Arn"]).split(":")[1]
        mode = "Dry run (nothing will be changed) in" if self._dry_run else "Provisioning in"
        self._out(f"{mode} account {self.outcome.account_id} as {identity['Arn']}, region {self._region}.")
        issuer_parts = urlsplit(self.target.issuer)
        if issuer_parts.scheme != "https" or issuer_parts.port is not None:
            self._out(
                f"  ! IAM expects an https:// issuer without a port; {self.target.issuer} works only with stand-ins."
            )

        self._identity_provider()
        application = self._application()
        self._index_and_retriever(application)
        self._role()
        self._summary()
        return self.outcome

    # -- 1. the IAM OIDC identity provider ------------------------------------------------------------------

    def _identity_provider(self) -> None:
        target = self.target
        self._out(f"IAM OIDC identity provider for {target.issuer}")
        wanted_path = provider_path(target.issuer).lower()
        listed = self._iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", [])
        existing = next((p["Arn"] for p in listed if path_of_provider_arn(p["Arn"]).lower() == wanted_path), None)
        if existing is None:
            step = Step(
                "iam",
                "CreateOpenIDConnectProvider",
                {"Url": target.issuer, "ClientIDList": list(target.client_ids), "Tags": TAGS},
                "trust id_tokens from this issuer for these client ids",
            )
            answer = self._write(step)
            self.outcome.provider_arn = answer.get("OpenIDConnectProviderArn") or provider_arn(
                self.outcome.account_id, target.issuer, self._partition
            )
            return
        self.outcome.provider_arn = existing
        known = self._iam.get_open_id_connect_provider(OpenIDConnectProviderArn=existing).get("ClientIDList", [])
        missing = [client_id for client_id in target.client_ids if client_id not in known]
        for client_id in missing:
            self._write(
                Step(
                    "iam",
                    "AddClientIDToOpenIDConnectProvider",
                    {"OpenIDConnectProviderArn": existing, "ClientID": client_id},
                    "the provider does not yet accept this client id as an audience",
                )
            )
        if not missing:
            self._unchanged(f"{existing} (client ids {', '.join(known)})")

    # -- 2. the application ------------------------------------------------------------------------------

    def _application(self) -> dict[str, Any]:
        target = self.target
        self._out(f"Q Business application {target.application_id or target.name!r}")
        found = self._find_application()
        if found is None:
            step = Step(
                "qbusiness",
                "CreateApplication",
                {
                    "displayName": target.name,
                    "description": "Amazon Q Business in chat, answering as the asking user (qbot)",
                    "identityType": IDENTITY_TYPE,
                    "iamIdentityProviderArn": self.outcome.provider_arn,
                    "clientIdsForOIDC": list(target.client_ids),
                    "attachmentsConfiguration": {"attachmentsControlMode": "ENABLED"},
                    "tags": [{"key": tag["Key"], "value": tag["Value"]} for tag in TAGS],
                },
                "an IAM-federated application for the IdP's users",
            )
            answer = self._write(step)
            if self._dry_run:
                self.outcome.application_id = NEW_APPLICATION
                self._write(self._auto_subscription_step(NEW_APPLICATION, "(unless creation already enabled it)"))
                return {
                    "applicationId": NEW_APPLICATION,
                    "applicationArn": application_arn(
                        self._region, self.outcome.account_id, NEW_APPLICATION, self._partition
                    ),
                }
            application_id = answer["applicationId"]
            found = self._wait_for("application", lambda: self._q.get_application(applicationId=application_id))
        else:
            self._check_identity(found)
            self._unchanged(f"{found['applicationId']}: {IDENTITY_TYPE}, identity provider, client ids")
            if found.get("status") != "ACTIVE" and not self._dry_run:
                existing_id = found["applicationId"]
                found = self._wait_for("application", lambda: self._q.get_application(applicationId=existing_id))
        application_id = found["applicationId"]
        self.outcome.application_id = application_id
        if found.get("autoSubscriptionConfiguration") != target.auto_subscription:
            self._write(self._auto_subscription_step(application_id, "so a user's first question subscribes them"))
        else:
            self._unchanged("auto-subscription")
        return found

    def _find_application(self) -> dict[str, Any] | None:
        target = self.target
        if target.application_id:
            try:
                return dict(self._q.get_application(applicationId=target.application_id))
            except Exception as err:
                if error_code(err) == "ResourceNotFoundException":
                    raise ProvisionError(
                        f"application {target.application_id} does not exist in {self._region}; "
                        "leave out --application-id to create one"
                    ) from None
                raise
        named = [app for app in self._applications() if app.get("displayName") == target.name]
        if len(named) > 1:
            ids = ", ".join(app["applicationId"] for app in named)
            raise ProvisionError(
                f"several applications are named {target.name!r} ({ids}): pick one with --application-id"
            )
        if not named:
            return None
        return dict(self._q.get_application(applicationId=named[0]["applicationId"]))

    def _applications(self) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = self._q.list_applications(**({"nextToken": token} if token else {}))
            yield from page.get("applications", [])
            token = page.get("nextToken")
            if not token:
                return

    def _check_identity(self, application: dict[str, Any]) -> None:
        """Identity settings cannot be changed on an existing application: refuse rather than half-adopt it."""
        problems = []
        if application.get("identityType") != IDENTITY_TYPE:
            problems.append(f"its identity type is {application.get('identityType')}, not {IDENTITY_TYPE}")
        if application.get("iamIdentityProviderArn") != self.outcome.provider_arn:
            problems.append(
                f"it trusts the identity provider {application.get('iamIdentityProviderArn')}, "
                f"not {self.outcome.provider_arn}"
            )
        missing = [c for c in self.target.client_ids if c not in (application.get("clientIdsForOIDC") or [])]
        if missing:
            problems.append(f"its client ids lack {', '.join(missing)}")
        if problems:
            raise ProvisionError(
                f"application {application['applicationId']} cannot serve qbot: {'; '.join(problems)}. "
                "Q Business cannot change these on an existing application: use another --name (a new "
                "application) or fix it in the console."
            )

    def _auto_subscription_step(self, application_id: str, reason: str) -> Step:
        return Step(
            "qbusiness",
            "UpdateApplication",
            {"applicationId": application_id, "autoSubscriptionConfiguration": self.target.auto_subscription},
            f"enable auto-subscription {reason}",
        )

    # -- 3. index and native retriever ----------------------------------------------------------------------

    def _index_and_retriever(self, application: dict[str, Any]) -> None:
        target = self.target
        application_id = application["applicationId"]
        self._out(f"Index and retriever of {application_id}")
        retrievers = [] if application_id == NEW_APPLICATION else self._retrievers(application_id)
        native = [r for r in retrievers if r.get("type") == "NATIVE_INDEX"]
        if retrievers and not native:
            self._out(f"  ! the application reads through a {retrievers[0].get('type')} retriever: left as it is")
            return
        if native:
            retriever = self._q.get_retriever(applicationId=application_id, retrieverId=native[0]["retrieverId"])
            self.outcome.retriever_id = retriever["retrieverId"]
            self.outcome.index_id = retriever["configuration"]["nativeIndexConfiguration"]["indexId"]
            index_id = self.outcome.index_id
            index = self._q.get_index(applicationId=application_id, indexId=index_id)
            if not self._dry_run and index.get("status") != "ACTIVE":
                self._wait_for("index", lambda: self._q.get_index(applicationId=application_id, indexId=index_id))
            if not self._dry_run and retriever.get("status") != "ACTIVE":
                self._wait_for(
                    "retriever",
                    lambda: self._q.get_retriever(applicationId=application_id, retrieverId=retriever["retrieverId"]),
                )
            self._unchanged(f"index {self.outcome.index_id}, native retriever {self.outcome.retriever_id}")
            return

        named = self._named_index(application_id)
        if named is None:
            answer = self._write(
                Step(
                    "qbusiness",
                    "CreateIndex",
                    {
                        "applicationId": application_id,
                        "displayName": target.index_name,
                        "description": "Documents qbot answers from",
                        "type": target.index_type,
                        "tags": [{"key": tag["Key"], "value": tag["Value"]} for tag in TAGS],
                    },
                    "the index the application answers from (and PutGroup writes groups to)",
                )
            )
            new_index_id: str = answer.get("indexId") or NEW_INDEX
        else:
            new_index_id = named
            self._unchanged(f"index {named} ({target.index_name})")
        index_id = new_index_id
        if not self._dry_run:
            self._wait_for("index", lambda: self._q.get_index(applicationId=application_id, indexId=index_id))
        self.outcome.index_id = index_id
        answer = self._write(
            Step(
                "qbusiness",
                "CreateRetriever",
                {
                    "applicationId": application_id,
                    "type": "NATIVE_INDEX",
                    "displayName": target.retriever_name,
                    "configuration": {"nativeIndexConfiguration": {"indexId": index_id}},
                },
                "let the application answer from the index",
            )
        )
        if not self._dry_run:
            retriever_id = answer["retrieverId"]
            self.outcome.retriever_id = retriever_id
            self._wait_for(
                "retriever", lambda: self._q.get_retriever(applicationId=application_id, retrieverId=retriever_id)
            )

    def _retrievers(self, application_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._q.list_retrievers(applicationId=application_id, **({"nextToken": token} if token else {}))
            found.extend(page.get("retrievers", []))
            token = page.get("nextToken")
            if not token:
                return found

    def _named_index(self, application_id: str) -> str | None:
        if application_id == NEW_APPLICATION:
            return None
        token: str | None = None
        while True:
            page = self._q.list_indices(applicationId=application_id, **({"nextToken": token} if token else {}))
            for index in page.get("indices", []):
                if index.get("displayName") == self.target.index_name:
                    return str(index["indexId"])
            token = page.get("nextToken")
            if not token:
                return None

    # -- 4. the role ---------------------------------------------------------------------------------------

    def _role(self) -> None:
        target = self.target
        self._out(f"IAM role {target.role_name}")
        trust = trust_policy(self.outcome.provider_arn, target.client_ids, target.email_domains)
        app_arn = application_arn(self._region, self.outcome.account_id, self.outcome.application_id, self._partition)
        permissions = permissions_policy(app_arn)
        try:
            role = self._iam.get_role(RoleName=target.role_name)["Role"]
        except Exception as err:
            if error_code(err) != "NoSuchEntity":
                raise
            role = None
        if role is None:
            self._write(
                Step(
                    "iam",
                    "CreateRole",
                    {
                        "RoleName": target.role_name,
                        "Description": "Assumed by qbot as each chat user (web identity from the IdP, Email tag)",
                        "AssumeRolePolicyDocument": trust,
                        "MaxSessionDuration": 3600,
                        "Tags": TAGS,
                    },
                    "the role users' AWS credentials come from",
                )
            )
            self.outcome.role_arn = f"arn:{self._partition}:iam::{self.outcome.account_id}:role/{target.role_name}"
            existing_permissions = None
        else:
            self.outcome.role_arn = role["Arn"]
            if same_policy(role.get("AssumeRolePolicyDocument") or {}, trust):
                self._unchanged(f"{role['Arn']}: trust policy")
            else:
                dropped = [p for p in email_patterns(role.get("AssumeRolePolicyDocument") or {}) if p != "*"]
                reason = "its trust policy differs from qbot's (replaced as a whole)"
                if dropped and not target.email_domains:
                    reason += f"; this lifts its Email restriction ({', '.join(dropped)}): keep it with --email-domain"
                params = {"RoleName": target.role_name, "PolicyDocument": trust}
                self._write(Step("iam", "UpdateAssumeRolePolicy", params, reason))
            existing_permissions = self._inline_policy(target.role_name, target.policy_name)
        if existing_permissions is not None and same_policy(existing_permissions, permissions):
            self._unchanged(f"inline policy {target.policy_name}")
        else:
            self._write(
                Step(
                    "iam",
                    "PutRolePolicy",
                    {"RoleName": target.role_name, "PolicyName": target.policy_name, "PolicyDocument": permissions},
                    "chat as the user on this one application, nothing else"
                    if existing_permissions is None
                    else "its permissions differ from qbot's",
                )
            )

    def _inline_policy(self, role_name: str, policy_name: str) -> dict[str, Any] | str | None:
        try:
            document: dict[str, Any] | str = self._iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)[
                "PolicyDocument"
            ]
        except Exception as err:
            if error_code(err) == "NoSuchEntity":
                return None
            raise
        return document

    # -- writing, waiting, reporting -----------------------------------------------------------------------

    def _write(self, step: Step) -> dict[str, Any]:
        """Print the step; outside a dry run, make the call. Returns the response ({} in a dry run)."""
        self.outcome.changes.append(step)
        self._out(step.render())
        if self._dry_run:
            return {}
        client = self._iam if step.service == "iam" else self._q
        answer: dict[str, Any] = getattr(client, xform_name(step.operation))(**step.wire_params())
        return answer

    def _unchanged(self, what: str) -> None:
        self._out(f"  = {what}: as wanted")

    def _wait_for(self, what: str, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Poll until ACTIVE, at most `timeout_seconds`; FAILED or the timeout raise ProvisionError."""
        started = self._clock()
        while True:
            answer = dict(read())
            status = answer.get("status")
            waited = self._clock() - started
            if status == "ACTIVE":
                if waited > 0:
                    self._progress(f"    {what} is ACTIVE after {waited:.0f}s")
                return answer
            if status == "FAILED":
                error = answer.get("error") or {}
                raise ProvisionError(f"the {what} FAILED: {error.get('errorMessage') or error.get('errorCode') or '?'}")
            if waited >= self._timeout:
                raise ProvisionError(
                    f"the {what} is still {status} after {self._timeout:.0f}s. Run the same command again later: "
                    "it continues where this run stopped."
                )
            self._progress(f"    waiting for the {what}: {status} ({waited:.0f}s, at most {self._timeout:.0f}s)")
            self._sleep(self._poll)

    def _summary(self) -> None:
        outcome = self.outcome
        count = len(outcome.changes)
        if self._dry_run:
            self._out(
                f"\n{count} change(s) planned; nothing was changed. Run without --dry-run to apply."
                if count
                else "\nNo changes: everything is already as wanted."
            )
        else:
            self._out(f"\nApplied {count} change(s)." if count else "\nNo changes: everything is already as wanted.")
        self._out("\n# For the bot's environment:")
        self._out(f"QBOT_OIDC_ISSUER={self.target.issuer}")
        self._out(f"QBOT_OIDC_CLIENT_ID={self.target.client_ids[0]}")
        self._out(f"QBOT_AWS_REGION={self._region}")
        self._out(f"QBOT_ROLE_ARN={outcome.role_arn}")
        self._out(f"QBOT_Q_APP_ID={outcome.application_id}")
        if outcome.index_id:
            self._out(f"QBOT_Q_INDEX_ID={outcome.index_id}")
