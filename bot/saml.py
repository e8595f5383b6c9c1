"""SAML 2.0 service provider for SAML mode: the IdP's metadata, the AuthnRequest, and the verified assertion.

The XML signature is checked by signxml (lxml + cryptography) against the certificates of the IdP's metadata,
never against a certificate the response carries. Everything we read afterwards comes from the element signxml
returns: re-parsed from the bytes the signature covers, so an attacker's unsigned copy elsewhere in the
document (XML signature wrapping) is never read. The signature must cover the Response (then its one Assertion
is used) or the Assertion itself; a response with more than one assertion anywhere is refused outright.

XML is parsed with entities unresolved, no DTD loading and no network; a DOCTYPE (entity declarations, the
billion laughs) is refused before anything else is read. Every failure is a domain error (`bot.errors`) with a
short user message; `detail` says what failed for the logs, and never carries the response itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import secrets
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
from cryptography import x509
from lxml import etree
from redis.asyncio import Redis
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from bot.errors import (
    IdentityProviderError,
    SamlAssertionReplayed,
    SamlAudienceMismatch,
    SamlEmailTagMismatch,
    SamlEmailTagMissing,
    SamlExpired,
    SamlMetadataInvalid,
    SamlOtherLogin,
    SamlResponseInvalid,
    SamlSignatureInvalid,
)
from bot.tls import tls_context

log = logging.getLogger(__name__)

PROTOCOL_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
ASSERTION_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
METADATA_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": PROTOCOL_NS, "saml": ASSERTION_NS, "md": METADATA_NS, "ds": DSIG_NS}

HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
EMAIL_NAME_ID = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"

AWS_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/"
EMAIL_TAG_ATTRIBUTE = AWS_ATTRIBUTE + "PrincipalTag:Email"
ROLE_ATTRIBUTE = AWS_ATTRIBUTE + "Role"
ROLE_SESSION_NAME_ATTRIBUTE = AWS_ATTRIBUTE + "RoleSessionName"

CLOCK_SKEW_SECONDS = 120  # between the IdP's clock and ours
MAX_RESPONSE_BYTES = 256 * 1024  # a real response is a few KB; anything this big is not one
MAX_METADATA_BYTES = 1024 * 1024
METADATA_MAX_AGE_SECONDS = 3600.0  # a certificate the IdP withdrew stops being trusted within an hour
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)

# No DTD, no entity expansion, no network, no giant trees: nothing in the document reaches outside it.
_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False, remove_pis=True
)


# -- the IdP's metadata ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdpMetadata:
    """What we trust of the IdP: its entity id (the Issuer), where to send AuthnRequests, its signing certs."""

    entity_id: str
    sso_redirect_url: str
    signing_certificates: tuple[x509.Certificate, ...] = field(repr=False)


def parse_xml(data: bytes, what: str) -> etree._Element:
    """Parse untrusted XML safely: a DOCTYPE (hence any entity declaration) is refused, nothing is fetched."""
    try:
        root = etree.fromstring(data, parser=_SAFE_PARSER)
    except etree.XMLSyntaxError as err:
        raise SamlResponseInvalid(detail=f"{what} is not well-formed XML: {str(err)[:120]}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise SamlResponseInvalid(detail=f"{what} declares a DOCTYPE (entities are refused)")
    if any(True for _ in root.iter(etree.Entity)):
        raise SamlResponseInvalid(detail=f"{what} uses an entity")
    return root


def parse_metadata(data: bytes) -> IdpMetadata:
    """The IdP of an `EntityDescriptor` (or an `EntitiesDescriptor` holding exactly one IdP)."""
    try:
        root = parse_xml(data, "the SAML metadata")
    except SamlResponseInvalid as err:
        raise SamlMetadataInvalid(detail=err.detail) from None
    if root.tag == f"{{{METADATA_NS}}}EntityDescriptor":
        idps = [root] if root.find("md:IDPSSODescriptor", NS) is not None else []
    elif root.tag == f"{{{METADATA_NS}}}EntitiesDescriptor":
        idps = [e for e in root.iterfind(".//md:EntityDescriptor", NS) if e.find("md:IDPSSODescriptor", NS) is not None]
    else:
        raise SamlMetadataInvalid(detail=f"SAML metadata root is {root.tag}, not an EntityDescriptor")
    if len(idps) != 1:
        raise SamlMetadataInvalid(detail=f"SAML metadata describes {len(idps)} identity providers, not one")
    entity = idps[0]
    entity_id = (entity.get("entityID") or "").strip()
    descriptor = entity.find("md:IDPSSODescriptor", NS)
    assert descriptor is not None
    redirect = [
        (s.get("Location") or "").strip()
        for s in descriptor.iterfind("md:SingleSignOnService", NS)
        if s.get("Binding") == HTTP_REDIRECT
    ]
    certificates: list[x509.Certificate] = []
    for key in descriptor.iterfind("md:KeyDescriptor", NS):
        if key.get("use") not in (None, "signing"):
            continue
        for node in key.iterfind("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS):
            der = "".join((node.text or "").split())
            try:
                certificates.append(x509.load_der_x509_certificate(base64.b64decode(der)))
            except (ValueError, binascii.Error):
                raise SamlMetadataInvalid(detail="a signing certificate in the SAML metadata does not load") from None
    needed: dict[str, object] = {
        "entityID": entity_id,
        "an HTTP-Redirect SingleSignOnService": redirect,
        "a signing certificate": certificates,
    }
    missing = [name for name, value in needed.items() if not value]
    if missing:
        raise SamlMetadataInvalid(detail="SAML metadata lacks " + ", ".join(missing))
    if not redirect[0].startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise SamlMetadataInvalid(detail="the IdP's SingleSignOnService is not https://")
    return IdpMetadata(entity_id, redirect[0], tuple(certificates))


class SamlMetadataSource:
    """The IdP's metadata from a file (read once) or a URL (fetched, cached for `max_age_seconds`; when a refetch
    fails, the last good copy is used and the failure logged, so an IdP hiccup does not stop sign-ins)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        file: str | None = None,
        http: httpx.AsyncClient | None = None,
        max_age_seconds: float = METADATA_MAX_AGE_SECONDS,
    ) -> None:
        if bool(url) == bool(file):
            raise ValueError("exactly one of url and file")
        self._url = url
        self._file = file
        self._http = http
        self._max_age = max_age_seconds
        self._cached: IdpMetadata | None = None
        self._fetched_at = 0.0

    async def get(self) -> IdpMetadata:
        if self._cached is not None and (self._file or time.monotonic() - self._fetched_at < self._max_age):
            return self._cached
        try:
            metadata = parse_metadata(await self._read())
        except SamlMetadataInvalid as err:
            if self._cached is None:
                raise
            log.warning("SAML metadata refresh failed, keeping the last good copy: %s", err.detail)
            self._fetched_at = time.monotonic()
            return self._cached
        self._cached, self._fetched_at = metadata, time.monotonic()
        return metadata

    async def _read(self) -> bytes:
        if self._file:
            try:
                data = await asyncio.to_thread(Path(self._file).read_bytes)
            except OSError as err:
                raise SamlMetadataInvalid(detail=f"cannot read QBOT_SAML_METADATA_FILE: {err.strerror}") from None
        else:
            assert self._url is not None
            try:
                if self._http is not None:
                    response = await self._http.get(self._url, timeout=DEFAULT_TIMEOUT)
                else:
                    async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, verify=tls_context()) as http:
                        response = await http.get(self._url)
                response.raise_for_status()
            except httpx.HTTPError as err:
                raise SamlMetadataInvalid(detail=f"fetching the SAML metadata failed: {type(err).__name__}") from None
            data = response.content
        if len(data) > MAX_METADATA_BYTES:
            raise SamlMetadataInvalid(detail="the SAML metadata is larger than 1 MB")
        return data


