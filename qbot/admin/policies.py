"""The two IAM documents that let qbot act as its users, from one source.

- The role's **trust policy**: the IdP's users (through IAM's OIDC provider for the issuer) may assume the
  role with `sts:AssumeRoleWithWebIdentity` only with an id_token whose `aud` is one of our client ids, and may
  tag the session (`sts:TagSession`) only with an `Email` tag — the tag Q Business identifies the user by —
  and no other tag key (`ForAllValues:StringEquals aws:TagKeys`), so an IdP claim mapping cannot add tags a
  permission elsewhere might trust. Optionally the Email must be in the company's domain(s).
  In SAML mode (`saml_trust_policy`) the same, through IAM's SAML provider with `sts:AssumeRoleWithSAML`, for
  assertions posted to qbot's assertion consumer URL (`SAML:aud`).
- The role's **permissions policy**: the user-facing Q Business calls, on that one application, and the
  user-subscription claim that auto-subscription makes on a new user's first call. Nothing administrative.

`qbot admin provision` writes these, `qbot doctor` checks a role against them, and `manifests/aws/` holds them
as templates for administrators with their own infrastructure code (rendered by `render_manifests`, and a test
fails when the files drift from it).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

POLICY_VERSION = "2012-10-17"

#: What qbot calls as the user (bot/qbusiness.py), and Chat for a streaming client.
USER_ACTIONS = (
    "qbusiness:Chat",
    "qbusiness:ChatSync",
    "qbusiness:ListConversations",
    "qbusiness:ListMessages",
    "qbusiness:DeleteConversation",
    "qbusiness:PutFeedback",
    "qbusiness:ListPlugins",  # qplugins / qplugin <name>: the application's plugins, as the user sees them
)

#: What group sync calls with administrator credentials (DeleteGroup only for `groups sync --prune`).
GROUP_SYNC_ACTIONS = ("qbusiness:PutGroup", "qbusiness:GetGroup", "qbusiness:ListGroups", "qbusiness:DeleteGroup")

TRUST_SIDS = ("QbotUsersSignInWithTheIdP", "QbotSessionsCarryTheUsersEmail")

#: The session tags qbot's chain needs from the id_token (`https://aws.amazon.com/tags` principal_tags); an IdP
#: that sends more is refused by STS under this trust policy.
SESSION_TAG_KEYS = ("Email",)

Policy = dict[str, Any]


def provider_path(issuer: str) -> str:
    """The issuer as IAM names its OIDC provider (and prefixes condition keys): host and path, no scheme.

    `https://idp.example.com/oauth2/default/` -> `idp.example.com/oauth2/default`.
    """
    parts = urlsplit(issuer.strip())
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an issuer URL: {issuer!r}")
    return (parts.netloc + parts.path).rstrip("/")


def provider_arn(account_id: str, issuer: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:oidc-provider/{provider_path(issuer)}"


def path_of_provider_arn(arn: str) -> str:
    """`arn:aws:iam::123456789012:oidc-provider/idp.example.com` -> `idp.example.com`."""
    _, marker, path = arn.partition(":oidc-provider/")
    if not marker or not path:
        raise ValueError(f"not an IAM OIDC provider ARN: {arn!r}")
    return path


def saml_provider_arn(account_id: str, name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:saml-provider/{saml_provider_name(name)}"


def saml_provider_name(name: str) -> str:
    """A name IAM accepts for a SAML provider: 1 to 128 of letters, digits, `.`, `_` and `-`."""
    if not re.fullmatch(r"[\w.-]{1,128}", name, re.ASCII):
        raise ValueError(f"not a SAML provider name: {name!r} (letters, digits, . _ -; at most 128)")
    return name


def name_of_saml_provider_arn(arn: str) -> str:
    """`arn:aws:iam::123456789012:saml-provider/qbot` -> `qbot`."""
    match = re.fullmatch(r"arn:aws[\w-]*:iam::\d{12}:saml-provider/([\w.-]{1,128})", arn.strip(), re.ASCII)
    if not match:
        raise ValueError(f"not an IAM SAML provider ARN: {arn!r}")
    return match.group(1)


def email_domain(domain: str) -> str:
    """A domain for `aws:RequestTag/Email` (`Example.COM` -> `example.com`): IAM's StringLike is case-sensitive,
    so the IdP must send the Email tag in lower case, as it normally does."""
    cleaned = domain.strip().lower().lstrip("@")
    if not re.fullmatch(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9-]{2,}", cleaned):
        raise ValueError(f"not an email domain: {domain!r} (expected e.g. example.com)")
    return cleaned


def trust_policy(oidc_provider_arn: str, client_ids: Sequence[str], email_domains: Sequence[str] = ()) -> Policy:
    """Who may assume the role: the IdP's users, for our client ids, in sessions tagged with an Email (in one of
    `email_domains`, when given) and nothing else."""
    if not client_ids:
        raise ValueError("the trust policy needs at least one client id")
    audience: str | list[str] = client_ids[0] if len(client_ids) == 1 else list(client_ids)
    condition = {"StringEquals": {f"{path_of_provider_arn(oidc_provider_arn)}:aud": audience}}
    return _trust(oidc_provider_arn, "sts:AssumeRoleWithWebIdentity", condition, email_domains)


def saml_trust_policy(saml_provider_arn: str, acs: str, email_domains: Sequence[str] = ()) -> Policy:
    """SAML mode's trust policy: the IdP's users (through IAM's SAML provider), with assertions made for qbot's
    assertion consumer URL, in sessions tagged with an Email and nothing else.

    `SAML:aud` is what STS reads from the assertion's `SubjectConfirmationData/@Recipient` (the URL the response
    was posted to; AssumeRoleWithSAML returns it as `Audience`), not its `Audience` element. For the AWS console
    that is https://signin.aws.amazon.com/saml; for qbot it is qbot's own ACS URL, so an assertion the IdP made
    for the console or any other application cannot be replayed through qbot's role."""
    return _trust(saml_provider_arn, "sts:AssumeRoleWithSAML", {"StringEquals": {"SAML:aud": acs}}, email_domains)


