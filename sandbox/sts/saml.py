"""The SAML assertion checks of AssumeRoleWithSAML, made the way AWS makes them.

The assertion is read only from what its signature covers: the Response may hold exactly one Assertion, that
Assertion must carry an enveloped signature by a certificate of the IAM SAML provider's metadata (checked by
signxml), and every value is then read from signxml's `signed_xml`, never from the document as posted. A DTD
or entity anywhere refuses the whole Response before any of it is believed. Then: Issuer = the provider's
entity id, a bearer SubjectConfirmation unexpired with a Recipient, Conditions unexpired, a RoleSessionName,
PrincipalTag:* attributes as session tags, and the Role attribute's "role,provider" pairs.

What stays for the role's trust policy (`service`): which Role pair names this call, `SAML:aud` and the tags.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from sandbox.sts.errors import STSError, invalid_token

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "md": MD, "ds": DS}
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
ROLE_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/Role"
SESSION_NAME_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
SESSION_DURATION_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/SessionDuration"
PRINCIPAL_TAG_PREFIX = "https://aws.amazon.com/SAML/Attributes/PrincipalTag:"
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
CLOCK_SKEW = 300  # seconds AWS tolerates between the IdP's clock and its own
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_VERIFY = SignatureConfiguration(
    location="./",  # the Assertion's own enveloped signature, not one found anywhere inside it
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA512}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA512}),
)
INVALID_RESPONSE = "Invalid SAML response"
SIGNATURE_INVALID = "Response signature invalid"
NO_PROVIDER = "Specified provider doesn't exist"


@dataclass(frozen=True)
class SAMLProvider:
    """An IAM SAML identity provider: its ARN, and the entity id and signing certificates of its metadata."""

    arn: str
    entity_id: str
    certificates: tuple[x509.Certificate, ...]

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @classmethod
    def from_metadata(cls, arn: str, metadata_xml: bytes | str) -> SAMLProvider:
        """IAM's CreateSAMLProvider: the metadata must name an entity and carry at least one signing cert."""
        root = parse_xml(metadata_xml.encode() if isinstance(metadata_xml, str) else metadata_xml, ValueError)
        descriptor = root if root.tag == f"{{{MD}}}EntityDescriptor" else None
        idp = descriptor.find("md:IDPSSODescriptor", NS) if descriptor is not None else None
        if descriptor is None or idp is None or not descriptor.get("entityID"):
            raise ValueError("the metadata has no EntityDescriptor with an entityID and an IDPSSODescriptor")
        certificates = tuple(
            x509.load_der_x509_certificate(base64.b64decode("".join((text or "").split())))
            for key in idp.findall("md:KeyDescriptor", NS)
            if key.get("use") in (None, "signing")
            for text in (cert.text for cert in key.iterfind("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS))
        )
        if not certificates:
            raise ValueError("the metadata has no signing certificate")
        return cls(arn, str(descriptor.get("entityID")), certificates)


@dataclass(frozen=True)
class SAMLIdentity:
    """What a verified assertion says, read from its signed content only."""

    assertion_id: str
    issuer: str
    subject: str
    subject_type: str
    #: SubjectConfirmationData Recipient: what IAM's `SAML:aud` condition key holds
    recipient: str
    audiences: tuple[str, ...]
    #: (role ARN, provider ARN) pairs of the Role attribute
    roles: tuple[tuple[str, str], ...]
    session_name: str
    tags: dict[str, str]
    #: the SessionDuration attribute, if sent
    session_duration: int | None
    #: AuthnStatement SessionNotOnOrAfter, if sent
    session_not_on_or_after: datetime | None
    #: until when the assertion could be presented (the ID must stay unused until then)
    not_on_or_after: datetime


def parse_xml(data: bytes, error: type[Exception] | None = None) -> etree._Element:
    """XML without any DTD or entity (XXE, billion laughs): refused outright, never expanded."""

    def refuse(message: str) -> Exception:
        return error(message) if error is not None else invalid_token(message)

    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as err:
        raise refuse(INVALID_RESPONSE) from err
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or next(root.iter(etree.Entity), None):
        raise refuse("DTDs and entities are not allowed in SAML messages")
    return root


def verify_saml_assertion(encoded: str, provider: SAMLProvider, now: datetime) -> SAMLIdentity:
    """The identity in the base64 SAML Response, once its one Assertion verifies against `provider`."""
    try:
        document = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise invalid_token("Invalid base64 SAMLResponse") from err
    response = parse_xml(document)
    if response.tag != f"{{{SAMLP}}}Response":
        raise invalid_token(INVALID_RESPONSE)
    status = response.find("samlp:Status/samlp:StatusCode", NS)
    if status is None or status.get("Value") != SUCCESS:
        raise invalid_token("The SAML response does not report success")
    assertions = response.findall(".//saml:Assertion", NS)
    if len(assertions) != 1 or assertions[0].getparent() is not response:
        # A second Assertion (or one moved elsewhere) is how signature wrapping smuggles in an unsigned one.
        raise invalid_token(f"{INVALID_RESPONSE}: expected exactly one Assertion in the Response")
    assertion = _verified(etree.tostring(assertions[0]), provider)
    return _identity(assertion, provider, now)


def _verified(assertion: bytes, provider: SAMLProvider) -> etree._Element:
    """The signed content of the Assertion, by whichever of the provider's certificates signed it."""
    for certificate in provider.certificates:
        try:
            result = XMLVerifier().verify(
                assertion, x509_cert=certificate, expect_config=_VERIFY, id_attribute="ID", parser=_PARSER
            )
        except (InvalidSignature, InvalidInput):
            continue
        signed: etree._Element = result.signed_xml  # type: ignore[union-attr]
        if signed.tag != f"{{{SAML}}}Assertion":
            break  # the signature covers something else than the Assertion itself
        return signed
    raise invalid_token(SIGNATURE_INVALID)


def _identity(assertion: etree._Element, provider: SAMLProvider, now: datetime) -> SAMLIdentity:
    issuer = (assertion.findtext("saml:Issuer", namespaces=NS) or "").strip()
    if issuer != provider.entity_id:
        raise invalid_token(f"Issuer {issuer!r} does not match the provider's metadata")
    name_id = assertion.find("saml:Subject/saml:NameID", NS)
    if name_id is None or not (name_id.text or "").strip():
        raise invalid_token(f"{INVALID_RESPONSE}: the assertion has no Subject NameID")
    recipient, confirmation_expiry = _bearer_confirmation(assertion, now)
    not_before, conditions_expiry, audiences = _conditions(assertion)
    if not_before is not None and now.timestamp() + CLOCK_SKEW < not_before.timestamp():
        raise invalid_token(f"{INVALID_RESPONSE}: the assertion is not yet valid")
    expiry = min(filter(None, (confirmation_expiry, conditions_expiry)))
    if now.timestamp() - CLOCK_SKEW >= expiry.timestamp():
        raise STSError("ExpiredTokenException", "Token expired: the SAML assertion's NotOnOrAfter has passed")
    attributes = _attributes(assertion)
    session_name = _single(attributes, SESSION_NAME_ATTRIBUTE)
    if session_name is None or not SESSION_NAME.fullmatch(session_name):
        raise invalid_token(f"{INVALID_RESPONSE}: RoleSessionName is missing or not 2-64 characters of [\\w+=,.@-]")
    authn = assertion.find("saml:AuthnStatement", NS)
    session_end = authn.get("SessionNotOnOrAfter") if authn is not None else None
    return SAMLIdentity(
        assertion_id=str(assertion.get("ID") or ""),
        issuer=issuer,
        subject=(name_id.text or "").strip(),
        subject_type=_subject_type(name_id.get("Format")),
        recipient=recipient,
        audiences=audiences,
        roles=_role_pairs(attributes.get(ROLE_ATTRIBUTE, [])),
        session_name=session_name,
        tags=_principal_tags(attributes),
        session_duration=_session_duration(attributes),
        session_not_on_or_after=_instant(session_end) if session_end else None,
        not_on_or_after=expiry,
    )


def _bearer_confirmation(assertion: etree._Element, now: datetime) -> tuple[str, datetime]:
    for confirmation in assertion.iterfind("saml:Subject/saml:SubjectConfirmation", NS):
        data = confirmation.find("saml:SubjectConfirmationData", NS)
        if confirmation.get("Method") != BEARER or data is None:
            continue
        recipient, expiry = data.get("Recipient"), data.get("NotOnOrAfter")
        if recipient and expiry:
            return recipient, _instant(expiry)
    raise invalid_token(f"{INVALID_RESPONSE}: no bearer SubjectConfirmation with a Recipient and NotOnOrAfter")


def _conditions(assertion: etree._Element) -> tuple[datetime | None, datetime | None, tuple[str, ...]]:
    conditions = assertion.find("saml:Conditions", NS)
    if conditions is None:
        return None, None, ()
    not_before, not_after = conditions.get("NotBefore"), conditions.get("NotOnOrAfter")
    audiences = tuple(
        (audience.text or "").strip() for audience in conditions.iterfind("saml:AudienceRestriction/saml:Audience", NS)
    )
    return _instant(not_before) if not_before else None, _instant(not_after) if not_after else None, audiences


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    attributes: dict[str, list[str]] = {}
    for attribute in assertion.iterfind("saml:AttributeStatement/saml:Attribute", NS):
        values = [(value.text or "").strip() for value in attribute.iterfind("saml:AttributeValue", NS)]
        attributes.setdefault(str(attribute.get("Name")), []).extend(values)
    return attributes


def _single(attributes: dict[str, list[str]], name: str) -> str | None:
    values = attributes.get(name, [])
    if len(values) > 1:
        raise invalid_token(f"{INVALID_RESPONSE}: {name} must have one value")
    return values[0] if values else None


def _role_pairs(values: list[str]) -> tuple[tuple[str, str], ...]:
    """ "role-arn,provider-arn" in either order, as AWS accepts both."""
    pairs = []
    for value in values:
        parts = [part.strip() for part in value.split(",")]
        if len(parts) != 2:
            continue
        role = next((part for part in parts if ":role/" in part), None)
        provider = next((part for part in parts if ":saml-provider/" in part), None)
        if role and provider:
            pairs.append((role, provider))
    return tuple(pairs)


def _principal_tags(attributes: dict[str, list[str]]) -> dict[str, str]:
    tags = {}
    for name, values in attributes.items():
        if name.startswith(PRINCIPAL_TAG_PREFIX):
            key = name[len(PRINCIPAL_TAG_PREFIX) :]
            if len(values) != 1 or not key:
                raise invalid_token(f"{INVALID_RESPONSE}: session tag {key!r} must have exactly one value")
            tags[key] = values[0]
    return tags


def _session_duration(attributes: dict[str, list[str]]) -> int | None:
    value = _single(attributes, SESSION_DURATION_ATTRIBUTE)
    if value is None:
        return None
    if not value.isdigit() or not 900 <= int(value) <= 43200:
        raise invalid_token(f"{INVALID_RESPONSE}: SessionDuration must be 900-43200 seconds")
    return int(value)


def _subject_type(name_format: str | None) -> str:
    """AWS's SubjectType: `persistent` or `transient` for those formats, otherwise the whole Format URI."""
    if name_format and name_format.startswith("urn:oasis:names:tc:SAML:2.0:nameid-format:"):
        short = name_format.rsplit(":", 1)[-1]
        if short in ("persistent", "transient"):
            return short
    return name_format or "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise invalid_token(f"{INVALID_RESPONSE}: {value!r} is not an xs:dateTime") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