# -- the AuthnRequest (HTTP-Redirect binding) ------------------------------------------------------------


def new_request_id() -> str:
    """A random AuthnRequest ID (160 bits; an xs:ID must not start with a digit)."""
    return "_" + secrets.token_hex(20)


def authn_request_url(
    request_id: str, acs_url: str, sp_entity_id: str, relay_state: str, *, sso_url: str, now: float | None = None
) -> str:
    """The IdP URL carrying a deflated, base64 AuthnRequest (HTTP-Redirect binding, unsigned) whose response
    is to be POSTed to `acs_url`. The caller keeps `request_id` to check the response's InResponseTo."""
    issued = datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = etree.Element(
        f"{{{PROTOCOL_NS}}}AuthnRequest",
        nsmap={"samlp": PROTOCOL_NS, "saml": ASSERTION_NS},
        ID=request_id,
        Version="2.0",
        IssueInstant=issued,
        Destination=sso_url,
        AssertionConsumerServiceURL=acs_url,
        ProtocolBinding=HTTP_POST,
    )
    etree.SubElement(request, f"{{{ASSERTION_NS}}}Issuer").text = sp_entity_id
    compressor = zlib.compressobj(wbits=-15)  # raw DEFLATE, as the binding says
    deflated = compressor.compress(etree.tostring(request)) + compressor.flush()
    query = urlencode({"SAMLRequest": base64.b64encode(deflated).decode("ascii"), "RelayState": relay_state})
    return f"{sso_url}{'&' if '?' in sso_url else '?'}{query}"


