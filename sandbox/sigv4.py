"""An independent AWS Signature Version 4 verifier, as AWS runs it in front of a rest-json service.

Written from the SigV4 specification, not from botocore: the bot signs with botocore, and a verifier that
shared botocore's code would share its bugs. Tests use botocore as the oracle instead.

The checks run in the order AWS runs them, and fail with the codes and messages AWS uses, so a client sees
here what it would see at AWS: a malformed header before a wrong scope, the scope before the clock, the
access key before the signature, and the credentials' expiry last.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from sandbox.credentials import CredentialRegistry, IssuedCredentials

ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
DEFAULT_MAX_SKEW = timedelta(minutes=15)
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

INVALID_TOKEN = "The security token included in the request is invalid."
EXPIRED_TOKEN = "The security token included in the request is expired"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)

_AUTH_PARAM = re.compile(r"\s*([A-Za-z]+)=([^,]*)\s*(?:,|$)")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")


class SigV4Error(Exception):
    """A request AWS would refuse before it reaches the service: code, HTTP status and AWS's message."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SignedRequest:
    """An HTTP request as it arrived: `target` is the raw request target (path and query, still encoded)."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes = b""

    def header_values(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None


@dataclass(frozen=True)
class AuthorizationHeader:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> AuthorizationHeader:
    """Split `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` into its parts."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SigV4Error(
            "IncompleteSignatureException",
            f"Unsupported authorization type: '{algorithm}'. Only {ALGORITHM} is accepted.",
            400,
        )
    params = {name: raw.strip() for name, raw in _AUTH_PARAM.findall(rest)}
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not params.get(name)]
    if missing:
        raise SigV4Error(
            "IncompleteSignatureException",
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            + f" Authorization={value}",
            400,
        )
    scope = params["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise SigV4Error(
            "IncompleteSignatureException",
            f"Credential should be scoped to a valid region, service and date: '{params['Credential']}'. "
            "Expected <access key>/<yyyymmdd>/<region>/<service>/aws4_request.",
            400,
        )
    signature = params["Signature"]
    if not _SIGNATURE.fullmatch(signature):
        raise SigV4Error("InvalidSignatureException", SIGNATURE_MISMATCH)
    signed = tuple(name.strip().lower() for name in params["SignedHeaders"].split(";"))
    return AuthorizationHeader(scope[0], scope[1], scope[2], scope[3], signed, signature)


def canonical_uri(raw_path: str) -> str:
    """The path as AWS canonicalizes it for every service but S3.

    Dot segments and empty segments are removed, then the (already percent-encoded) path is encoded once
    more: a space arrives as %20 and is signed as %2520.
    """
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    path = "/" + "/".join(segments)
    if raw_path.endswith("/") and segments:
        path += "/"
    return quote(path, safe="/~")


