"""The web-identity token checks of AssumeRoleWithWebIdentity, made the way AWS makes them.

The token must be signed by a key its issuer publishes (found through the issuer's discovery document, as
AWS finds it), unexpired, for a client id the IAM OIDC provider lists, with a subject; its
`https://aws.amazon.com/tags` claim becomes session tags. Nothing is believed before the signature checks out,
except the issuer's name, which only says whose keys to fetch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from sandbox.credentials import ACCOUNT_ID
from sandbox.sts.errors import NO_VERIFICATION_KEY, STSError, invalid_token

TAGS_CLAIM = "https://aws.amazon.com/tags"
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
KEY_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass(frozen=True)
class OIDCProvider:
    """An IAM OIDC identity provider: the issuer URL and the client ids (audiences) it accepts."""

    url: str
    client_ids: tuple[str, ...]

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{self.url.split('://', 1)[-1]}"


@dataclass(frozen=True)
class WebIdentity:
    """What a verified token says: who, from which provider, for which client, with which session tags."""

    provider: OIDCProvider
    subject: str
    audiences: tuple[str, ...]
    tags: dict[str, str]
    transitive_tag_keys: tuple[str, ...]


class IssuerKeys:
    """Each issuer's signing keys, found like AWS finds them: discovery document, then jwks_uri.

    Cached per issuer and fetched again once when a token names a kid the cache lacks, so a key rotation at
    the IdP works without restarting STS while a forged kid still fails.
    """

    def __init__(self, fetches: Counter[str]) -> None:
        self._fetches = fetches  # key fetches per issuer, for tests to count
        self._key_sets: dict[str, KeySet] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._http: aiohttp.ClientSession | None = None

    async def verify(self, token: str, issuer: str) -> dict[str, Any]:
        """The token's claims once its signature checks out against the issuer's keys."""
        try:
            return self._decode(token, await self._key_set(issuer))
        except InvalidKeyIdError:
            pass
        try:
            return self._decode(token, await self._key_set(issuer, refresh=True))
        except InvalidKeyIdError as err:
            raise invalid_token(NO_VERIFICATION_KEY) from err

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @staticmethod
    def _decode(token: str, keys: KeySet) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, keys, algorithms=SIGNING_ALGORITHMS).claims
        except InvalidKeyIdError:
            raise
        except BadSignatureError as err:
            raise invalid_token("The signature of the web identity token could not be verified") from err
        except (JoseError, ValueError) as err:
            raise invalid_token("The web identity token is not a valid signed JWT") from err
        return dict(claims)

    async def _key_set(self, issuer: str, refresh: bool = False) -> KeySet:
        async with self._locks.setdefault(issuer, asyncio.Lock()):
            if refresh or issuer not in self._key_sets:
                self._key_sets[issuer] = await self._fetch(issuer)
            return self._key_sets[issuer]

    async def _fetch(self, issuer: str) -> KeySet:
        self._fetches[issuer] += 1
        discovery = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise invalid_token(NO_VERIFICATION_KEY)
        try:
            return KeySet.import_key_set(await self._get_json(jwks_uri))  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as err:
            raise invalid_token(NO_VERIFICATION_KEY) from err

    async def _get_json(self, url: str) -> dict[str, Any]:
        """A JSON document from the IdP: unreachable is IDPCommunicationError, unusable is no key."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=KEY_FETCH_TIMEOUT)
        try:
            async with self._http.get(url, allow_redirects=False) as response:
                if response.status >= 500:
                    raise STSError("IDPCommunicationError", f"{url} answered {response.status}")
                if response.status != 200:
                    raise invalid_token(NO_VERIFICATION_KEY)
                document = await response.json(content_type=None)
        except (aiohttp.ClientConnectionError, TimeoutError) as err:
            raise STSError("IDPCommunicationError", "Couldn't connect to the identity provider") from err
        except (aiohttp.ContentTypeError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise invalid_token(NO_VERIFICATION_KEY) from err
        if not isinstance(document, dict):
            raise invalid_token(NO_VERIFICATION_KEY)
        return document


async def verify_web_identity(token: str, providers: Mapping[str, OIDCProvider], keys: IssuerKeys) -> WebIdentity:
    """Who the token names, once it is signed by its provider's key, unexpired, for a client id it accepts."""
    unverified = _unverified_claims(token)
    issuer = unverified.get("iss")
    provider = providers.get(issuer) if isinstance(issuer, str) else None
    if provider is None:
        raise invalid_token(f"No OpenIDConnect provider found in your account for {issuer}")
    claims = await keys.verify(token, provider.url)
    _check_expiry(claims)
    audiences = _audiences(claims)
    accepted = tuple(aud for aud in audiences if aud in provider.client_ids)
    if not accepted:
        raise invalid_token("Incorrect token audience")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise invalid_token("The web identity token has no sub claim")
    tags, transitive = _session_tags(claims)
    return WebIdentity(provider, subject, accepted, tags, transitive)


def _unverified_claims(token: str) -> dict[str, Any]:
    """The claims before any check: only to learn which issuer's keys to verify the token with."""
    try:
        claims = json.loads(jws.extract_compact(token.encode()).payload)
    except (JoseError, ValueError, UnicodeDecodeError) as err:
        raise invalid_token("The web identity token is not a valid signed JWT") from err
    if not isinstance(claims, dict):
        raise invalid_token("The web identity token is not a valid signed JWT")
    return claims


def _check_expiry(claims: dict[str, Any]) -> None:
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise invalid_token("The web identity token has no valid exp claim")
    now = int(time.time())
    if now >= expires:
        raise STSError(
            "ExpiredTokenException",
            f"Token expired: current date/time {now} must be before the expiration date/time {int(expires)}",
        )


def _audiences(claims: dict[str, Any]) -> tuple[str, ...]:
    audience = claims.get("aud")
    if isinstance(audience, str):
        return (audience,)
    if isinstance(audience, list):
        return tuple(aud for aud in audience if isinstance(aud, str))
    return ()


def _session_tags(claims: dict[str, Any]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Session tags from the `https://aws.amazon.com/tags` claim: principal_tags {key: [value]}."""
    claim = claims.get(TAGS_CLAIM)
    if claim is None:
        return {}, ()
    if not isinstance(claim, dict) or not isinstance(claim.get("principal_tags", {}), dict):
        raise invalid_token(f"The {TAGS_CLAIM} claim is malformed")
    tags: dict[str, str] = {}
    for key, values in claim.get("principal_tags", {}).items():
        if not (isinstance(values, list) and len(values) == 1 and isinstance(values[0], str)):
            raise invalid_token(f"Session tag {key} must have exactly one string value")
        tags[key] = values[0]
    transitive = claim.get("transitive_tag_keys", [])
    if not isinstance(transitive, list) or not set(transitive) <= set(tags):
        raise invalid_token("transitive_tag_keys must name principal tags")
    return tags, tuple(transitive)
