"""authlib's grants and endpoints, made as strict as a production IdP.

PKCE is mandatory and S256 only, the nonce is mandatory and single use, refresh tokens rotate (presenting a
retired one revokes its family), a client authenticates one way only, userinfo needs a live token with the
openid scope. The grants keep no state of their own: they ask the IdP (`self.idp`) to record and spend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, OAuth2Request, ResourceProtector
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, OpenIDToken, UserInfoEndpoint

from sandbox.directory import User
from sandbox.idp.discovery import CLIENT_AUTH_METHODS
from sandbox.idp.records import IssuedCode, IssuedToken, RegisteredClient

if TYPE_CHECKING:
    from sandbox.idp.bridge import AiohttpAuthorizationServer
    from sandbox.idp.provider import SandboxIdP


class S256Challenge(CodeChallenge):
    """PKCE that a confidential client cannot skip and cannot downgrade to `plain`.

    authlib's CodeChallenge(required=True) only insists for public clients and accepts `plain`.
    """

    def validate_code_challenge(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        if grant.request.payload.data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE with code_challenge_method=S256 is required.")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    @property
    def idp(self) -> SandboxIdP:
        idp: SandboxIdP = self.server.idp  # authlib's server is untyped; ours carries the provider
        return idp

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        if self.request.payload.data.get("response_mode", "query") != "query":
            raise InvalidRequestError("Only response_mode=query is supported.", redirect_uri=redirect_uri)
        return redirect_uri

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        self.idp.record_code(code, request)

    def query_authorization_code(self, code: str, client: RegisteredClient) -> IssuedCode | None:
        return self.idp.redeem_code(code, client)

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        """Nothing to do: the code was spent when presented, and is kept to recognise its reuse."""

    def authenticate_user(self, authorization_code: IssuedCode) -> User | None:
        return self.idp.directory.by_username(authorization_code.username)


class RotatingRefreshGrant(RefreshTokenGrant):
    """Every refresh answers a new refresh token and retires the old one (OAuth security BCP rotation)."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def idp(self) -> SandboxIdP:
        idp: SandboxIdP = self.server.idp  # authlib's server is untyped; ours carries the provider
        return idp

    def validate_token_request(self) -> None:
        super().validate_token_request()
        if error := self.idp.faults.refresh_error:
            raise OAuth2Error(error=error, description="Refused by a sandbox fault switch.")

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        return self.idp.use_refresh_token(refresh_token, self.request.client)

    def authenticate_user(self, refresh_token: IssuedToken) -> User | None:
        return self.idp.directory.by_username(refresh_token.username)

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        if self.idp.faults.omit_refresh_token:  # no new token was issued: the old one goes on (no rotation)
            return
        refresh_token.refresh_revoked = True
        refresh_token.rotated = True


class CodeIdToken(OpenIDCode):
    """The id_token of the code flow: the nonce is mandatory, and a nonce seen before is a replay."""

    def __init__(self, idp: SandboxIdP) -> None:
        super().__init__(require_nonce=True)
        self.idp = idp

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return (request.payload.client_id, nonce) in self.idp.nonces_used

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        code: IssuedCode = request.authorization_code
        return self.idp.mint_id_token(
            request.client.client_id, request.user, code.auth_time, token["access_token"], nonce=code.nonce
        )


class RefreshIdToken(OpenIDToken):
    """A fresh id_token on every refresh (new iat/exp, no nonce): the bot trades it at STS each time."""

    def __init__(self, idp: SandboxIdP) -> None:
        self.idp = idp

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        previous: IssuedToken = request.refresh_token
        return self.idp.mint_id_token(request.client.client_id, request.user, previous.auth_time, token["access_token"])


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def __init__(self, server: AiohttpAuthorizationServer) -> None:
        super().__init__(server)
        self.idp = server.idp

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return self.idp.find_token(token_string)

    def revoke_token(self, token: IssuedToken, request: OAuth2Request) -> None:
        self.idp.revoke(token, request.form["token"])


class AccessTokenValidator(BearerTokenValidator):
    def __init__(self, idp: SandboxIdP) -> None:
        super().__init__()
        self.idp = idp

    def authenticate_token(self, token_string: str) -> IssuedToken | None:
        return self.idp.access_tokens.get(token_string)


class PlainUserInfo(UserInfoEndpoint):
    """Plain-JSON userinfo for a live access token with the openid scope."""

    def __init__(self, server: AiohttpAuthorizationServer) -> None:
        protector = ResourceProtector()
        protector.register_token_validator(AccessTokenValidator(server.idp))
        super().__init__(server, protector)
        self.idp = server.idp

    def __call__(self, request: OAuth2Request) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token: IssuedToken = self.resource_protector.validate_request(["openid"], request)
        user = token.get_user()
        if user is None:
            raise InvalidTokenError()
        return 200, self.idp.user_claims(user), default_json_headers
