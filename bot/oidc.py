"""The bot's OpenID Connect client: authorization URL, code exchange, id_token verification, refresh, revoke.

The grants go through authlib's httpx client (`AsyncOAuth2Client`); JOSE is joserfc. Discovery is fetched
once and cached; its `issuer` must be the configured one (modulo a trailing slash, which `Settings` strips),
and from then on the discovery document's own `issuer` is what id_tokens must carry, exactly. The JWKS is
cached and fetched again once when a token names a kid the cache lacks (a key rotation at the IdP), at
most every `JWKS_MIN_REFRESH_SECONDS` so forged kids cannot make us hammer the IdP.

Every failure is a domain error (`bot.errors`): nothing here logs or puts a token into a message.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import httpx
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from bot.errors import IdentityProviderError, IdTokenInvalid, LinkExpired
from bot.tls import tls_context

with warnings.catch_warnings():
    # authlib >= 1.7 prefers the `httpx2` distribution and warns when it falls back to httpx, which it
    # supports; the warning is about packaging, not about behaviour we rely on.
    import authlib.deprecate  # its import installs an "always" filter, which must come before ours

    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = logging.getLogger(__name__)

AWS_TAGS_CLAIM = "https://aws.amazon.com/tags"
ID_TOKEN_ALGORITHMS = ("RS256",)
LEEWAY_SECONDS = 60
JWKS_MIN_REFRESH_SECONDS = 10.0
JWKS_MAX_AGE_SECONDS = 3600.0  # a key the IdP withdrew (compromised, say) stops being trusted within an hour
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_MAX_IDP_TEXT = 200


@dataclass(frozen=True)
class TokenSet:
    """A token response. `id_token` is always present (an OpenID response without one is refused)."""

    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: int | None  # epoch seconds of the access token's expiry, when the IdP said


@dataclass(frozen=True)
class IdClaims:
    """What a verified id_token says about the user. `email` is None when the IdP sent none."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    groups: tuple[str, ...]
    email_tag: str | None  # the `https://aws.amazon.com/tags` principal tag STS turns into the Email session tag
    issuer: str


def _idp_text(error: OAuthError) -> str:
    """The IdP's own error code and description, short, for the user to read."""
    # equivalent mutants: the getattr defaults (OAuthError always has `error` and `description`)
    code = str(getattr(error, "error", "") or "error")
    description = str(getattr(error, "description", "") or "")
    text = f"{code}: {description}" if description else code
    return text[:_MAX_IDP_TEXT]


def _client_auth_method(metadata: dict[str, Any], key: str) -> str:
    """client_secret_basic (the OAuth default) unless the IdP only advertises client_secret_post."""
    supported = metadata.get(key) or metadata.get("token_endpoint_auth_methods_supported")
    if isinstance(supported, list) and "client_secret_basic" not in supported and "client_secret_post" in supported:
        return "client_secret_post"
    return "client_secret_basic"


