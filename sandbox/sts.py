"""AWS STS stand-in: AssumeRoleWithWebIdentity, checked the way AWS checks it.

The bot turns each user's id_token into AWS credentials here, and Q Business answers as whoever those
credentials name. A stand-in that waved tokens through (as moto's does) would prove nothing about that chain,
so this one verifies the token against the issuer's published keys, applies the role's trust (provider,
audience, an Email session tag) and answers in STS's own Query-protocol XML, so the bot's real boto3 client
parses successes and raises the same ClientError codes AWS would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from sandbox.credentials import ACCOUNT_ID, CredentialRegistry

API_VERSION = "2011-06-15"
XML_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
ACTION = "AssumeRoleWithWebIdentity"
TAGS_CLAIM = "https://aws.amazon.com/tags"
EMAIL_TAG = "Email"
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
MIN_DURATION = 900
MAX_DURATION = 43200
DEFAULT_DURATION = 3600
SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)
KEY_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=5)

TOO_LONG_FOR_ROLE = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
NOT_AUTHORIZED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
NO_VERIFICATION_KEY = (
    "Couldn't retrieve verification key from your identity provider,  "
    "please reference AssumeRoleWithWebIdentity documentation for requirements"
)

# Status and message AWS answers with for the codes a test may inject through `faults.error_next`.
CANNED_ERRORS: dict[str, tuple[int, str]] = {
    "Throttling": (400, "Rate exceeded"),
    "IDPCommunicationError": (400, "Couldn't connect to the identity provider, please retry"),
    "IDPRejectedClaim": (403, "The identity provider rejected the claim"),
    "InvalidIdentityToken": (400, NO_VERIFICATION_KEY),
    "ExpiredTokenException": (400, "Token expired"),
    "AccessDenied": (403, NOT_AUTHORIZED),
    "RegionDisabledException": (403, "STS is not activated in this region for this account"),
    "InternalFailure": (500, "An internal error occurred"),
    "ServiceUnavailable": (503, "Service unavailable"),
}


class STSError(Exception):
    """An error STS answers with: code, message and HTTP status, rendered as an ErrorResponse."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def invalid_token(message: str) -> STSError:
    return STSError("InvalidIdentityToken", message)


def access_denied() -> STSError:
    return STSError("AccessDenied", NOT_AUTHORIZED, 403)


@dataclass(frozen=True)
class OIDCProvider:
    """An IAM OIDC identity provider: the issuer URL and the client ids (audiences) it accepts."""

    url: str
    client_ids: tuple[str, ...]

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{self.url.split('://', 1)[-1]}"


@dataclass(frozen=True)
class Role:
    """An IAM role trusting web identities of one provider and audience, tagged with Email and nothing else
    (the trust policy `qbot admin provision` writes)."""

    arn: str
    issuer: str
    audience: str
    max_session_duration: int

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @property
    def role_id(self) -> str:
        """A stable AROA… id, as IAM gives every role one."""
        digest = base64.b32encode(hashlib.sha256(self.arn.encode()).digest()).decode()
        return "AROA" + digest[:17]


@dataclass(frozen=True)
class WebIdentity:
    """What a verified token says: who, from which provider, for which client, with which session tags."""

    provider: OIDCProvider
    subject: str
    audiences: tuple[str, ...]
    tags: dict[str, str]
    transitive_tag_keys: tuple[str, ...]


@dataclass
class STSFaults:
    """Switches that make STS misbehave the ways the real one can, for the bot's error paths."""

    error_next: list[str] = field(default_factory=list)  # answer the next calls with these error codes
    delay_seconds: float = 0.0  # answer every call this much later (to pile up concurrent callers)

    def reset(self) -> None:
        self.error_next.clear()
        self.delay_seconds = 0.0


@dataclass
class STSStats:
    """What tests count: successful calls per Email, refusals per code, key fetches per issuer."""

    calls: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    key_fetches: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.calls.clear()
        self.refusals.clear()
        self.key_fetches.clear()


