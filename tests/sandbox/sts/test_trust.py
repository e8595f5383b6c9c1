"""The role's trust policy: provider, audience, and an Email session tag and nothing else."""

from __future__ import annotations

from functools import partial
from typing import Any

from sandbox.credentials import ACCOUNT_ID
from sandbox.sts import TAGS_CLAIM
from tests.sandbox.sts.deployment import (
    ALICE,
    FOREIGN_ROLE_ARN,
    REPORTING_ROLE_ARN,
    Deployment,
    TestIssuer,
    assert_refused,
)


def test_token_without_email_tag_is_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    other_tags = {"principal_tags": {"Team": ["core"]}}
    for tags in (other_tags, None):
        changes: dict[str, Any] = {TAGS_CLAIM: tags}
        token = issuer.token(**changes)
        assert_refused(deployed, partial(deployed.assume, token), "AccessDenied", 403, "Not authorized")


def test_tags_beyond_email_are_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    """The trust policy allows only the Email tag key (ForAllValues:StringEquals aws:TagKeys)."""
    changes: dict[str, Any] = {TAGS_CLAIM: {"principal_tags": {"Email": [ALICE], "CostCenter": ["42"]}}}
    token = issuer.token(**changes)
    assert_refused(deployed, partial(deployed.assume, token), "AccessDenied", 403, "Not authorized")


def test_multi_valued_tag_is_refused(deployed: Deployment, issuer: TestIssuer) -> None:
    changes: dict[str, Any] = {TAGS_CLAIM: {"principal_tags": {"Email": [ALICE, "mallory@example.com"]}}}
    token = issuer.token(**changes)
    assert_refused(deployed, partial(deployed.assume, token), "InvalidIdentityToken")


def test_unknown_role_is_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token()
    unknown = f"arn:aws:iam::{ACCOUNT_ID}:role/nobody"
    assert_refused(deployed, partial(deployed.assume, token, unknown), "AccessDenied", 403, "Not authorized")


def test_role_trusting_another_audience_is_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token()  # aud qbot: a client of this provider, but not the one the role trusts
    assert_refused(deployed, partial(deployed.assume, token, REPORTING_ROLE_ARN), "AccessDenied", 403)


def test_role_trusting_another_provider_is_denied(deployed: Deployment, issuer: TestIssuer) -> None:
    token = issuer.token()
    assert_refused(deployed, partial(deployed.assume, token, FOREIGN_ROLE_ARN), "AccessDenied", 403)