def _trust(provider: str, action: str, condition: Policy, email_domains: Sequence[str]) -> Policy:
    patterns = [f"*@{email_domain(domain)}" for domain in email_domains] or ["*"]
    email: str | list[str] = patterns[0] if len(patterns) == 1 else patterns
    principal = {"Federated": provider}
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Sid": TRUST_SIDS[0], "Effect": "Allow", "Principal": principal, "Action": action, "Condition": condition},
            {
                "Sid": TRUST_SIDS[1],
                "Effect": "Allow",
                "Principal": principal,
                "Action": "sts:TagSession",
                "Condition": {
                    "StringLike": {"aws:RequestTag/Email": email},
                    "ForAllValues:StringEquals": {"aws:TagKeys": list(SESSION_TAG_KEYS)},
                },
            },
        ],
    }


def email_patterns(policy: Policy | str) -> list[str]:
    """The `aws:RequestTag/Email` values (StringLike or StringEquals) of a trust policy's TagSession statements:
    `["*"]` for any email, `["*@example.com"]` for one domain."""
    document = json.loads(policy) if isinstance(policy, str) else policy
    statements = document.get("Statement") or []
    found: list[str] = []
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action") or []
        if "sts:TagSession" not in (actions if isinstance(actions, list) else [actions]):
            continue
        conditions = statement.get("Condition") or {}
        for operator in ("StringLike", "StringEquals"):
            values = (conditions.get(operator) or {}).get("aws:RequestTag/Email")
            found += values if isinstance(values, list) else [values] if values else []
    return found


