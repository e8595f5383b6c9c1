"""The STS endpoint: IAM's OIDC providers and roles, the Query protocol, and each role's trust.

A call is checked in AWS's order: the request's shape, then the token (`webidentity`), then the role's trust
policy; a caller without a valid token learns nothing about roles. Credentials go into the registry that
Q Business's SigV4 check reads, carrying the Email session tag Q answers as.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from sandbox.credentials import ACCOUNT_ID, CredentialRegistry
from sandbox.sts.errors import CANNED_ERRORS, TOO_LONG_FOR_ROLE, STSError, access_denied
from sandbox.sts.webidentity import IssuerKeys, OIDCProvider, WebIdentity, verify_web_identity

API_VERSION = "2011-06-15"
XML_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
ACTION = "AssumeRoleWithWebIdentity"
EMAIL_TAG = "Email"
MIN_DURATION = 900
MAX_DURATION = 43200
DEFAULT_DURATION = 3600
SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)


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


class SandboxSTS:
    """The STS endpoint: OIDC providers and roles as IAM would hold them, credentials into the registry."""

    def __init__(self, registry: CredentialRegistry) -> None:
        self.registry = registry
        self.providers: dict[str, OIDCProvider] = {}
        self.roles: dict[str, Role] = {}
        self.stats = STSStats()
        self.faults = STSFaults()
        self._keys = IssuerKeys(self.stats.key_fetches)

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
        identity = await verify_web_identity(params["WebIdentityToken"], self.providers, self._keys)
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