class IssuerKeys:
    """Each issuer's signing keys, found like AWS finds them: discovery document, then jwks_uri.

    Cached per issuer and fetched again once when a token names a kid the cache lacks, so a key rotation at
    the IdP works without restarting STS while a forged kid still fails.
    """

    def __init__(self, stats: STSStats) -> None:
        self._stats = stats
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
        self._stats.key_fetches[issuer] += 1
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


class SandboxSTS:
    """The STS endpoint: OIDC providers and roles as IAM would hold them, credentials into the registry."""

    def __init__(self, registry: CredentialRegistry) -> None:
        self.registry = registry
        self.providers: dict[str, OIDCProvider] = {}
        self.roles: dict[str, Role] = {}
        self.stats = STSStats()
        self.faults = STSFaults()
        self._keys = IssuerKeys(self.stats)

    def add_oidc_provider(self, issuer_url: str, client_ids: list[str]) -> OIDCProvider:
        provider = OIDCProvider(issuer_url, tuple(client_ids))
        self.providers[issuer_url] = provider
        return provider

    def add_role(
        self, role_arn: str, *, issuer: str, audience: str, max_session_duration: int = DEFAULT_DURATION
    ) -> Role:
        if issuer not in self.providers:
            raise ValueError(f"no OIDC provider {issuer!r}: IAM refuses a trust policy naming it")
        if not DEFAULT_DURATION <= max_session_duration <= MAX_DURATION:
            raise ValueError("IAM allows a MaxSessionDuration of 3600..43200 seconds")
        role = Role(role_arn, issuer, audience, max_session_duration)
        self.roles[role_arn] = role
        return role

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/", self._handle)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        await self._keys.close()

    async def _handle(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        try:
            params = await _query_parameters(request)
            _check_action(params)
            await self._misbehave()
            body = await self.assume_role_with_web_identity(params, request_id)
        except STSError as err:
            self.stats.refusals[err.code] += 1
            return _xml_response(_error_xml(err, request_id), request_id, err.status)
        return _xml_response(body, request_id)

    async def _misbehave(self) -> None:
        if self.faults.delay_seconds:
            await asyncio.sleep(self.faults.delay_seconds)
        if self.faults.error_next:
            code = self.faults.error_next.pop(0)
            status, message = CANNED_ERRORS.get(code, (400, code))
            raise STSError(code, message, status)

    async def assume_role_with_web_identity(self, params: dict[str, str], request_id: str) -> str:
        """The request's shape, then the token, then the role's trust: no token, no word about roles."""
        duration = _validate_request(params)
        identity = await self._verify_token(params["WebIdentityToken"])
        role = self._trusting_role(params["RoleArn"], identity)
        if duration > role.max_session_duration:
            raise STSError("ValidationError", TOO_LONG_FOR_ROLE)
        session_name = params["RoleSessionName"]
        assumed_arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role.name}/{session_name}"
        creds = self.registry.mint_session(assumed_arn, timedelta(seconds=duration), identity.tags)
        self.stats.calls[identity.tags[EMAIL_TAG]] += 1
        return _success_xml(
            {
                "Credentials": {
                    "AccessKeyId": creds.access_key_id,
                    "SecretAccessKey": creds.secret_access_key,
                    "SessionToken": creds.session_token or "",
                    "Expiration": _iso8601(creds.expiration or datetime.now(UTC)),
                },
                "SubjectFromWebIdentityToken": identity.subject,
                "AssumedRoleUser": {"AssumedRoleId": f"{role.role_id}:{session_name}", "Arn": assumed_arn},
                "Provider": identity.provider.arn,
                "Audience": role.audience,
                "PackedPolicySize": str(_packed_policy_size(identity.tags)),
            },
            request_id,
        )

    async def _verify_token(self, token: str) -> WebIdentity:
        unverified = _unverified_claims(token)
        issuer = unverified.get("iss")
        provider = self.providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise invalid_token(f"No OpenIDConnect provider found in your account for {issuer}")
        claims = await self._keys.verify(token, provider.url)
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

    def _trusting_role(self, role_arn: str, identity: WebIdentity) -> Role:
        """The role, if its trust policy lets this identity in: provider, `<issuer>:aud`, and TagSession."""
        role = self.roles.get(role_arn)
        if role is None or role.issuer != identity.provider.url or role.audience not in identity.audiences:
            raise access_denied()
        if EMAIL_TAG not in identity.tags:  # StringLike aws:RequestTag/Email "*" fails on a missing tag
            raise access_denied()
        if not set(identity.tags) <= {EMAIL_TAG}:  # ForAllValues:StringEquals aws:TagKeys ["Email"]
            raise access_denied()
        return role


