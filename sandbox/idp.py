"""An OpenID Connect provider stand-in, as strict as Okta, Entra ID or Keycloak, built on authlib's server.

It issues what the bot's identity chain consumes: authorization codes bound to PKCE (S256 only) and a nonce,
RS256 id_tokens carrying the `https://aws.amazon.com/tags` Email principal tag that STS turns into a session
tag, and rotating refresh tokens with reuse detection. Sign-in is a page listing the directory's people (a
form POST, so tests and headless browsers sign in the same way). `faults` makes it misbehave like a broken
or hostile IdP; `stats` lets tests see how often the bot came back.

Storage is in memory. Everything runs on one asyncio loop and authlib's grant code is synchronous, so each
request's read-validate-write is atomic without locks.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from string import Template
from typing import Any

from aiohttp import web
from authlib.common.security import generate_token, is_secure_transport
from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidRequestError,
    InvalidScopeError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    ResourceProtector,
    TokenMixin,
    scope_to_list,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode, OpenIDToken, UserInfoEndpoint
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy, MultiMapping

from sandbox.directory import Directory, User

log = logging.getLogger(__name__)

ID_TOKEN_ALG = "RS256"
AWS_TAGS_CLAIM = "https://aws.amazon.com/tags"
SCOPES_SUPPORTED = ["openid", "email", "profile", "offline_access", "groups"]
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
GRANT_TYPES = ["authorization_code", "refresh_token"]
CLAIMS_SUPPORTED = [
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
    "email", "email_verified", "name", "groups", AWS_TAGS_CLAIM,
]  # fmt: skip

_LOGIN_PAGE = Template(resources.files("sandbox").joinpath("templates/login.html").read_text("utf-8"))
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # No form-action: Chromium applies it to the redirect that follows the sign-in POST.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


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
    #: the authorization endpoint redirects back to the client with this error instead of signing in
    authorize_error: str | None = None

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


# --- what the IdP stores -----------------------------------------------------------------------------------


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


# --- authlib, adapted to aiohttp ---------------------------------------------------------------------------


class _Params(OAuth2Payload):
    def __init__(self, params: MultiMapping[str]) -> None:
        self._params = params

    @property
    def data(self) -> MultiMapping[str]:
        return self._params

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        values: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in self._params.items():
            values[key].append(value)
        return values


class _JsonBody(JsonPayload):
    def __init__(self, body: Any) -> None:
        self._body = body

    @property
    def data(self) -> Any:
        return self._body


class ReadRequest(OAuth2Request):
    """An aiohttp request whose body was read up front, because authlib's grants read it synchronously.

    Parameters come from the query string of a GET and from the form body of a POST, never a mix: a token
    request must not pick up credentials from its URL.
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: CIMultiDictProxy[str],
        query: MultiMapping[str],
        form: MultiDictProxy[str],
        json_body: Any = None,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._query = query
        self._form = form
        self.json_body = json_body
        self.payload = _Params(form if method == "POST" else query)

    @property
    def args(self) -> MultiMapping[str]:
        return self._query

    @property
    def form(self) -> MultiDictProxy[str]:
        return self._form


