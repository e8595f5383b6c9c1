"""The SigV4 verifier against AWS's published example and botocore as the signing oracle.

Unit tests sign requests with botocore's SigV4Auth and hand them to the verifier; HTTP tests send real
boto3 calls to the served Q Business stand-in. Each check has a test that fails if the check is removed.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from sandbox.credentials import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, CredentialRegistry, IssuedCredentials
from sandbox.directory import sample_directory
from sandbox.qbusiness import SandboxQBusiness
from sandbox.serving import Served, bind
from sandbox.sigv4 import (
    SignedRequest,
    SigV4Error,
    SigV4Verifier,
    canonical_query,
    canonical_request,
    canonical_uri,
    signing_key,
    string_to_sign,
)

REGION = "us-east-1"
APP_ID = "5a4db0a1-1b0e-4f43-9d5c-0e7f3b6a2c11"
INDEX_ID = "8c0e3f52-7d4a-4c1b-b0f6-2a9e5d1c7b33"
HOST = "qbusiness.us-east-1.api.aws"
USER_ARN = "arn:aws:sts::123456789012:assumed-role/qbot-sandbox-user/alice"


# -- the specification, independent of botocore ----------------------------------------------------------


def test_aws_documented_example_signature() -> None:
    """AWS's own worked example (IAM ListUsers, 2015-08-30): canonical request hash, key and signature."""
    request = SignedRequest(
        "GET",
        "/?Action=ListUsers&Version=2010-05-08",
        [
            ("Host", "iam.amazonaws.com"),
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("X-Amz-Date", "20150830T123600Z"),
        ],
    )
    canonical = canonical_request(request, ["content-type", "host", "x-amz-date"])
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    )
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    to_sign = string_to_sign("20150830T123600Z", "20150830/us-east-1/iam/aws4_request", canonical)
    assert hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() == (
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )


def test_canonical_forms() -> None:
    assert canonical_query("sync") == "sync="
    assert canonical_query("userId=a%40b.c&sync") == "sync=&userId=a%40b.c"
    assert canonical_query("b=2&a=2&a=1") == "a=1&a=2&b=2"
    assert canonical_uri("/groups/All%20Staff") == "/groups/All%2520Staff"
    assert canonical_uri("/a//b/./c/../d") == "/a/b/d"
    assert canonical_uri("") == "/"


# -- the verifier, with botocore as the signing oracle ---------------------------------------------------


