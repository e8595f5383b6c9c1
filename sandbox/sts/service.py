"""The STS endpoint: IAM's OIDC and SAML providers and roles, the Query protocol, and each role's trust.

A call is checked in AWS's order: the request's shape, then the token (`webidentity`) or the SAML assertion
(`saml`), then the role's trust policy; a caller without a valid token learns nothing about roles.
Credentials go into the registry that Q Business's SigV4 check reads, carrying the Email session tag Q
answers as.
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
from sandbox.sts.errors import CANNED_ERRORS, TOO_LONG_FOR_ROLE, STSError, access_denied, invalid_token
from sandbox.sts.saml import NO_PROVIDER, SAMLIdentity, SAMLProvider, verify_saml_assertion
from sandbox.sts.webidentity import IssuerKeys, OIDCProvider, WebIdentity, verify_web_identity

API_VERSION = "2011-06-15"
XML_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
ACTION = "AssumeRoleWithWebIdentity"
SAML_ACTION = "AssumeRoleWithSAML"
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
        return _role_id(self.arn)


@dataclass(frozen=True)
class SAMLRole:
    """An IAM role trusting one SAML provider, the trust policy `qbot admin provision --saml-metadata` writes:
    sts:AssumeRoleWithSAML for that provider with `SAML:aud` equal to `saml_aud`, and sts:TagSession with an
    Email tag and no other.

    IAM's `SAML:aud` condition key holds the assertion's SubjectConfirmationData *Recipient* (the URL the
    assertion was posted to, here the bot's ACS), not its AudienceRestriction: AWS documents the key as "the
    endpoint URL to which SAML assertions are presented", and its AssumeRoleWithSAML answer returns that same
    Recipient as `Audience`. So the trust compares the Recipient; the Audience (the SP's entity id) is for
    the SP to check (AWS's own sign-in endpoint wants `urn:amazon:webservices` there; an SP like qbot wants
    its entity id), and STS does not compare it.
    """

    arn: str
    provider_arn: str
    saml_aud: str
    max_session_duration: int

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @property
    def role_id(self) -> str:
        return _role_id(self.arn)


def _role_id(arn: str) -> str:
    """A stable AROA… id, as IAM gives every role one."""
    digest = base64.b32encode(hashlib.sha256(arn.encode()).digest()).decode()
    return "AROA" + digest[:17]


@dataclass
class STSFaults:
    """Switches that make STS misbehave the ways the real one can, for the bot's error paths."""

    error_next: list[str] = field(default_factory=list)  # answer the next calls with these error codes
    #: answer every call this much later (to pile up concurrent callers); switching it off releases waiting calls
    delay_seconds: float = 0.0
    #: an outage: every call is answered with this error code (say "ServiceUnavailable", a 503) until cleared,
    #: however often the client retries
    outage: str | None = None

    def reset(self) -> None:
        self.error_next.clear()
        self.delay_seconds = 0.0
        self.outage = None


@dataclass
class STSStats:
    """What tests count: successful calls per Email, refusals per code, key fetches per issuer."""

    calls: Counter[str] = field(default_factory=Counter)
    #: successful AssumeRoleWithSAML calls per Email (also counted in `calls`)
    saml_calls: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    key_fetches: Counter[str] = field(default_factory=Counter)
    #: calls that arrived while `faults.delay_seconds` held them (counted on arrival: a test acts once one is here)
    delayed: int = 0

    def reset(self) -> None:
        self.calls.clear()
        self.saml_calls.clear()
        self.refusals.clear()
        self.key_fetches.clear()
        self.delayed = 0


class SandboxSTS:
    """The STS endpoint: OIDC providers and roles as IAM would hold them, credentials into the registry."""

    def __init__(self, registry: CredentialRegistry) -> None:
        self.registry = registry
        self.providers: dict[str, OIDCProvider] = {}
        self.roles: dict[str, Role] = {}
        self.saml_providers: dict[str, SAMLProvider] = {}
        self.saml_roles: dict[str, SAMLRole] = {}
        #: assertion ID -> until when it must stay refused (AWS refuses an assertion presented twice)
        self.saml_assertions_used: dict[str, datetime] = {}
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

    def add_saml_provider(self, name: str, metadata_xml: bytes | str) -> SAMLProvider:
        """IAM's CreateSAMLProvider: the ARN `arn:aws:iam::<account>:saml-provider/<name>`."""
        provider = SAMLProvider.from_metadata(f"arn:aws:iam::{ACCOUNT_ID}:saml-provider/{name}", metadata_xml)
        self.saml_providers[provider.arn] = provider
        return provider

    def add_saml_role(
        self, role_arn: str, *, provider_arn: str, saml_aud: str, max_session_duration: int = DEFAULT_DURATION
    ) -> SAMLRole:
        if provider_arn not in self.saml_providers:
            raise ValueError(f"no SAML provider {provider_arn!r}: IAM refuses a trust policy naming it")
        if not DEFAULT_DURATION <= max_session_duration <= MAX_DURATION:
            raise ValueError("IAM allows a MaxSessionDuration of 3600..43200 seconds")
        role = SAMLRole(role_arn, provider_arn, saml_aud, max_session_duration)
        self.saml_roles[role_arn] = role
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
            action = _check_action(params)
            await self._misbehave()
            if action == SAML_ACTION:
                body = self.assume_role_with_saml(params, request_id)
            else:
                body = await self.assume_role_with_web_identity(params, request_id)
        except STSError as err:
            self.stats.refusals[err.code] += 1
            return _xml_response(_error_xml(err, request_id), request_id, err.status)
        return _xml_response(body, request_id)

    async def _misbehave(self) -> None:
        # The delay is read on every tick: switching it off (or `reset`) releases the calls already waiting.
        if self.faults.delay_seconds > 0:
            self.stats.delayed += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < self.faults.delay_seconds:  # noqa: ASYNC110 - tests switch it from their own thread
            await asyncio.sleep(0.01)
        code = self.faults.outage or (self.faults.error_next.pop(0) if self.faults.error_next else None)
        if code:
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

    def assume_role_with_saml(self, params: dict[str, str], request_id: str) -> str:
        """The request's shape, the assertion (signed by the named provider, unexpired, unused), then the
        role's trust. Credentials last the smallest of DurationSeconds, the SessionDuration attribute and
        what is left until SessionNotOnOrAfter."""
        duration = _validate_saml_request(params)
        provider = self.saml_providers.get(params["PrincipalArn"])
        if provider is None:
            raise invalid_token(NO_PROVIDER)
        now = datetime.now(UTC)
        identity = verify_saml_assertion(params["SAMLAssertion"], provider, now)
        self._spend_assertion(identity, now)
        role = self._trusting_saml_role(params["RoleArn"], provider, identity)
        if duration > role.max_session_duration:
            raise STSError("ValidationError", TOO_LONG_FOR_ROLE)
        lifetime = min(duration, identity.session_duration or duration)
        if identity.session_not_on_or_after is not None:
            lifetime = min(lifetime, int((identity.session_not_on_or_after - now).total_seconds()))
        if lifetime <= 0:
            raise STSError("ExpiredTokenException", "Token expired: the SAML session (SessionNotOnOrAfter) has ended")
        assumed_arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role.name}/{identity.session_name}"
        creds = self.registry.mint_session(assumed_arn, timedelta(seconds=lifetime), identity.tags)
        self.stats.calls[identity.tags[EMAIL_TAG]] += 1
        self.stats.saml_calls[identity.tags[EMAIL_TAG]] += 1
        # AWS documents NameQualifier as this SHA-1, not as a security measure.
        qualifier = hashlib.sha1(f"{identity.issuer}{ACCOUNT_ID}/{provider.name}".encode(), usedforsecurity=False)

        return _success_xml(
            {
                "Credentials": {
                    "AccessKeyId": creds.access_key_id,
                    "SecretAccessKey": creds.secret_access_key,
                    "SessionToken": creds.session_token or "",
                    "Expiration": _iso8601(creds.expiration or now),
                },
                "AssumedRoleUser": {"AssumedRoleId": f"{role.role_id}:{identity.session_name}", "Arn": assumed_arn},
                "PackedPolicySize": str(_packed_policy_size(identity.tags)),
                "Subject": identity.subject,
                "SubjectType": identity.subject_type,
                "Issuer": identity.issuer,
                "Audience": identity.recipient,
                "NameQualifier": base64.b64encode(qualifier.digest()).decode(),
            },
            request_id,
            SAML_ACTION,
        )

    def _spend_assertion(self, identity: SAMLIdentity, now: datetime) -> None:
        """One use per assertion ID, remembered until the assertion would have expired anyway. It is spent
        before the role's trust is weighed, so a refused assertion cannot be tried against another role."""
        for used, until in list(self.saml_assertions_used.items()):
            if until < now - timedelta(minutes=10):
                del self.saml_assertions_used[used]
        if identity.assertion_id in self.saml_assertions_used:
            raise invalid_token("SAML Assertion ID has already been used")
        self.saml_assertions_used[identity.assertion_id] = identity.not_on_or_after

    def _trusting_saml_role(self, role_arn: str, provider: SAMLProvider, identity: SAMLIdentity) -> SAMLRole:
        """The role, if the assertion's Role attribute names it with this provider and its trust policy lets
        the assertion in: the provider, `SAML:aud` = Recipient, and TagSession with Email (and only Email)."""
        if (role_arn, provider.arn) not in identity.roles:
            raise access_denied(SAML_ACTION)
        role = self.saml_roles.get(role_arn)
        if role is None or role.provider_arn != provider.arn or role.saml_aud != identity.recipient:
            raise access_denied(SAML_ACTION)
        if EMAIL_TAG not in identity.tags or not set(identity.tags) <= {EMAIL_TAG}:
            raise access_denied(SAML_ACTION)
        return role

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


def _check_action(params: dict[str, str]) -> str:
    action = params.get("Action")
    if not action:
        raise STSError("MissingAction", "The request must contain the parameter Action")
    version = params.get("Version", API_VERSION)
    if action not in (ACTION, SAML_ACTION) or version != API_VERSION:
        raise STSError("InvalidAction", f"Could not find operation {action} for version {version}")
    return action


def _validate_request(params: dict[str, str]) -> int:
    """The requested duration, once the parameters fit the API's constraints (ValidationError otherwise)."""
    problems = [
        *_string_problems(params.get("RoleArn"), "roleArn", 20, 2048),
        *_string_problems(params.get("RoleSessionName"), "roleSessionName", 2, 64, SESSION_NAME),
        *_string_problems(params.get("WebIdentityToken"), "webIdentityToken", 4, 20000, echo=False),
    ]
    return _checked_duration(params, problems)


def _validate_saml_request(params: dict[str, str]) -> int:
    problems = [
        *_string_problems(params.get("RoleArn"), "roleArn", 20, 2048),
        *_string_problems(params.get("PrincipalArn"), "principalArn", 20, 2048),
        *_string_problems(params.get("SAMLAssertion"), "sAMLAssertion", 4, 100000, echo=False),
    ]
    return _checked_duration(params, problems)


def _checked_duration(params: dict[str, str], problems: list[str]) -> int:
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


def _success_xml(result: dict[str, Any], request_id: str, action: str = ACTION) -> str:
    return (
        f'<{action}Response xmlns="{XML_NAMESPACE}">'
        f"<{action}Result>{_elements(result)}</{action}Result>"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
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