async def _query_parameters(request: web.Request) -> dict[str, str]:
    """AWS Query parameters: the form body of a POST (what botocore sends) or the query string."""
    params = {key: value for key, value in request.query.items()}
    if request.method == "POST":
        form = await request.post()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def _check_action(params: dict[str, str]) -> None:
    action = params.get("Action")
    if not action:
        raise STSError("MissingAction", "The request must contain the parameter Action")
    version = params.get("Version", API_VERSION)
    if action != ACTION or version != API_VERSION:
        raise STSError("InvalidAction", f"Could not find operation {action} for version {version}")


def _validate_request(params: dict[str, str]) -> int:
    """The requested duration, once the parameters fit the API's constraints (ValidationError otherwise)."""
    problems = [
        *_string_problems(params.get("RoleArn"), "roleArn", 20, 2048),
        *_string_problems(params.get("RoleSessionName"), "roleSessionName", 2, 64, SESSION_NAME),
        *_string_problems(params.get("WebIdentityToken"), "webIdentityToken", 4, 20000, echo=False),
    ]
    duration, duration_problems = _duration(params.get("DurationSeconds"))
    problems += duration_problems
    if problems:
        count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected"
        raise STSError("ValidationError", f"{count}: {'; '.join(problems)}")
    return duration


def _string_problems(
    value: str | None,
    member: str,
    min_length: int,
    max_length: int,
    pattern: re.Pattern[str] | None = None,
    echo: bool = True,
) -> list[str]:
    if value is None:
        return [f"Value null at '{member}' failed to satisfy constraint: Member must not be null"]
    shown = f"Value '{value}'" if echo else "Value"
    at = f"{shown} at '{member}' failed to satisfy constraint: Member must"
    problems = []
    if len(value) < min_length:
        problems.append(f"{at} have length greater than or equal to {min_length}")
    if len(value) > max_length:
        problems.append(f"{at} have length less than or equal to {max_length}")
    if pattern is not None and not pattern.fullmatch(value):
        problems.append(f"{at} satisfy regular expression pattern: {pattern.pattern}")
    return problems


def _duration(value: str | None) -> tuple[int, list[str]]:
    if value is None:
        return DEFAULT_DURATION, []
    at = f"Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must"
    try:
        seconds = int(value)
    except ValueError:
        return DEFAULT_DURATION, [f"{at} be an integer"]
    if seconds < MIN_DURATION:
        return seconds, [f"{at} have value greater than or equal to {MIN_DURATION}"]
    if seconds > MAX_DURATION:
        return seconds, [f"{at} have value less than or equal to {MAX_DURATION}"]
    return seconds, []


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


def _packed_policy_size(tags: dict[str, str]) -> int:
    """A rough stand-in for AWS's opaque packing: the percentage of a 2 KB budget the tags take."""
    packed = sum(len(key) + len(value) for key, value in tags.items())
    return min(100, math.ceil(100 * packed / 2048))


def _iso8601(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _elements(members: dict[str, Any]) -> str:
    return "".join(
        f"<{name}>{_elements(value) if isinstance(value, dict) else escape(value)}</{name}>"
        for name, value in members.items()
    )


def _success_xml(result: dict[str, Any], request_id: str) -> str:
    return (
        f'<{ACTION}Response xmlns="{XML_NAMESPACE}">'
        f"<{ACTION}Result>{_elements(result)}</{ACTION}Result>"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{ACTION}Response>"
    )


def _error_xml(err: STSError, request_id: str) -> str:
    fault = "Sender" if err.status < 500 else "Receiver"
    error = _elements({"Type": fault, "Code": err.code, "Message": err.message})
    return (
        f'<ErrorResponse xmlns="{XML_NAMESPACE}"><Error>{error}</Error>'
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )


def _xml_response(body: str, request_id: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/xml", headers={"x-amzn-RequestId": request_id})
