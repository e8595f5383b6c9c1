"""The IAM half of provisioning: the OIDC identity provider for the issuer (or, in SAML mode, the SAML provider
with the IdP's metadata), and the role users' credentials come from (trust policy and inline permissions from
`qbot.admin.policies`).

The provider comes first (the application names it); the role comes last (its permissions name the application).
"""

from __future__ import annotations

from typing import Any

from bot.aws_clients import error_code
from qbot.admin.plan import TAGS, Plan, Step
from qbot.admin.policies import (
    application_arn,
    email_patterns,
    path_of_provider_arn,
    permissions_policy,
    provider_arn,
    provider_path,
    same_policy,
    saml_provider_arn,
    saml_trust_policy,
    trust_policy,
)
from qbot.admin.saml_metadata import MetadataError, acs_url, parse_metadata, trust_difference

#: STS's bounds for an AssumeRoleWithSAML session (QBOT_SAML_SESSION_SECONDS); a role's maximum session is at
#: least ROLE_SESSION_SECONDS (IAM's own minimum and default) and at most MAX_SESSION_SECONDS.
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS, ROLE_SESSION_SECONDS = 900, 43200, 3600


def converge_identity_provider(plan: Plan) -> None:
    """Find the provider by the issuer's host and path; create it, or add the client ids it lacks."""
    target = plan.target
    plan.out(f"IAM OIDC identity provider for {target.issuer}")
    wanted_path = provider_path(target.issuer).lower()
    listed = plan.iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", [])
    existing = next((p["Arn"] for p in listed if path_of_provider_arn(p["Arn"]).lower() == wanted_path), None)
    if existing is None:
        step = Step(
            "iam",
            "CreateOpenIDConnectProvider",
            {"Url": target.issuer, "ClientIDList": list(target.client_ids), "Tags": TAGS},
            "trust id_tokens from this issuer for these client ids",
        )
        answer = plan.write(step)
        plan.outcome.provider_arn = answer.get("OpenIDConnectProviderArn") or provider_arn(
            plan.outcome.account_id, target.issuer, plan.partition
        )
        return
    plan.outcome.provider_arn = existing
    known = plan.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=existing).get("ClientIDList", [])
    missing = [client_id for client_id in target.client_ids if client_id not in known]
    for client_id in missing:
        plan.write(
            Step(
                "iam",
                "AddClientIDToOpenIDConnectProvider",
                {"OpenIDConnectProviderArn": existing, "ClientID": client_id},
                "the provider does not yet accept this client id as an audience",
            )
        )
    if not missing:
        plan.unchanged(f"{existing} (client ids {', '.join(known)})")


def converge_saml_provider(plan: Plan) -> None:
    """Find the SAML provider by name; create it, or give it the IdP's metadata when IAM's copy differs in what
    STS uses (the issuer, the signing certificates: after a rollover, say)."""
    saml = plan.target.saml
    assert saml is not None
    plan.out(f"IAM SAML identity provider {saml.provider_name}")
    wanted = saml_provider_arn(plan.outcome.account_id, saml.provider_name, plan.partition)
    listed = plan.iam.list_saml_providers().get("SAMLProviderList", [])
    existing = next((p["Arn"] for p in listed if p["Arn"].rsplit("/", 1)[1] == saml.provider_name), None)
    if existing is None:
        answer = plan.write(
            Step(
                "iam",
                "CreateSAMLProvider",
                {"Name": saml.provider_name, "SAMLMetadataDocument": saml.metadata, "Tags": TAGS},
                f"trust assertions signed as this metadata says (from {saml.source})",
            )
        )
        plan.outcome.provider_arn = answer.get("SAMLProviderArn") or wanted
        return
    plan.outcome.provider_arn = existing
    held = plan.iam.get_saml_provider(SAMLProviderArn=existing).get("SAMLMetadataDocument") or ""
    try:
        difference = trust_difference(parse_metadata(saml.metadata), parse_metadata(held))
        reason = f"its metadata differs from {saml.source}: {difference.describe()}"
    except MetadataError as err:
        difference, reason = None, f"its metadata does not parse ({err})"
    if difference is not None and not difference:
        plan.unchanged(f"{existing} (the IdP's entity id and signing certificates)")
        return
    plan.write(
        Step("iam", "UpdateSAMLProvider", {"SAMLProviderArn": existing, "SAMLMetadataDocument": saml.metadata}, reason)
    )