def permissions_policy(application_arn: str) -> Policy:
    """What the role may do: chat as the user on this one application, and be auto-subscribed."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "QbotChatsAsTheUser",
                "Effect": "Allow",
                "Action": list(USER_ACTIONS),
                "Resource": application_arn,
            },
            {
                "Sid": "QbotAutoSubscribesNewUsers",
                "Effect": "Allow",
                "Action": "user-subscriptions:CreateClaim",
                "Resource": "*",
                "Condition": {
                    "Bool": {"user-subscriptions:CreateForSelf": "true"},
                    "StringEquals": {"aws:CalledViaLast": "qbusiness.amazonaws.com"},
                },
            },
        ],
    }


def group_sync_policy(application_arn: str, index_id: str) -> Policy:
    """What the bot's own (administrator) identity needs for group sync: the groups of one index."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "QbotWritesTheIndexGroups",
                "Effect": "Allow",
                "Action": list(GROUP_SYNC_ACTIONS),
                "Resource": [application_arn, f"{application_arn}/index/{index_id}"],
            }
        ],
    }


def application_arn(region: str, account_id: str, application_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:qbusiness:{region}:{account_id}:application/{application_id}"


# -- comparing documents as IAM means them -------------------------------------------------------------------

def canonical(policy: Policy | str) -> Any:
    """A policy in a form where equal meaning is equal value: key order, list order and `"x"` vs `["x"]`
    do not matter (IAM returns documents as they were written, not normalised)."""
    return _canonical(json.loads(policy) if isinstance(policy, str) else policy)


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        items = sorted((_canonical(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
        return items[0] if len(items) == 1 and not isinstance(items[0], dict) else items
    return value


def same_policy(a: Policy | str, b: Policy | str) -> bool:
    return bool(canonical(a) == canonical(b))


# -- the manifests ---------------------------------------------------------------------------------------------

TEMPLATE_ACCOUNT = "${ACCOUNT_ID}"
TEMPLATE_ISSUER = "${ISSUER_HOST_AND_PATH}"
TEMPLATE_CLIENT_ID = "${CLIENT_ID}"
TEMPLATE_REGION = "${REGION}"
TEMPLATE_APPLICATION = "${APPLICATION_ID}"
TEMPLATE_INDEX = "${INDEX_ID}"
TEMPLATE_SAML_PROVIDER = "${SAML_PROVIDER_NAME}"
TEMPLATE_PUBLIC_URL = "${PUBLIC_URL}"


def render_manifests() -> dict[str, str]:
    """manifests/aws/*.json: the same documents with `${...}` placeholders (envsubst fills them)."""
    provider = f"arn:aws:iam::{TEMPLATE_ACCOUNT}:oidc-provider/{TEMPLATE_ISSUER}"
    saml = f"arn:aws:iam::{TEMPLATE_ACCOUNT}:saml-provider/{TEMPLATE_SAML_PROVIDER}"
    application = f"arn:aws:qbusiness:{TEMPLATE_REGION}:{TEMPLATE_ACCOUNT}:application/{TEMPLATE_APPLICATION}"
    return {
        "trust-policy.json": json.dumps(trust_policy(provider, [TEMPLATE_CLIENT_ID]), indent=2) + "\n",
        "saml-trust-policy.json": json.dumps(
            saml_trust_policy(saml, f"{TEMPLATE_PUBLIC_URL}/auth/saml/acs"), indent=2
        ) + "\n",
        "permissions-policy.json": json.dumps(permissions_policy(application), indent=2) + "\n",
        "group-sync-policy.json": json.dumps(group_sync_policy(application, TEMPLATE_INDEX), indent=2) + "\n",
    }


def write_manifests(folder: Path) -> None:
    for name, text in render_manifests().items():
        (folder / name).write_text(text)


if __name__ == "__main__":  # python -m qbot.admin.policies manifests/aws
    write_manifests(Path(sys.argv[1] if len(sys.argv) > 1 else "manifests/aws"))