def canonical_query(raw_query: str) -> str:
    """Parameters sorted by encoded name then value; a bare name (`?sync`) is signed as `sync=`."""
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((_uri_encode(name), _uri_encode(value)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _uri_encode(component: str) -> str:
    return quote(unquote(component), safe="-_.~")


def canonical_headers(request: SignedRequest, names: Sequence[str]) -> str:
    """`name:value` lines for the signed headers; repeated headers joined by commas, spaces collapsed."""
    lines = []
    for name in names:
        values = [" ".join(value.split()) for value in request.header_values(name)]
        lines.append(f"{name}:{','.join(values)}")
    return "\n".join(lines) + "\n"


def payload_hash(request: SignedRequest) -> str:
    """The hash the client signed: x-amz-content-sha256 when sent (it must then match the body)."""
    actual = hashlib.sha256(request.body).hexdigest()
    declared = request.header("x-amz-content-sha256")
    if declared is None:
        return actual
    if declared != UNSIGNED_PAYLOAD and not hmac.compare_digest(declared, actual):
        raise SigV4Error(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            400,
        )
    return declared


def canonical_request(request: SignedRequest, signed_headers: Sequence[str]) -> str:
    path, _, query = request.target.partition("?")
    names = sorted(signed_headers)
    return "\n".join(
        [
            request.method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers(request, names),
            ";".join(names),
            payload_hash(request),
        ]
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


@dataclass
class SigV4Verifier:
    """Authenticates requests for one service in one region against the shared credential store."""

    registry: CredentialRegistry
    region: str
    service: str
    max_skew: timedelta = DEFAULT_MAX_SKEW
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def verify(self, request: SignedRequest) -> IssuedCredentials:
        """Return the caller's credentials, or raise SigV4Error exactly where AWS would refuse."""
        authorization = request.header("authorization")
        if not authorization:
            raise SigV4Error("MissingAuthenticationTokenException", "Missing Authentication Token")
        auth = parse_authorization(authorization)
        amz_date = self._amz_date(request, auth)
        self._check_scope(auth, amz_date)
        self._check_clock(amz_date)
        credentials = self._credentials(request, auth)
        self._check_signature(request, auth, amz_date, credentials)
        if credentials.expired(self.clock()):
            raise SigV4Error("ExpiredTokenException", EXPIRED_TOKEN)
        return credentials

    def _amz_date(self, request: SignedRequest, auth: AuthorizationHeader) -> str:
        if "host" not in auth.signed_headers:
            raise SigV4Error(
                "InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        amz_date = request.header("x-amz-date")
        if amz_date is None or not _AMZ_DATE.fullmatch(amz_date.strip()):
            raise SigV4Error(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                400,
            )
        if "x-amz-date" not in auth.signed_headers:
            raise SigV4Error(
                "InvalidSignatureException", "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."
            )
        return amz_date.strip()

    def _check_scope(self, auth: AuthorizationHeader, amz_date: str) -> None:
        if auth.date != amz_date[:8]:
            raise SigV4Error(
                "InvalidSignatureException",
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{auth.date}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        if auth.region != self.region:
            raise SigV4Error(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region. Expected '{self.region}', got '{auth.region}'.",
            )
        if auth.service != self.service:
            raise SigV4Error(
                "InvalidSignatureException", f"Credential should be scoped to correct service: '{self.service}'. "
            )

    def _check_clock(self, amz_date: str) -> None:
        signed_at = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        now = self.clock()
        minutes = int(self.max_skew.total_seconds() // 60)
        if signed_at < now - self.max_skew:
            raise SigV4Error(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than {_stamp(now - self.max_skew)} "
                f"({_stamp(now)} - {minutes} min.)",
            )
        if signed_at > now + self.max_skew:
            raise SigV4Error(
                "InvalidSignatureException",
                f"Signature not yet current: {amz_date} is still later than {_stamp(now + self.max_skew)} "
                f"({_stamp(now)} + {minutes} min.)",
            )

    def _credentials(self, request: SignedRequest, auth: AuthorizationHeader) -> IssuedCredentials:
        credentials = self.registry.lookup(auth.access_key_id)
        if credentials is None:
            raise SigV4Error("UnrecognizedClientException", INVALID_TOKEN)
        sent_token = request.header("x-amz-security-token")
        if credentials.session_token is None:
            if sent_token is not None:
                raise SigV4Error("UnrecognizedClientException", INVALID_TOKEN)
        elif sent_token is None or not hmac.compare_digest(sent_token.encode(), credentials.session_token.encode()):
            raise SigV4Error("UnrecognizedClientException", INVALID_TOKEN)
        return credentials

    def _check_signature(
        self, request: SignedRequest, auth: AuthorizationHeader, amz_date: str, credentials: IssuedCredentials
    ) -> None:
        scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
        canonical = canonical_request(request, auth.signed_headers)
        key = signing_key(credentials.secret_access_key, auth.date, auth.region, auth.service)
        expected = hmac.new(key, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, auth.signature):
            raise SigV4Error("InvalidSignatureException", SIGNATURE_MISMATCH)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(AMZ_DATE_FORMAT)