class OidcClient:
    """One OIDC relying party (the bot), talking to one issuer. Safe to share between coroutines.

    The grants use authlib's httpx client, closed by `aclose()`; it also fetches discovery and JWKS unless
    `http` is given for those, which `aclose()` leaves open (its owner closes it).
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str],
        redirect_uri: str,
        *,
        http: httpx.AsyncClient | None = None,
        jwks_max_age_seconds: float = JWKS_MAX_AGE_SECONDS,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self._jwks_max_age = jwks_max_age_seconds
        self.client_id = client_id
        self.scopes = tuple(scopes)
        self.redirect_uri = redirect_uri
        self._http = http
        self._oauth = AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=DEFAULT_TIMEOUT,
            verify=tls_context(),
        )
        self._metadata: dict[str, Any] | None = None
        self._metadata_lock = asyncio.Lock()
        self._keys: KeySet | None = None
        self._forced_refetch_at = float("-inf")  # the last refetch an unknown kid caused
        self._keys_fetched_at = float("-inf")
        self._keys_lock = asyncio.Lock()

    # -- discovery and keys -------------------------------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        """The IdP's discovery document (fetched once), checked to name the configured issuer."""
        if self._metadata is not None:
            return self._metadata
        async with self._metadata_lock:
            if self._metadata is None:
                # equivalent mutants: the `what` argument ("discovery", "JWKS" below) names the document in a
                # `detail` only, for the log
                document = await self._get_json(self.issuer + "/.well-known/openid-configuration", "discovery")
                announced = document.get("issuer")
                if not isinstance(announced, str) or announced.rstrip("/") != self.issuer:
                    raise IdentityProviderError(
                        "The sign-in service is misconfigured (its discovery names another issuer).",
                        detail=f"discovery issuer {announced!r} != configured {self.issuer!r}",
                    )
                for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(document.get(endpoint), str):
                        raise IdentityProviderError(
                            "The sign-in service is misconfigured (incomplete discovery document).",
                            detail=f"discovery without {endpoint}",
                        )
                self._metadata = document
        return self._metadata

    async def _key_set(self, *, refresh: bool = False) -> KeySet:  # equivalent mutant: the default (always given)
        async with self._keys_lock:
            # equivalent mutants: `>` for `>=` in `stale` and `old` differ only at an exact float boundary
            # A rotation is followed at once; only a second unknown kid within the window waits (forged kids
            # must not make us hammer the IdP).
            stale = refresh and time.monotonic() - self._forced_refetch_at >= JWKS_MIN_REFRESH_SECONDS
            if stale:
                self._forced_refetch_at = time.monotonic()
            old = time.monotonic() - self._keys_fetched_at >= self._jwks_max_age
            if self._keys is None or stale or old:
                jwks_uri = (await self.metadata())["jwks_uri"]
                document = await self._get_json(jwks_uri, "JWKS")
                try:
                    self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
                except (JoseError, ValueError, KeyError, TypeError) as err:
                    raise IdentityProviderError(detail=f"unusable JWKS at {jwks_uri}: {err}") from None
                self._keys_fetched_at = time.monotonic()
            return self._keys

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        # equivalent mutants: without the Accept header (None, dropped), IdPs answer discovery and JWKS in JSON alike
        headers = {"Accept": "application/json"}
        try:
            if self._http is not None:
                response = await self._http.get(url, headers=headers)
            else:
                response = await self._oauth.request("GET", url, headers=headers, withhold_token=True)
        except httpx.HTTPError as err:
            raise IdentityProviderError(
                "The sign-in service cannot be reached. Please try again in a minute.",
                detail=f"{what} {url}: {type(err).__name__}",
            ) from None
        if response.status_code != 200:
            raise IdentityProviderError(
                "The sign-in service cannot be reached. Please try again in a minute.",
                detail=f"{what} {url} answered HTTP {response.status_code}",
            )
        try:
            document = response.json()
        except ValueError:
            document = None  # equivalent mutant: "" is refused alike, not being a dict
        if not isinstance(document, dict):
            raise IdentityProviderError(detail=f"{what} {url} is not a JSON object")
        return document

    # -- the authorization code flow ---------------------------------------------------------------

    async def authorization_url(self, state: str, nonce: str, code_verifier: str) -> str:
        """Where to send the user: response_type=code, PKCE S256, nonce, state and the configured scopes;
        prompt=consent with offline_access (some IdPs issue a refresh token only then)."""
        metadata = await self.metadata()
        extra: dict[str, str] = {"nonce": nonce, "scope": " ".join(self.scopes)}
        if "offline_access" in self.scopes:
            extra["prompt"] = "consent"
        url, _ = self._oauth.create_authorization_url(
            metadata["authorization_endpoint"], state=state, code_verifier=code_verifier, **extra
        )
        return str(url)

    async def exchange_code(self, code: str, code_verifier: str) -> TokenSet:
        """Redeem an authorization code; IdentityProviderError (with the IdP's error text) if refused."""
        metadata = await self.metadata()
        try:
            token = await self._oauth.fetch_token(
                metadata["token_endpoint"],
                # equivalent mutants: without grant_type or redirect_uri, authlib sends authorization_code (a
                # `code` is given) and the redirect_uri the client was made with
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                redirect_uri=self.redirect_uri,
                auth=self._oauth.client_auth(_client_auth_method(metadata, "token_endpoint_auth_methods_supported")),
            )
        except OAuthError as err:
            raise IdentityProviderError(
                f"The sign-in service refused the login ({_idp_text(err)}). Run qlink to try again.",
                detail=f"code exchange refused: {getattr(err, 'error', '')}",
            ) from None
        except (httpx.HTTPError, ValueError) as err:
            raise self._unreachable("code exchange", err) from None
        finally:
            self._oauth.token = None  # the shared client keeps no user's token (equivalent mutant: "", no token either)
        return self._token_set(token, "code exchange")

    # -- id_token verification ------------------------------------------------------------------------

    async def verify_id_token(self, id_token: str, *, nonce: str | None) -> IdClaims:
        """Claims of an id_token whose RS256 signature, iss, aud/azp, exp, iat (and nonce, when given) check
        out; IdTokenInvalid otherwise, its detail naming the failed check."""
        metadata = await self.metadata()
        claims = await self._verified_claims(id_token)
        now = time.time()

        if claims.get("iss") != metadata["issuer"]:
            raise IdTokenInvalid(detail="iss: the id_token names another issuer")

        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self.client_id not in audiences:
            raise IdTokenInvalid(detail="aud: the id_token is not for this client")
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.client_id:
            raise IdTokenInvalid(detail="azp: the id_token was issued to another party")

        expires = claims.get("exp")
        if not _is_number(expires):
            raise IdTokenInvalid(detail="exp: missing or not a number")
        # equivalent mutants: `>=` here and for iat differ only at an exact float boundary
        if now > expires + LEEWAY_SECONDS:
            raise IdTokenInvalid(detail="exp: the id_token has expired")
        issued = claims.get("iat")
        if not _is_number(issued):
            raise IdTokenInvalid(detail="iat: missing or not a number")
        if issued > now + LEEWAY_SECONDS:
            raise IdTokenInvalid(detail="iat: the id_token is issued in the future")

        if nonce is not None:
            got = claims.get("nonce")
            if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
                raise IdTokenInvalid(detail="nonce: the id_token does not answer this login")

        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise IdTokenInvalid(detail="sub: missing")
        email = claims.get("email")
        name = claims.get("name")
        groups = claims.get("groups")
        return IdClaims(
            subject=subject,
            email=email if isinstance(email, str) and email else None,
            email_verified=claims.get("email_verified") in (True, "true"),  # some IdPs (Cognito) send a string
            name=name if isinstance(name, str) else None,
            groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
            email_tag=_email_tag(claims),
            issuer=metadata["issuer"],
        )

    async def _verified_claims(self, id_token: str) -> dict[str, Any]:
        """The claims once the signature checks out; an unknown kid refetches the JWKS once."""
        for refresh in (False, True):
            keys = await self._key_set(refresh=refresh)
            try:
                # equivalent mutants: joserfc's default algorithms (HS256, RS256, ES256) verify nothing more with an
                # IdP's RSA keys than RS256 does
                return dict(jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS)).claims)
            except InvalidKeyIdError:
                continue
            except BadSignatureError:
                raise IdTokenInvalid(detail="signature: does not verify with the IdP's keys") from None
            except (JoseError, ValueError, TypeError) as err:
                raise IdTokenInvalid(detail=f"format: not a signed RS256 JWT ({type(err).__name__})") from None
        raise IdTokenInvalid(detail="signature: signed with a key the IdP does not publish")

    # -- refresh and revocation ------------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Redeem a refresh token for fresh tokens (the IdP may rotate it: use the returned one from now on).

        invalid_grant (revoked, expired, reused) -> LinkExpired; any other refusal, a network error or a 5xx
        -> IdentityProviderError. The answer must carry an id_token.
        """
        metadata = await self.metadata()
        try:
            # equivalent mutants: another key than token_endpoint_auth_methods_supported falls back to that one
            token = await self._oauth.refresh_token(
                metadata["token_endpoint"],
                refresh_token=refresh_token,
                auth=self._oauth.client_auth(_client_auth_method(metadata, "token_endpoint_auth_methods_supported")),
            )
        except OAuthError as err:
            if getattr(err, "error", None) == "invalid_grant":  # equivalent mutant: no default (OAuthError has .error)
                raise LinkExpired(detail="refresh token refused: invalid_grant") from None
            raise IdentityProviderError(
                f"The sign-in service refused to renew your sign-in ({_idp_text(err)}).",
                detail=f"refresh refused: {getattr(err, 'error', '')}",
            ) from None
        except (httpx.HTTPError, ValueError) as err:
            raise self._unreachable("refresh", err) from None
        finally:
            self._oauth.token = None  # equivalent mutant: "", no token either
        return self._token_set(token, "refresh")

    async def revoke(self, refresh_token: str) -> bool:
        """RFC 7009 revocation: True once the IdP confirmed; False when it has no revocation endpoint.
        IdentityProviderError when it could not be reached or refused."""
        metadata = await self.metadata()
        endpoint = metadata.get("revocation_endpoint")
        if not isinstance(endpoint, str):
            return False
        try:
            response = await self._oauth.revoke_token(
                endpoint,
                token=refresh_token,
                token_type_hint="refresh_token",
                auth=self._oauth.client_auth(
                    _client_auth_method(metadata, "revocation_endpoint_auth_methods_supported")
                ),
            )
        except httpx.HTTPError as err:
            raise self._unreachable("revocation", err) from None
        if response.status_code != 200:
            raise IdentityProviderError(detail=f"revocation answered HTTP {response.status_code}")
        return True

    async def aclose(self) -> None:
        """Close the grant client (a given `http` client is its owner's to close)."""
        await self._oauth.aclose()

    # -- helpers -----------------------------------------------------------------------------------------

    @staticmethod
    def _unreachable(step: str, err: Exception) -> IdentityProviderError:
        # equivalent mutants: `step` and the status are in the `detail` only, for the log
        status = err.response.status_code if isinstance(err, httpx.HTTPStatusError) else None
        return IdentityProviderError(
            "The sign-in service is not answering. Please try again in a minute.",
            detail=f"{step}: {type(err).__name__}" + (f" HTTP {status}" if status else ""),
        )

    @staticmethod
    def _token_set(token: dict[str, Any], step: str) -> TokenSet:
        # equivalent mutants: `step` names the grant in a `detail` only, for the log
        id_token = token.get("id_token")
        access_token = token.get("access_token")
        if not isinstance(id_token, str) or not id_token:
            raise IdentityProviderError(
                "The sign-in service returned no identity token. Ask your administrator to enable OpenID "
                "Connect (the openid scope) for the qbot app.",
                detail=f"{step}: no id_token in the token response",
            )
        if not isinstance(access_token, str):
            raise IdentityProviderError(detail=f"{step}: no access_token in the token response")
        refresh_token = token.get("refresh_token")
        expires_at = token.get("expires_at")
        return TokenSet(
            id_token=id_token,
            access_token=access_token,
            refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
            expires_at=int(expires_at) if _is_number(expires_at) else None,
        )


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _email_tag(claims: dict[str, Any]) -> str | None:
    """claims["https://aws.amazon.com/tags"]["principal_tags"]["Email"][0], when it is there and a string."""
    tags = claims.get(AWS_TAGS_CLAIM)
    principal = tags.get("principal_tags") if isinstance(tags, dict) else None
    values = principal.get("Email") if isinstance(principal, dict) else None
    if isinstance(values, list) and values and isinstance(values[0], str) and values[0]:
        return values[0]
    return None