def _trust_policy(plan: Plan) -> dict[str, Any]:
    target = plan.target
    if target.saml is not None:
        return saml_trust_policy(plan.outcome.provider_arn, acs_url(target.saml.public_url), target.email_domains)
    return trust_policy(plan.outcome.provider_arn, target.client_ids, target.email_domains)


def converge_role(plan: Plan) -> None:
    """Create the role, or replace a trust policy or inline policy that differs from qbot's (as a whole); in SAML
    mode, also raise a maximum session shorter than the sessions the bot asks for."""
    target, outcome = plan.target, plan.outcome
    plan.out(f"IAM role {target.role_name}")
    trust = _trust_policy(plan)
    session = max(target.saml.session_seconds, ROLE_SESSION_SECONDS) if target.saml else ROLE_SESSION_SECONDS
    app_arn = application_arn(plan.region, outcome.account_id, outcome.application_id, plan.partition)
    permissions = permissions_policy(app_arn)
    try:
        role = plan.iam.get_role(RoleName=target.role_name)["Role"]
    except Exception as err:
        if error_code(err) != "NoSuchEntity":
            raise
        role = None
    if role is None:
        plan.write(
            Step(
                "iam",
                "CreateRole",
                {
                    "RoleName": target.role_name,
                    "Description": "Assumed by qbot as each chat user "
                    f"({'SAML assertion' if target.saml else 'web identity'} from the IdP, Email tag)",
                    "AssumeRolePolicyDocument": trust,
                    "MaxSessionDuration": session,
                    "Tags": TAGS,
                },
                "the role users' AWS credentials come from",
            )
        )
        outcome.role_arn = f"arn:{plan.partition}:iam::{outcome.account_id}:role/{target.role_name}"
        existing_permissions = None
    else:
        outcome.role_arn = role["Arn"]
        if same_policy(role.get("AssumeRolePolicyDocument") or {}, trust):
            plan.unchanged(f"{role['Arn']}: trust policy")
        else:
            dropped = [p for p in email_patterns(role.get("AssumeRolePolicyDocument") or {}) if p != "*"]
            reason = "its trust policy differs from qbot's (replaced as a whole)"
            if dropped and not target.email_domains:
                reason += f"; this lifts its Email restriction ({', '.join(dropped)}): keep it with --email-domain"
            params = {"RoleName": target.role_name, "PolicyDocument": trust}
            plan.write(Step("iam", "UpdateAssumeRolePolicy", params, reason))
        longest = int(role.get("MaxSessionDuration") or ROLE_SESSION_SECONDS)
        if target.saml is not None and longest < session:
            plan.write(
                Step(
                    "iam",
                    "UpdateRole",
                    {"RoleName": target.role_name, "MaxSessionDuration": session},
                    f"its sessions last at most {longest}s; the bot asks for {session}s "
                    "(QBOT_SAML_SESSION_SECONDS: users sign in again when one ends)",
                )
            )
        existing_permissions = _inline_policy(plan, target.role_name, target.policy_name)
    if existing_permissions is not None and same_policy(existing_permissions, permissions):
        plan.unchanged(f"inline policy {target.policy_name}")
    else:
        plan.write(
            Step(
                "iam",
                "PutRolePolicy",
                {"RoleName": target.role_name, "PolicyName": target.policy_name, "PolicyDocument": permissions},
                "chat as the user on this one application, nothing else"
                if existing_permissions is None
                else "its permissions differ from qbot's",
            )
        )


def _inline_policy(plan: Plan, role_name: str, policy_name: str) -> dict[str, Any] | str | None:
    try:
        document: dict[str, Any] | str = plan.iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)[
            "PolicyDocument"
        ]
    except Exception as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise
    return document
