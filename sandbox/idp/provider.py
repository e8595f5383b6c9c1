"""The sandbox IdP itself: its state, what tests switch and count, signing, and the bookkeeping of codes and
tokens that the grants call into (single-use codes, rotating refresh tokens, family revocation)."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from aiohttp import web
from authlib.common.security import generate_token, is_secure_transport
from authlib.oauth2.rfc6749 import InvalidScopeError, OAuth2Request, scope_to_list
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from sandbox.directory import Directory, User
from sandbox.idp.bridge import AiohttpAuthorizationServer, IdPRoutes
from sandbox.idp.discovery import AWS_TAGS_CLAIM, ID_TOKEN_ALG, discovery_document
from sandbox.idp.grants import (
    CodeGrant,
    CodeIdToken,
    PlainUserInfo,
    RefreshIdToken,
    Revocation,
    RotatingRefreshGrant,
    S256Challenge,
)
from sandbox.idp.records import IssuedCode, IssuedToken, RegisteredClient
from sandbox.idp.saml import SAMLIdP
from sandbox.idp.saml_routes import SAMLRoutes

log = logging.getLogger(__name__)


@dataclass
class IdPFaults:
    """Switches that make the IdP misbehave, so tests can prove the bot refuses what it must refuse."""

    #: merged over every id_token issued; a None value removes that claim
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    #: sign id_tokens with a key that is not in the JWKS (same kid as the real key)
    sign_with_rogue_key: bool = False
    omit_aws_tags: bool = False
    #: no email / email_verified in id_tokens or userinfo
    omit_email: bool = False
    #: the refresh grant answers this OAuth error code (after authenticating the client)
    refresh_error: str | None = None
    #: no refresh token even with offline_access (an app the administrator did not allow offline access); a
    #: refresh then answers without a new one and the one it used stays valid, as Cognito's refreshes do
    omit_refresh_token: bool = False
    #: the authorization endpoint redirects back to the client with this error instead of signing in
    authorize_error: str | None = None
    #: the token endpoint answers this many seconds late (a slow IdP); switching it off (or `reset`) releases
    #: the requests already waiting, so a test can act while a refresh is in flight, then let it go on
    token_delay_seconds: float = 0.0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(IdPFaults(), f.name))


@dataclass
class IdPStats:
    #: successful refresh grants, by username
    refreshes: Counter[str] = field(default_factory=Counter)
    codes_issued: int = 0
    #: token responses issued (all grants)
    tokens_issued: int = 0
    #: token responses issued, by grant type
    tokens_by_grant: Counter[str] = field(default_factory=Counter)
    #: GET /jwks served
    jwks_fetches: int = 0
    #: token requests that arrived while `faults.token_delay_seconds` held the endpoint (counted on arrival)
    token_requests_delayed: int = 0


class SandboxIdP:
    def __init__(
        self,
        issuer: str,
        directory: Directory,
        *,
        id_token_ttl: int = 300,
        access_token_ttl: int = 300,
        refresh_token_ttl: int = 30 * 86400,
        code_ttl: int = 60,
        clock: Callable[[], float] = time.time,
        signing_key: RSAKey | None = None,
    ) -> None:
        """`clock` lets tests expire codes and tokens without sleeping; `signing_key` spares a test suite
        generating an RSA key per IdP (~0.1 s). Without one, a fresh key is generated here."""
        if not is_secure_transport(issuer):
            raise ValueError(f"issuer {issuer!r} must be https or loopback http (authlib refuses the rest)")
        self.issuer = issuer.rstrip("/")
        self.directory = directory
        self.id_token_ttl = id_token_ttl
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.code_ttl = code_ttl
        self.clock = clock
        self.faults = IdPFaults()
        self.stats = IdPStats()

        self.clients: dict[str, RegisteredClient] = {}
        self.codes: dict[str, IssuedCode] = {}
        self.nonces_used: set[tuple[str, str]] = set()
        self.access_tokens: dict[str, IssuedToken] = {}
        self.refresh_tokens: dict[str, IssuedToken] = {}
        self.families: dict[str, list[IssuedToken]] = defaultdict(list)
        self._family_of_code: dict[str, str] = {}

        if signing_key is None:
            signing_key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": ID_TOKEN_ALG}, private=True)
        self._key = signing_key
        self._key.ensure_kid()
        self._kid = self._key.kid or self._key.thumbprint()
        self._rogue: RSAKey | None = None
        self._retired: list[RSAKey] = []  # still published after a rotation, as IdPs do for a while
        self.server = self._build_server()
        self.saml = SAMLIdP(self.issuer, directory, self.subject, clock=clock)

    # --- public interface

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        self.clients[client_id] = RegisteredClient(client_id, client_secret, list(redirect_uris))

    def revoke_user(self, username: str) -> None:
        """An admin ends every session of this user: all their tokens stop working at once."""
        for issued in list(self.access_tokens.values()):  # every token response is keyed by its access token
            if issued.username == username:
                issued.revoke()

    def live_refresh_tokens(self, username: str) -> list[str]:
        """The refresh tokens of this user that would still be honoured: tests look for them where they must not be."""
        now = self.clock()
        return [
            token for token, issued in self.refresh_tokens.items()
            if issued.username == username and not issued.rotated and issued.refresh_usable(now)
        ]

    def subject(self, username: str) -> str:
        """The user's `sub`: stable across restarts and issuers, and deliberately not their email."""
        return "00u" + hashlib.sha256(f"sandbox-user:{username}".encode()).hexdigest()[:17]

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet([self._key, *self._retired]).as_dict(private=False))

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """Sign from now on with a new key under a new kid (returned); the old one stays published if kept."""
        if keep_old:
            self._retired.append(self._key)
        self._key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": ID_TOKEN_ALG}, private=True)
        self._key.ensure_kid()
        self._kid = self._key.kid or self._key.thumbprint()
        self._rogue = None
        return self._kid

    def metadata(self) -> dict[str, Any]:
        return discovery_document(self.issuer)

    def app(self) -> web.Application:
        """The OIDC endpoints and, beside them, the SAML 2.0 ones (`/saml/metadata`, `/saml/sso`)."""
        app = IdPRoutes(self).app()
        SAMLRoutes(self.saml).add_to(app)
        return app

    # --- claims and signing

    def user_claims(self, user: User) -> dict[str, Any]:
        """Every claim about the user, whatever the scope (authlib's UserInfo.filter drops custom claims)."""
        claims: dict[str, Any] = {
            "sub": self.subject(user.username),
            "name": user.name,
            "email": user.email,
            "email_verified": user.email_verified,
            "groups": list(user.groups),
        }
        if self.faults.omit_email:
            del claims["email"], claims["email_verified"]
        return claims

    def mint_id_token(
        self, client_id: str, user: User, auth_time: int, access_token: str, nonce: str | None = None
    ) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + self.id_token_ttl,
            "auth_time": auth_time,
            **self.user_claims(user),
        }
        if nonce:
            claims["nonce"] = nonce
        if at_hash := create_half_hash(access_token, ID_TOKEN_ALG):
            claims["at_hash"] = at_hash.decode()
        if not self.faults.omit_aws_tags:
            claims[AWS_TAGS_CLAIM] = {
                "principal_tags": {"Email": [user.email]},
                "transitive_tag_keys": ["Email"],
            }
        for name, value in self.faults.id_token_claims.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        key = self._rogue_key() if self.faults.sign_with_rogue_key else self._key
        header = {"alg": ID_TOKEN_ALG, "kid": self._kid, "typ": "JWT"}
        return jwt.encode(header, claims, key, algorithms=[ID_TOKEN_ALG])

    def _rogue_key(self) -> RSAKey:
        if self._rogue is None:
            self._rogue = RSAKey.generate_key(2048, parameters={"kid": self._kid}, private=True)
        return self._rogue

    # --- codes and tokens (called by the grants)

    def generate_token(
        self,
        grant_type: str,
        client: RegisteredClient,
        user: User | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """A refresh token only with offline_access, as Okta and Entra do; a refresh always rotates it."""
        allowed = client.get_allowed_scope(scope)
        if allowed is None:
            raise InvalidScopeError()
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": generate_token(42),
            "expires_in": expires_in or self.access_token_ttl,
            "scope": allowed,
        }
        offline = "offline_access" in scope_to_list(allowed) or grant_type == "refresh_token"
        if include_refresh_token and offline and not self.faults.omit_refresh_token:
            token["refresh_token"] = generate_token(48)
        return token

    def record_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        nonce = data["nonce"]
        self.codes[code] = IssuedCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            username=request.user.username,
            nonce=nonce,
            auth_time=int(self.clock()),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            expires_at=self.clock() + self.code_ttl,
        )
        self.nonces_used.add((request.client.client_id, nonce))
        self.stats.codes_issued += 1

    def redeem_code(self, code: str, client: RegisteredClient) -> IssuedCode | None:
        """Spend a code on its first presentation; a second one revokes what it bought (RFC 6749 §4.1.2)."""
        issued = self.codes.get(code)
        if issued is None or issued.client_id != client.client_id:
            return None
        if issued.redeemed:
            if family := self._family_of_code.get(code):
                self._revoke_family(family)
            return None
        issued.redeemed = True
        if self.clock() >= issued.expires_at:
            return None
        return issued

    def record_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        now = self.clock()
        if request.refresh_token is not None:
            previous: IssuedToken = request.refresh_token
            family, auth_time = previous.family, previous.auth_time
            self.stats.refreshes[request.user.username] += 1
        else:
            code: IssuedCode = request.authorization_code
            family, auth_time = secrets.token_hex(8), code.auth_time
            self._family_of_code[code.code] = family
        refresh_token = token.get("refresh_token")
        issued = IssuedToken(
            idp=self,
            access_token=token["access_token"],
            refresh_token=refresh_token,
            client_id=request.client.client_id,
            username=request.user.username,
            scope=token["scope"],
            family=family,
            auth_time=auth_time,
            access_expires_at=now + token["expires_in"],
            refresh_expires_at=now + self.refresh_token_ttl if refresh_token else None,
        )
        self.access_tokens[issued.access_token] = issued
        if refresh_token:
            self.refresh_tokens[refresh_token] = issued
        self.families[family].append(issued)
        self.stats.tokens_issued += 1
        self.stats.tokens_by_grant[request.payload.grant_type] += 1

    def use_refresh_token(self, refresh_token: str, client: RegisteredClient) -> IssuedToken | None:
        """A usable refresh token, or None; a rotated one presented again revokes its whole family."""
        issued = self.refresh_tokens.get(refresh_token)
        if issued is None or not issued.check_client(client):
            return None
        if issued.rotated:
            log.warning("refresh token reuse by %s: revoking the token family", issued.username)
            self._revoke_family(issued.family)
            return None
        if not issued.refresh_usable(self.clock()) or self.directory.by_username(issued.username) is None:
            return None
        return issued

    def find_token(self, token_string: str) -> IssuedToken | None:
        return self.access_tokens.get(token_string) or self.refresh_tokens.get(token_string)

    def revoke(self, issued: IssuedToken, token_string: str) -> None:
        """Revoking an access token ends only it; revoking a refresh token ends the sign-in it came from."""
        if token_string == issued.refresh_token:
            self._revoke_family(issued.family)
        else:
            issued.access_revoked = True

    def _revoke_family(self, family: str) -> None:
        for issued in self.families.get(family, []):
            issued.revoke()

    # --- wiring

    def _build_server(self) -> AiohttpAuthorizationServer:
        server = AiohttpAuthorizationServer(self)
        server.register_grant(CodeGrant, [S256Challenge(required=True), CodeIdToken(self)])
        server.register_grant(RotatingRefreshGrant, [RefreshIdToken(self)])
        server.register_endpoint(Revocation(server))
        server.register_endpoint(PlainUserInfo(server))
        return server
