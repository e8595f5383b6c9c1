"""`qbot admin provision`: the IAM federation and the Q Business application qbot needs, created or updated.

What it converges (in this order, because each needs the one before):
1. the IAM OIDC identity provider for the issuer, with our client ids (in SAML mode: the IAM SAML provider,
   holding the IdP's metadata);
2. the Q Business application (identityType AWS_IAM_IDP_OIDC, that provider, those client ids; in SAML mode
   AWS_IAM_IDP_SAML and the SAML provider), ACTIVE;
3. its index and a native retriever over it, ACTIVE;
4. auto-subscription, so a user's first ChatSync subscribes them;
5. the IAM role users' credentials come from: trust policy and inline permissions policy from
   `qbot.admin.policies` (the permissions name the application, so the role comes last); in SAML mode its
   maximum session is at least the session the bot asks for.

Idempotent: everything is looked up first (provider by issuer, application by id or display name, index
through the application's native retriever or by name, role by name) and only what is missing or differs is
written, so a second run makes no change and says so. A run that stopped half-way (a timeout, a crash) is
finished by running it again. `dry_run` makes only read calls and prints every write it would make, with its
arguments and the policies in full.

Steps 1 and 5 are `qbot.admin.federation`, 2 to 4 `qbot.admin.application`; `qbot.admin.plan` prints and makes
the writes. This module runs them in order and prints the settings the bot needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from qbot.admin.application import converge_application, converge_index_and_retriever
from qbot.admin.federation import (
    MAX_SESSION_SECONDS,
    MIN_SESSION_SECONDS,
    converge_identity_provider,
    converge_role,
    converge_saml_provider,
)
from qbot.admin.plan import Outcome, Plan, ProvisionError, SamlIdp, Target
from qbot.admin.policies import email_domain, provider_path, saml_provider_name
from qbot.admin.saml_metadata import acs_url, is_url, parse_metadata

ROLE_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/Role"

__all__ = ["Outcome", "ProvisionError", "Provisioner", "SamlIdp", "Target"]


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
        if target.saml is not None:
            _check_saml(target.saml)
        elif not target.client_ids:
            raise ProvisionError("at least one client id is needed (--client-id)")
        else:
            provider_path(target.issuer)  # a ValueError here names the bad issuer
        target = replace(target, email_domains=tuple(email_domain(domain) for domain in target.email_domains))
        self.target = target
        self._sts = sts
        self._plan = Plan(
            target, iam=iam, q=qbusiness, region=region, dry_run=dry_run, out=out, progress=progress,
            timeout_seconds=timeout_seconds, poll_seconds=poll_seconds, sleep=sleep, clock=clock,
        )

    @property
    def outcome(self) -> Outcome:
        return self._plan.outcome

    def run(self) -> Outcome:
        plan = self._plan
        identity = self._sts.get_caller_identity()
        plan.outcome.account_id = str(identity["Account"])
        plan.partition = str(identity["Arn"]).split(":")[1]
        mode = "Dry run (nothing will be changed) in" if plan.dry_run else "Provisioning in"
        plan.out(f"{mode} account {plan.outcome.account_id} as {identity['Arn']}, region {plan.region}.")
        if self.target.saml is not None:
            converge_saml_provider(plan)
        else:
            issuer_parts = urlsplit(self.target.issuer)
            if issuer_parts.scheme != "https" or issuer_parts.port is not None:
                plan.out(
                    f"  ! IAM expects an https:// issuer without a port; {self.target.issuer} works only with "
                    "stand-ins."
                )
            converge_identity_provider(plan)
        application = converge_application(plan)
        converge_index_and_retriever(plan, application)
        converge_role(plan)
        self._summary()
        return plan.outcome

    def _summary(self) -> None:
        plan, outcome = self._plan, self._plan.outcome
        out = plan.out
        count = len(outcome.changes)
        if plan.dry_run:
            out(
                f"\n{count} change(s) planned; nothing was changed. Run without --dry-run to apply."
                if count
                else "\nNo changes: everything is already as wanted."
            )
        else:
            out(f"\nApplied {count} change(s)." if count else "\nNo changes: everything is already as wanted.")
        out("\n# For the bot's environment:")
        saml = self.target.saml
        if saml is None:
            out(f"QBOT_OIDC_ISSUER={self.target.issuer}")
            out(f"QBOT_OIDC_CLIENT_ID={self.target.client_ids[0]}")
        else:
            out(f"QBOT_PUBLIC_URL={saml.public_url}")
            out(f"QBOT_SAML_METADATA_{'URL' if is_url(saml.source) else 'FILE'}={saml.source}")
            out(f"QBOT_SAML_SP_ENTITY_ID={saml.sp_entity_id}")
            out(f"QBOT_SAML_PROVIDER_ARN={outcome.provider_arn}")
            out(f"QBOT_SAML_SESSION_SECONDS={saml.session_seconds}")
        out(f"QBOT_AWS_REGION={plan.region}")
        out(f"QBOT_ROLE_ARN={outcome.role_arn}")
        out(f"QBOT_Q_APP_ID={outcome.application_id}")
        if outcome.index_id:
            out(f"QBOT_Q_INDEX_ID={outcome.index_id}")
        if saml is not None:
            out("\n# At the IdP (Entra ID: the enterprise application's Single sign-on > SAML; README: SAML mode):")
            out(f"#   Identifier (Entity ID):  {saml.sp_entity_id}")
            out(f"#   Reply URL (ACS URL):     {acs_url(saml.public_url)}")
            out(f"#   attribute {ROLE_ATTRIBUTE} = {outcome.role_arn},{outcome.provider_arn}")
            out("#   attribute https://aws.amazon.com/SAML/Attributes/RoleSessionName = the user's email")
            out("#   attribute https://aws.amazon.com/SAML/Attributes/PrincipalTag:Email = the user's email")


def _check_saml(saml: SamlIdp) -> None:
    """Everything SAML mode needs, refused before anything is read or written."""
    parse_metadata(saml.metadata)  # a MetadataError (a ValueError) says what is wrong with it
    saml_provider_name(saml.provider_name)
    parts = urlsplit(saml.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ProvisionError(
            f"the public URL {saml.public_url!r} is not an http(s) URL: pass --public-url (QBOT_PUBLIC_URL), where "
            "the IdP posts its responses"
        )
    if not saml.sp_entity_id.strip():
        raise ProvisionError("the service provider entity id is empty (--sp-entity-id, QBOT_SAML_SP_ENTITY_ID)")
    if not MIN_SESSION_SECONDS <= saml.session_seconds <= MAX_SESSION_SECONDS:
        raise ProvisionError(
            f"--session-seconds {saml.session_seconds} is outside what STS allows a SAML session "
            f"({MIN_SESSION_SECONDS} to {MAX_SESSION_SECONDS})"
        )
