"""Temporary AWS credentials minted by the STS stand-in, and the static keys of the sandbox administrator.

STS and Q Business are separate services at AWS that share the IAM credential store; here both stand-ins
share one `CredentialRegistry`. Q Business looks up the signer's secret here to verify SigV4 and learns the
caller's identity from the session tags that STS recorded.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ACCOUNT_ID = "123456789012"
ADMIN_ACCESS_KEY_ID = "AKIASANDBOXADMIN0001"
ADMIN_SECRET_ACCESS_KEY = "sandbox-admin-secret-access-key-0000000001"

_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class IssuedCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    expiration: datetime | None
    principal_arn: str
    session_tags: dict[str, str] = field(default_factory=dict)

    @property
    def email(self) -> str | None:
        """The Email session tag: how Q Business knows the user behind web-identity credentials."""
        return self.session_tags.get("Email")

    @property
    def is_admin(self) -> bool:
        return self.session_token is None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expiration is not None and (now or datetime.now(UTC)) >= self.expiration


class CredentialRegistry:
    def __init__(self) -> None:
        self._by_key: dict[str, IssuedCredentials] = {}
        self.add_static(ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, f"arn:aws:iam::{ACCOUNT_ID}:user/admin")

    def add_static(self, access_key_id: str, secret_access_key: str, principal_arn: str) -> IssuedCredentials:
        creds = IssuedCredentials(access_key_id, secret_access_key, None, None, principal_arn)
        self._by_key[access_key_id] = creds
        return creds

    def mint_session(
        self, principal_arn: str, duration: timedelta, session_tags: dict[str, str]
    ) -> IssuedCredentials:
        creds = IssuedCredentials(
            access_key_id="ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
            secret_access_key=secrets.token_urlsafe(30)[:40],
            session_token=secrets.token_urlsafe(96),
            expiration=datetime.now(UTC).replace(microsecond=0) + duration,
            principal_arn=principal_arn,
            session_tags=dict(session_tags),
        )
        self._by_key[creds.access_key_id] = creds
        return creds

    def revoke(self, access_key_id: str) -> None:
        """Forget issued credentials, as AWS does when a session is revoked: requests signed with them fail."""
        self._by_key.pop(access_key_id, None)

    def lookup(self, access_key_id: str) -> IssuedCredentials | None:
        return self._by_key.get(access_key_id)

    def all(self) -> list[IssuedCredentials]:
        return list(self._by_key.values())