# -- the response ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamlAssertion:
    """What a verified assertion says, all of it from the signed element."""

    assertion_id: str
    issuer: str
    name_id: str
    email_tag: str
    roles: tuple[str, ...]
    role_session_name: str | None
    not_on_or_after: float  # the assertion is unusable from then on (keep its ID spent until then)
    session_not_on_or_after: float | None  # when the IdP says the sign-in session ends, if it does


def _text(node: etree._Element | None) -> str:
    """The element's own text nodes joined (comments never split a value), stripped."""
    if node is None:
        return ""
    return "".join(str(t) for t in node.xpath("text()")).strip()


def _instant(value: str | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SamlResponseInvalid(detail=f"{what} is not a dateTime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # SAML instants are UTC
    return moment.timestamp()


def _signed_element(xml: bytes, metadata: IdpMetadata) -> etree._Element:
    """The element the signature covers, re-parsed from the signed bytes, verified with a metadata certificate."""
    config = SignatureConfiguration(expect_references=1)
    failure = "no signature"
    for certificate in metadata.signing_certificates:
        try:
            result = XMLVerifier().verify(xml, x509_cert=certificate, expect_config=config)
        except InvalidInput as err:
            raise SamlSignatureInvalid(detail=f"signature unusable: {str(err)[:120]}") from None
        except (InvalidSignature, InvalidDigest, InvalidCertificate) as err:
            failure = f"{type(err).__name__}: {str(err)[:120]}"
            continue
        except SignXMLException as err:
            raise SamlSignatureInvalid(detail=f"signature unusable: {type(err).__name__}") from None
        if not isinstance(result, VerifyResult):  # expect_references=1 makes it one
            raise SamlSignatureInvalid(detail="the signature has several references")
        signed = result.signed_xml
        if signed is None:
            raise SamlSignatureInvalid(detail="the signature does not cover an XML element")
        return signed
    raise SamlSignatureInvalid(detail=f"no metadata certificate verifies the signature ({failure})")


def verify_response(
    saml_response_b64: str,
    *,
    metadata: IdpMetadata,
    expected_request_id: str,
    acs_url: str,
    sp_entity_id: str,
    now: float,
    skew_seconds: float = CLOCK_SKEW_SECONDS,
) -> SamlAssertion:
    """Verify a POSTed SAMLResponse answering our AuthnRequest `expected_request_id`; the assertion it carries.

    Refused (a `SamlResponseInvalid` subclass, or IdentityProviderError when the IdP reports a failure): unsafe
    or malformed XML, no valid signature by a metadata certificate over the Response or the Assertion, more
    than one assertion, an Issuer other than the metadata's entity id, a Destination or Recipient other than
    `acs_url`, no Audience `sp_entity_id`, outside NotBefore/NotOnOrAfter (with `skew_seconds`), an
    InResponseTo other than `expected_request_id`, no PrincipalTag:Email attribute (or one that differs from an
    emailAddress NameID: `SamlEmailTagMismatch`). Single use of the
    assertion ID is the caller's (`AssertionLedger`).
    """
    if not expected_request_id:
        raise SamlOtherLogin(detail="no AuthnRequest ID to check the response against")
    if len(saml_response_b64) > MAX_RESPONSE_BYTES * 4 // 3 + 4:
        raise SamlResponseInvalid(detail="SAMLResponse too large")
    try:
        xml = base64.b64decode("".join(saml_response_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SamlResponseInvalid(detail="SAMLResponse is not base64") from None
    root = parse_xml(xml, "the SAMLResponse")
    if root.tag != f"{{{PROTOCOL_NS}}}Response":
        raise SamlResponseInvalid(detail=f"the document is {root.tag}, not a samlp:Response")
    status = root.find("samlp:Status/samlp:StatusCode", NS)
    if status is None or status.get("Value") != STATUS_SUCCESS:
        message = _text(root.find("samlp:Status/samlp:StatusMessage", NS))[:200]
        code = "" if status is None else str(status.get("Value", "")).rsplit(":", 1)[-1]
        raise IdentityProviderError(
            f"The sign-in service refused the login{': ' + message if message else ''}. Run qlink to try again.",
            detail=f"SAML status {code or 'missing'}",
        )
    if root.find(".//saml:EncryptedAssertion", NS) is not None:
        raise SamlResponseInvalid(
            "The sign-in service encrypted its answer, which qbot does not support. Ask your administrator to turn "
            "off assertion encryption for the qbot SAML application.",
            detail="EncryptedAssertion",
        )
    # Exactly one assertion, the Response's child: so the signed Response or Assertion below is the one STS will
    # read too (it gets the whole response), and no unsigned copy can sit beside it (signature wrapping).
    assertions = root.findall(".//saml:Assertion", NS)
    if len(assertions) != 1 or assertions[0].getparent() is not root:
        raise SamlResponseInvalid(detail=f"{len(assertions)} assertions, or one outside the Response: wrapping")

    signed = _signed_element(xml, metadata)
    if signed.tag == f"{{{PROTOCOL_NS}}}Response":
        response = signed  # (the one Assertion is the root's child: so this Response is the root)
        signed_assertions = signed.findall("saml:Assertion", NS)
        if len(signed_assertions) != 1:
            raise SamlSignatureInvalid(detail="the signed Response does not hold exactly one Assertion")
        assertion = signed_assertions[0]
    elif signed.tag == f"{{{ASSERTION_NS}}}Assertion":
        response = root  # unsigned: its Destination and InResponseTo are only extra filters
        assertion = signed
    else:
        raise SamlSignatureInvalid(detail=f"the signature covers {signed.tag}, neither the Response nor its Assertion")
    assertion_id = assertion.get("ID") or ""
    if not assertion_id:
        raise SamlResponseInvalid(detail="the assertion has no ID")

    issuer = _text(assertion.find("saml:Issuer", NS))
    response_issuer = response.find("saml:Issuer", NS)
    if issuer != metadata.entity_id or (response_issuer is not None and _text(response_issuer) != metadata.entity_id):
        raise SamlAudienceMismatch(detail="Issuer is not the metadata's entity id")
    destination = response.get("Destination")
    if destination is not None and destination != acs_url:
        raise SamlAudienceMismatch(detail="Destination is not our assertion consumer URL")
    in_response_to = response.get("InResponseTo")
    if in_response_to is not None and in_response_to != expected_request_id:
        raise SamlOtherLogin(detail="the Response's InResponseTo names another AuthnRequest")

    subject = assertion.find("saml:Subject", NS)
    if subject is None:
        raise SamlResponseInvalid(detail="the assertion has no Subject")
    name_id_element = subject.find("saml:NameID", NS)
    name_id = _text(name_id_element)
    confirmations = [c for c in subject.iterfind("saml:SubjectConfirmation", NS) if c.get("Method") == BEARER]
    data = confirmations[0].find("saml:SubjectConfirmationData", NS) if len(confirmations) == 1 else None
    if data is None:
        raise SamlResponseInvalid(detail="the assertion has not exactly one bearer SubjectConfirmationData")
    if data.get("Recipient") != acs_url:
        raise SamlAudienceMismatch(detail="SubjectConfirmationData Recipient is not our assertion consumer URL")
    if data.get("InResponseTo") != expected_request_id:
        raise SamlOtherLogin(detail="the assertion's InResponseTo names another (or no) AuthnRequest")
    confirm_until = _instant(data.get("NotOnOrAfter"), "SubjectConfirmationData NotOnOrAfter")
    if confirm_until is None:
        raise SamlResponseInvalid(detail="SubjectConfirmationData has no NotOnOrAfter")

    conditions = assertion.find("saml:Conditions", NS)
    if conditions is None:
        raise SamlResponseInvalid(detail="the assertion has no Conditions")
    not_before = _instant(conditions.get("NotBefore"), "Conditions NotBefore")
    conditions_until = _instant(conditions.get("NotOnOrAfter"), "Conditions NotOnOrAfter")
    until = min(t for t in (confirm_until, conditions_until) if t is not None)
    if not_before is not None and now + skew_seconds < not_before:
        raise SamlExpired(detail="the assertion is not valid yet (NotBefore)")
    if now - skew_seconds >= until:
        raise SamlExpired(detail="the assertion has expired (NotOnOrAfter)")
    restrictions = conditions.findall("saml:AudienceRestriction", NS)
    if not restrictions or not all(
        sp_entity_id in {_text(a) for a in r.iterfind("saml:Audience", NS)} for r in restrictions
    ):
        raise SamlAudienceMismatch(detail="our SP entity id is not the assertion's Audience")

    attributes: dict[str, list[str]] = {}
    for attribute in assertion.iterfind("saml:AttributeStatement/saml:Attribute", NS):
        values = [_text(v) for v in attribute.iterfind("saml:AttributeValue", NS)]
        attributes.setdefault(attribute.get("Name") or "", []).extend(v for v in values if v)
    emails = attributes.get(EMAIL_TAG_ATTRIBUTE, [])
    if not emails:
        raise SamlEmailTagMissing(detail="the assertion has no PrincipalTag:Email attribute")
    if len(set(emails)) != 1:
        raise SamlResponseInvalid(detail="the assertion has several PrincipalTag:Email values")
    # STS and Q act on the Email tag: when the IdP names the user by an email address too, both must agree.
    if name_id_element is not None and name_id_element.get("Format") == EMAIL_NAME_ID:
        if name_id.lower() != emails[0].lower():
            raise SamlEmailTagMismatch(detail="the PrincipalTag:Email attribute differs from the email NameID")
    session_names = attributes.get(ROLE_SESSION_NAME_ATTRIBUTE, [])
    authn = assertion.find("saml:AuthnStatement", NS)
    session_until = None if authn is None else _instant(authn.get("SessionNotOnOrAfter"), "SessionNotOnOrAfter")
    return SamlAssertion(
        assertion_id=assertion_id,
        issuer=issuer,
        name_id=name_id,
        email_tag=emails[0],
        roles=tuple(attributes.get(ROLE_ATTRIBUTE, [])),
        role_session_name=session_names[0] if session_names else None,
        not_on_or_after=until,
        session_not_on_or_after=session_until,
    )


class AssertionLedger:
    """Spent assertion IDs (SET NX until the assertion could no longer be used anyway): each one links once."""

    PREFIX = "qbot:saml-assertion:"

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def spend(self, assertion: SamlAssertion, *, now: float, skew_seconds: float = CLOCK_SKEW_SECONDS) -> None:
        """Mark the assertion used; `SamlAssertionReplayed` when it already was."""
        key = self.PREFIX + hashlib.sha256(f"{assertion.issuer}|{assertion.assertion_id}".encode()).hexdigest()
        remaining_ms = max(1000, int((assertion.not_on_or_after + skew_seconds - now) * 1000))
        if not await self._redis.set(key, b"1", nx=True, px=remaining_ms):
            raise SamlAssertionReplayed(detail="assertion ID already used")


class SamlServiceProvider:
    """qbot as a SAML service provider: where to send a login, and the one-time verified assertion it returns."""

    def __init__(
        self, metadata: SamlMetadataSource, *, sp_entity_id: str, acs_url: str, ledger: AssertionLedger
    ) -> None:
        self.metadata = metadata
        self.sp_entity_id = sp_entity_id
        self.acs_url = acs_url
        self._ledger = ledger

    async def login_url(self, request_id: str, relay_state: str) -> str:
        """The IdP's sign-in URL for a new AuthnRequest `request_id`; the IdP returns `relay_state` with it."""
        metadata = await self.metadata.get()
        return authn_request_url(
            request_id, self.acs_url, self.sp_entity_id, relay_state, sso_url=metadata.sso_redirect_url
        )

    async def accept(self, saml_response_b64: str, *, expected_request_id: str) -> SamlAssertion:
        """The verified assertion of a POSTed response (see `verify_response`), spent: it is accepted once."""
        now = time.time()
        assertion = verify_response(
            saml_response_b64,
            metadata=await self.metadata.get(),
            expected_request_id=expected_request_id,
            acs_url=self.acs_url,
            sp_entity_id=self.sp_entity_id,
            now=now,
        )
        await self._ledger.spend(assertion, now=now)
        return assertion


def sp_metadata_xml(sp_entity_id: str, acs_url: str) -> bytes:
    """qbot's own SAML metadata, for the IdP's side of the setup (Entra ID: "Upload metadata file"): the entity
    id, the assertion consumer (HTTP-POST), signed assertions wanted, unsigned AuthnRequests."""
    md = f"{{{METADATA_NS}}}"
    entity = etree.Element(md + "EntityDescriptor", nsmap={"md": METADATA_NS}, entityID=sp_entity_id)
    sp = etree.SubElement(
        entity, md + "SPSSODescriptor", AuthnRequestsSigned="false", WantAssertionsSigned="true",
        protocolSupportEnumeration=PROTOCOL_NS,
    )
    etree.SubElement(
        sp, md + "AssertionConsumerService", Binding=HTTP_POST, Location=acs_url, index="0", isDefault="true"
    )
    return bytes(etree.tostring(entity, xml_declaration=True, encoding="UTF-8"))