async def read_request(request: web.Request, issuer: str) -> ReadRequest:
    form: MultiDict[str] = MultiDict()
    json_body: Any = None
    if request.method == "POST":
        if request.content_type == "application/json":
            json_body = _json_or_none(await request.text())
        else:
            posted = await request.post()
            form.extend((key, value) for key, value in posted.items() if isinstance(value, str))
    return ReadRequest(
        request.method,
        issuer + request.path_qs,
        request.headers,
        request.query,
        MultiDictProxy(form),
        json_body,
    )


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class AiohttpAuthorizationServer(AuthorizationServer):
    """authlib's AuthorizationServer answering with aiohttp responses, backed by the IdP's memory."""

    def __init__(self, idp: SandboxIdP) -> None:
        super().__init__(scopes_supported=SCOPES_SUPPORTED)
        self.idp = idp
        self.register_token_generator("default", idp.generate_token)

    def query_client(self, client_id: str) -> RegisteredClient | None:
        return self.idp.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.idp.record_token(token, request)

    def authenticate_client(self, request: OAuth2Request, methods: list[str], endpoint: str = "token") -> Any:
        """Refuse two client authentications in one request (RFC 6749 §2.3); authlib would take the first."""
        if request.headers.get("Authorization") and request.form.get("client_secret"):
            raise InvalidRequestError("Use one client authentication method, not two.")
        return super().authenticate_client(request, methods, endpoint)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        raise TypeError("pass a ReadRequest: aiohttp bodies must be read before authlib sees them")

    def create_json_request(self, request: Any) -> JsonRequest:
        if not isinstance(request, ReadRequest):
            raise TypeError("pass a ReadRequest: aiohttp bodies must be read before authlib sees them")
        json_request = JsonRequest(request.method, request.uri, request.headers)
        json_request.payload = _JsonBody(request.json_body)
        return json_request

    def handle_response(self, status: int, body: Any, headers: Iterable[tuple[str, str]]) -> web.Response:
        if isinstance(body, dict):
            body = json.dumps(body)
        return web.Response(status=status, body=body.encode() if body else None, headers=list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Nothing listens: the IdP's own bookkeeping happens where tokens are saved and revoked."""


# --- grants and endpoints ----------------------------------------------------------------------------------


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
        return self.server.idp

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
        return self.server.idp

    def validate_token_request(self) -> None:
        super().validate_token_request()
        if error := self.idp.faults.refresh_error:
            raise OAuth2Error(error=error, description="Refused by a sandbox fault switch.")

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        return self.idp.use_refresh_token(refresh_token, self.request.client)

    def authenticate_user(self, refresh_token: IssuedToken) -> User | None:
        return self.idp.directory.by_username(refresh_token.username)

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
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


# --- the IdP -----------------------------------------------------------------------------------------------


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
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "revocation_endpoint": self.issuer + "/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": GRANT_TYPES,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "scopes_supported": SCOPES_SUPPORTED,
            "claims_supported": CLAIMS_SUPPORTED,
            "prompt_values_supported": ["none", "login", "consent"],
        }

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_no_stack_traces])
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize_page)
        app.router.add_post("/authorize", self._authorize_sign_in)
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/userinfo", self._userinfo)
        app.router.add_post("/revoke", self._revoke)
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
        if include_refresh_token and offline:
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

    # --- HTTP handlers

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(self.metadata())

    async def _jwks(self, request: web.Request) -> web.Response:
        self.stats.jwks_fetches += 1
        return web.json_response(self.jwks())

    async def _authorize_page(self, request: web.Request) -> web.Response:
        oauth_request = await read_request(request, self.issuer)
        try:
            grant = self.server.get_consent_grant(oauth_request)
            self._raise_authorize_fault(grant)
        except OAuth2Error as error:
            return self._authorization_error(oauth_request, error)
        return self._login_page(oauth_request)

    async def _authorize_sign_in(self, request: web.Request) -> web.Response:
        oauth_request = await read_request(request, self.issuer)
        try:
            grant = self.server.get_consent_grant(oauth_request)
            self._raise_authorize_fault(grant)
        except OAuth2Error as error:
            return self._authorization_error(oauth_request, error)
        username = oauth_request.form.get("username", "").strip()
        user = self.directory.by_username(username)
        if user is None:
            return self._login_page(oauth_request, error=f"No user named {username!r} in this directory.")
        response: web.Response = self.server.create_authorization_response(oauth_request, grant_user=user, grant=grant)
        return response

    async def _token(self, request: web.Request) -> web.Response:
        response: web.Response = self.server.create_token_response(await read_request(request, self.issuer))
        return response

    async def _userinfo(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        oauth_request = await read_request(request, self.issuer)
        response: web.Response = self.server.create_endpoint_response("userinfo", oauth_request)
        return response

    async def _revoke(self, request: web.Request) -> web.Response:
        oauth_request = await read_request(request, self.issuer)
        response: web.Response = self.server.create_endpoint_response("revocation", oauth_request)
        return response

    def _raise_authorize_fault(self, grant: CodeGrant) -> None:
        if error := self.faults.authorize_error:
            raise OAuth2Error(
                error=error, description="Refused by a sandbox fault switch.", redirect_uri=grant.redirect_uri
            )

    def _authorization_error(self, request: ReadRequest, error: OAuth2Error) -> web.Response:
        """Redirect only to a redirect_uri validated for a known client; otherwise tell the user instead."""
        if error.redirect_uri:
            error.state = request.payload.state
            response: web.Response = self.server.handle_error_response(request, error)
            return response
        return _error_page(error.error, error.description or "The sign-in request is not valid.")

    def _login_page(self, request: ReadRequest, error: str | None = None) -> web.Response:
        params = {key: value for key, value in request.payload.data.items() if key != "username"}
        page = _LOGIN_PAGE.substitute(
            client_id=html.escape(params.get("client_id", "")),
            action="/authorize",
            error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
            hidden=_hidden_fields(params),
            users=_user_buttons(self.directory.users.values()),
        )
        return web.Response(text=page, content_type="text/html", headers=_PAGE_HEADERS)


def _hidden_fields(params: Mapping[str, str]) -> str:
    return "\n".join(
        f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">' for key, value in params.items()
    )


def _user_buttons(users: Iterable[User]) -> str:
    return "\n".join(
        f'<li><button type="submit" name="username" value="{html.escape(user.username)}">'
        f"<strong>{html.escape(user.name)}</strong> "
        f'<span class="email">{html.escape(user.email)}</span><br>'
        f'<span class="groups">{html.escape(", ".join(user.groups) or "no groups")}</span></button></li>'
        for user in users
    )


def _error_page(error: str, description: str) -> web.Response:
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign-in error · Sandbox IdP</title>"
        f"</head><body><h1>Sign-in request refused</h1><p><code>{html.escape(error)}</code>: "
        f"{html.escape(description)}</p></body></html>"
    )
    return web.Response(status=400, text=page, content_type="text/html", headers=_PAGE_HEADERS)


@web.middleware
async def _no_stack_traces(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A failure inside the IdP answers a bare OAuth server_error; the details go to the log only."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("sandbox IdP failed on %s %s", request.method, request.path)
        return web.json_response({"error": "server_error"}, status=500)