@dataclass
class Signer:
    registry: CredentialRegistry
    verifier: SigV4Verifier

    def sign(
        self,
        creds: IssuedCredentials | Credentials,
        method: str = "POST",
        url: str = f"https://{HOST}/applications/{APP_ID}/conversations?sync",
        body: bytes = b'{"userMessage": "hi"}',
        region: str = REGION,
        service: str = "qbusiness",
    ) -> SignedRequest:
        if isinstance(creds, IssuedCredentials):
            creds = Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token)
        request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(creds, service, region).add_auth(request)
        prepared = request.prepare()
        parts = urlsplit(prepared.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = [("Host", parts.netloc), *prepared.headers.items()]
        sent = prepared.body if isinstance(prepared.body, bytes) else b""
        return SignedRequest(method, target, headers, sent)

    def user(self) -> IssuedCredentials:
        return self.registry.mint_session(USER_ARN, timedelta(hours=1), {"Email": "alice@example.com"})


@pytest.fixture
def signer() -> Signer:
    registry = CredentialRegistry()
    return Signer(registry, SigV4Verifier(registry, REGION, "qbusiness"))


def _refused(verifier: SigV4Verifier, request: SignedRequest) -> SigV4Error:
    with pytest.raises(SigV4Error) as caught:
        verifier.verify(request)
    return caught.value


def _replace_header(request: SignedRequest, name: str, value: str | None) -> SignedRequest:
    headers = [(key, val) for key, val in request.headers if key.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return SignedRequest(request.method, request.target, headers, request.body)


def test_valid_session_and_admin_signatures(signer: Signer) -> None:
    user = signer.user()
    assert signer.verifier.verify(signer.sign(user)).email == "alice@example.com"
    admin = signer.registry.lookup(ADMIN_ACCESS_KEY_ID)
    assert admin is not None
    assert signer.verifier.verify(signer.sign(admin)).is_admin


def test_encoded_path_and_query_verify(signer: Signer) -> None:
    url = f"https://{HOST}/applications/{APP_ID}/indices/{INDEX_ID}/groups/All%20Staff%2Bfriends?dataSourceId=x%20y"
    assert signer.verifier.verify(signer.sign(signer.user(), "GET", url, b""))


def test_missing_authorization(signer: Signer) -> None:
    request = _replace_header(signer.sign(signer.user()), "Authorization", None)
    assert _refused(signer.verifier, request).code == "MissingAuthenticationTokenException"


def test_malformed_authorization(signer: Signer) -> None:
    request = _replace_header(signer.sign(signer.user()), "Authorization", "AWS4-HMAC-SHA256 Credential=x")
    error = _refused(signer.verifier, request)
    assert (error.code, error.status) == ("IncompleteSignatureException", 400)


@pytest.mark.parametrize("part", ["body", "path", "query", "header"])
def test_tampered_request(signer: Signer, part: str) -> None:
    request = signer.sign(signer.user())
    if part == "body":
        request = SignedRequest(request.method, request.target, request.headers, b'{"userMessage": "HI"}')
    elif part == "path":
        request = SignedRequest(
            request.method, request.target.replace(APP_ID[:8], "00000000"), request.headers, request.body
        )
    elif part == "query":
        request = SignedRequest(request.method, request.target + "&userId=bob", request.headers, request.body)
    else:
        request = _replace_header(request, "Content-Type", "text/plain")
    error = _refused(signer.verifier, request)
    assert error.code == "InvalidSignatureException"
    assert "does not match the signature you provided" in error.message


def test_wrong_secret(signer: Signer) -> None:
    user = signer.user()
    forged = Credentials(user.access_key_id, "not-the-secret", user.session_token)
    assert _refused(signer.verifier, signer.sign(forged)).code == "InvalidSignatureException"


def test_unknown_key(signer: Signer) -> None:
    error = _refused(signer.verifier, signer.sign(Credentials("AKIAUNKNOWN000000000", "secret")))
    assert (error.code, error.message) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )


def test_session_token_must_be_sent_and_match(signer: Signer) -> None:
    user = signer.user()
    without = Credentials(user.access_key_id, user.secret_access_key)
    assert _refused(signer.verifier, signer.sign(without)).code == "UnrecognizedClientException"
    wrong = Credentials(user.access_key_id, user.secret_access_key, "someone-elses-token")
    assert _refused(signer.verifier, signer.sign(wrong)).code == "UnrecognizedClientException"
    admin_with_token = Credentials(ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, "made-up-token")
    assert _refused(signer.verifier, signer.sign(admin_with_token)).code == "UnrecognizedClientException"


def test_expired_credentials(signer: Signer) -> None:
    expired = signer.registry.mint_session(USER_ARN, timedelta(seconds=-1), {"Email": "alice@example.com"})
    error = _refused(signer.verifier, signer.sign(expired))
    assert (error.code, error.message) == (
        "ExpiredTokenException",
        "The security token included in the request is expired",
    )


@pytest.mark.parametrize(("shift", "wording"), [(20, "Signature expired"), (-20, "Signature not yet current")])
def test_clock_skew(signer: Signer, shift: int, wording: str) -> None:
    request = signer.sign(signer.user())
    signer.verifier.clock = lambda: datetime.now(UTC) + timedelta(minutes=shift)
    error = _refused(signer.verifier, request)
    assert error.code == "InvalidSignatureException"
    assert error.message.startswith(wording)


def test_skew_within_fifteen_minutes_is_accepted(signer: Signer) -> None:
    request = signer.sign(signer.user())
    signer.verifier.clock = lambda: datetime.now(UTC) + timedelta(minutes=14)
    assert signer.verifier.verify(request)


def test_scope_must_name_this_region_and_service(signer: Signer) -> None:
    user = signer.user()
    region = _refused(signer.verifier, signer.sign(user, region="eu-west-1"))
    assert region.code == "InvalidSignatureException"
    assert "valid region" in region.message
    service = _refused(signer.verifier, signer.sign(user, service="execute-api"))
    assert service.code == "InvalidSignatureException"
    assert "correct service: 'qbusiness'" in service.message


def test_scope_date_must_match_amz_date(signer: Signer) -> None:
    request = signer.sign(signer.user())
    amz_date = request.header("x-amz-date")
    assert amz_date is not None
    authorization = request.header("authorization") or ""
    yesterday = (datetime.strptime(amz_date[:8], "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    forged = _replace_header(request, "Authorization", authorization.replace(f"/{amz_date[:8]}/", f"/{yesterday}/"))
    error = _refused(signer.verifier, forged)
    assert "Date in Credential scope does not match" in error.message


def test_host_and_date_must_be_signed(signer: Signer) -> None:
    request = signer.sign(signer.user())
    authorization = request.header("authorization") or ""
    for name, wording in (("host;", "'Host' or ':authority'"), (";x-amz-date", "'X-Amz-Date'")):
        forged = _replace_header(request, "Authorization", authorization.replace(name, ""))
        error = _refused(signer.verifier, forged)
        assert error.code == "InvalidSignatureException"
        assert wording in error.message and "must be a 'SignedHeader'" in error.message


def test_declared_payload_hash_must_match_body(signer: Signer) -> None:
    """A signed x-amz-content-sha256 covers the body only if the server checks the body against it."""
    user = signer.user()
    body = b'{"userMessage": "hi"}'
    request = AWSRequest(
        method="POST",
        url=f"https://{HOST}/applications/{APP_ID}/conversations?sync",
        data=body,
        headers={"Content-Type": "application/json", "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()},
    )
    SigV4Auth(
        Credentials(user.access_key_id, user.secret_access_key, user.session_token), "qbusiness", REGION
    ).add_auth(request)
    prepared = request.prepare()
    headers = [("Host", HOST), *prepared.headers.items()]
    target = f"/applications/{APP_ID}/conversations?sync"
    assert signer.verifier.verify(SignedRequest("POST", target, headers, body))
    swapped = SignedRequest("POST", target, headers, b'{"userMessage": "something else"}')
    assert "x-amz-content-sha256" in _refused(signer.verifier, swapped).message


# -- over HTTP, with real boto3 clients ------------------------------------------------------------------


@dataclass
class Endpoint:
    q: SandboxQBusiness
    registry: CredentialRegistry
    url: str

    def client(self, key: str, secret: str, token: str | None = None, **config: Any) -> Any:
        return boto3.client(
            "qbusiness",
            endpoint_url=self.url,
            region_name=config.pop("region", REGION),
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=Config(retries={"total_max_attempts": 1}, **config),
        )

    def user(self, **overrides: Any) -> Any:
        creds = self.registry.mint_session(USER_ARN, timedelta(hours=1), {"Email": "alice@example.com"})
        values: dict[str, Any] = {
            "key": creds.access_key_id,
            "secret": creds.secret_access_key,
            "token": creds.session_token,
        }
        values.update(overrides)
        return self.client(**values)


@pytest.fixture
def endpoint(servers: Any) -> Iterator[Endpoint]:
    registry = CredentialRegistry()
    q = SandboxQBusiness(registry, REGION)
    q.add_sample_application(APP_ID, INDEX_ID, sample_directory().groups())
    served = Served(q.app(), bind("127.0.0.1", 0))
    servers.run(served.start())
    yield Endpoint(q, registry, served.url)
    servers.run(served.stop())


def _code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    code: str = caught.value.response["Error"]["Code"]
    return code


def test_http_signed_call_succeeds(endpoint: Endpoint) -> None:
    answer = endpoint.user().chat_sync(applicationId=APP_ID, userMessage="How many PTO days do I get?")
    assert answer["sourceAttributions"]


def test_http_unsigned_request(endpoint: Endpoint) -> None:
    unsigned = boto3.client(
        "qbusiness", endpoint_url=endpoint.url, region_name=REGION, config=Config(signature_version=UNSIGNED)
    )
    assert _code(unsigned.list_conversations, applicationId=APP_ID) == "MissingAuthenticationTokenException"
    raw = urllib.request.Request(f"{endpoint.url}/applications/{APP_ID}/conversations?sync", b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(raw, timeout=5)
    assert caught.value.code == 403
    assert caught.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert caught.value.headers["x-amzn-RequestId"]


def test_http_credential_failures(endpoint: Endpoint) -> None:
    chat = {"applicationId": APP_ID, "userMessage": "hello"}
    assert _code(endpoint.user(secret="tampered-secret").chat_sync, **chat) == "InvalidSignatureException"
    assert _code(endpoint.user(key="ASIAUNKNOWNKEY000000").chat_sync, **chat) == "UnrecognizedClientException"
    assert _code(endpoint.user(token=None).chat_sync, **chat) == "UnrecognizedClientException"
    assert _code(endpoint.user(token="wrong-token").chat_sync, **chat) == "UnrecognizedClientException"
    assert _code(endpoint.user(region="us-west-2").chat_sync, **chat) == "InvalidSignatureException"


def test_http_expired_credentials(endpoint: Endpoint) -> None:
    creds = endpoint.registry.mint_session(USER_ARN, timedelta(seconds=-5), {"Email": "alice@example.com"})
    client = endpoint.client(creds.access_key_id, creds.secret_access_key, creds.session_token)
    assert _code(client.chat_sync, applicationId=APP_ID, userMessage="hello") == "ExpiredTokenException"


def test_http_clock_skew(endpoint: Endpoint) -> None:
    endpoint.q.sigv4.clock = lambda: datetime.now(UTC) + timedelta(minutes=16)
    assert _code(endpoint.user().list_conversations, applicationId=APP_ID) == "InvalidSignatureException"


def test_http_encoded_path_segment(endpoint: Endpoint) -> None:
    """A group name with a space is signed as %2520: the canonical URI must be encoded twice."""
    admin = endpoint.client(ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY)
    admin.put_group(
        applicationId=APP_ID,
        indexId=INDEX_ID,
        groupName="All Staff+Friends",
        type="INDEX",
        groupMembers={"memberUsers": [{"userId": "alice@example.com"}]},
    )
    status = admin.get_group(applicationId=APP_ID, indexId=INDEX_ID, groupName="All Staff+Friends")["status"]
    assert status["status"] == "SUCCEEDED"
