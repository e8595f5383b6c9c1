"""What the sandbox IdP stores: registered clients, issued authorization codes and token responses.

Each record is the authlib mixin its grants query, so the grants read and spend them without knowing the
storage. An IssuedToken answers for both its access and refresh token; tokens from one sign-in share a
family, which is what refresh-token reuse detection revokes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, scope_to_list
from authlib.oidc.core import AuthorizationCodeMixin

from sandbox.directory import User
from sandbox.idp.discovery import CLIENT_AUTH_METHODS, GRANT_TYPES

if TYPE_CHECKING:
    from sandbox.idp.provider import SandboxIdP


@dataclass(eq=False)
class RegisteredClient(ClientMixin):
    """A confidential client: it always authenticates, and only its exact redirect URIs are accepted."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    client_metadata: dict[str, Any] = field(default_factory=dict)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        """None: OIDC makes redirect_uri mandatory, so a request without one is refused, not defaulted."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """None (invalid_scope) unless `openid` is asked for: this is an OpenID provider, not bare OAuth."""
        scopes = scope_to_list(scope) or []
        if "openid" not in scopes:
            return None
        return " ".join(dict.fromkeys(scopes))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


@dataclass(eq=False)
class IssuedCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    nonce: str
    auth_time: int
    code_challenge: str
    code_challenge_method: str
    expires_at: float
    redeemed: bool = False

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass(eq=False)
class IssuedToken(TokenMixin):
    """One token response. Every token descending from one sign-in shares a `family` (for reuse detection)."""

    idp: SandboxIdP
    access_token: str
    refresh_token: str | None
    client_id: str
    username: str
    scope: str
    family: str
    auth_time: int
    access_expires_at: float
    refresh_expires_at: float | None
    access_revoked: bool = False
    refresh_revoked: bool = False
    #: the refresh token was exchanged for a newer one; presenting it again is reuse
    rotated: bool = False

    def check_client(self, client: RegisteredClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.access_expires_at - self.idp.clock())

    def is_expired(self) -> bool:
        return self.idp.clock() >= self.access_expires_at

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> User | None:
        return self.idp.directory.by_username(self.username)

    def get_client(self) -> RegisteredClient | None:
        return self.idp.clients.get(self.client_id)

    def refresh_usable(self, now: float) -> bool:
        return (
            self.refresh_token is not None
            and not self.refresh_revoked
            and self.refresh_expires_at is not None
            and now < self.refresh_expires_at
        )

    def revoke(self) -> None:
        self.access_revoked = True
        self.refresh_revoked = True
