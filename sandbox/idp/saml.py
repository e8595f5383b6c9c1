"""The sandbox IdP's SAML 2.0 side, as strict as Entra ID: registered service providers, metadata, and signed
Responses carrying the attributes AWS reads (Role, RoleSessionName, PrincipalTag:Email, SessionDuration).

The same people sign in as over OIDC. A Response is signed, and so is its Assertion (RSA-SHA256, exclusive
c14n, enveloped, the Reference naming the element's ID), with a self-signed certificate made at start and
published in the metadata. `faults` makes it send what a broken or hostile IdP (or an attacker in the middle)
would, so tests can prove the bot and STS refuse it. HTTP lives in `saml_routes`.
"""

from __future__ import annotations

import base64
import copy
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.signer import XMLSigner

from sandbox.directory import Directory, User

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
NSMAP = {"samlp": SAMLP, "saml": SAML}
HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
ATTR_NAME_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
ROLE_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/Role"
SESSION_NAME_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
SESSION_DURATION_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/SessionDuration"
PRINCIPAL_TAG_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/PrincipalTag:"
EMAIL_TAG_ATTRIBUTE = PRINCIPAL_TAG_ATTRIBUTE + "Email"
ASSERTION_TTL = 300  # SubjectConfirmationData and Conditions NotOnOrAfter, as Entra's ~5 minutes


@dataclass(frozen=True)
class RegisteredSP:
    """A SAML service provider (an "enterprise application"): the only ACS a Response is ever posted to, and the
    AWS role and SAML provider its Role attribute names."""

    entity_id: str
    acs_url: str
    role_arn: str
    provider_arn: str
    #: the SessionDuration attribute, if the application sends one
    session_duration: int | None = None


@dataclass
class SAMLFaults:
    """Switches that make the SAML side send what a broken IdP or an attacker would."""

    unsigned_assertion: bool = False
    unsigned_response: bool = False
    #: sign with a key that is not in the metadata (its own self-signed certificate in KeyInfo)
    sign_with_rogue_key: bool = False
    #: the AudienceRestriction names this instead of the SP's entity id
    audience: str | None = None
    #: SubjectConfirmationData Recipient is this instead of the ACS URL
    recipient: str | None = None
    #: the Response's Destination is this instead of the ACS URL
    destination: str | None = None
    #: issued 10 minutes ago: every NotOnOrAfter is in the past
    expired: bool = False
    #: InResponseTo names this instead of the AuthnRequest's ID
    in_response_to: str | None = None
    omit_email_tag: bool = False
    #: the PrincipalTag:Email value, instead of the user's email
    email_tag: str | None = None
    #: more PrincipalTag:<key> attributes
    extra_principal_tags: dict[str, str] = field(default_factory=dict)
    #: the Role attribute's value, instead of "<role-arn>,<provider-arn>"
    role_value: str | None = None
    #: "beside": the Response signature is stripped (an attacker cannot re-sign) and an unsigned copy of the
    #: assertion naming `wrap_user` comes before the genuine signed one; "around": a new unsigned Response
    #: naming `wrap_user` wraps the genuine, fully signed Response in its Extensions.
    wrap: str | None = None
    wrap_user: str = "bob"
    #: a DOCTYPE with an internal entity before the (still validly signed) Response
    doctype: bool = False

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(SAMLFaults(), f.name))


@dataclass
class SAMLStats:
    authn_requests: int = 0
    responses_issued: int = 0
    #: AuthnRequest refusals, by reason
    refusals: list[str] = field(default_factory=list)


class SAMLRequestError(Exception):
    """An AuthnRequest the IdP refuses; it cannot be answered to an ACS, so the user sees this on a page."""


@dataclass(frozen=True)
class AuthnRequest:
    id: str
    sp: RegisteredSP


@dataclass
class SigningCredential:
    """An RSA key and the self-signed certificate that publishes it."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def self_signed(cls, common_name: str) -> SigningCredential:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def cert_base64(self) -> str:
        """The certificate as metadata's X509Certificate carries it: base64 DER, no PEM armour."""
        return base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()


class SAMLIdP:
    """The SAML 2.0 identity provider of the sandbox IdP (entity id `<issuer>/saml/metadata`)."""

    def __init__(
        self,
        base_url: str,
        directory: Directory,
        subject: Callable[[str], str],
        *,
        clock: Callable[[], float] = time.time,
        session_seconds: int = 8 * 3600,
    ) -> None:
        """`subject` gives a user's persistent NameID (the same value as the OIDC `sub`); `session_seconds` is
        how long the IdP session lasts (AuthnStatement SessionNotOnOrAfter)."""
        self.base_url = base_url.rstrip("/")
        self.metadata_url = self.base_url + "/saml/metadata"
        self.entity_id = self.metadata_url  # as Keycloak and Shibboleth do: the metadata URL names the IdP
        self.sso_url = self.base_url + "/saml/sso"
        self.directory = directory
        self.subject = subject
        self.clock = clock
        self.session_seconds = session_seconds
        self.sps: dict[str, RegisteredSP] = {}
        self.faults = SAMLFaults()
        self.stats = SAMLStats()
        self._signing: SigningCredential | None = None
        self._rogue: SigningCredential | None = None

    # --- registration and metadata

    def add_sp(
        self, entity_id: str, acs_url: str, *, role_arn: str, provider_arn: str, session_duration: int | None = None
    ) -> RegisteredSP:
        sp = RegisteredSP(entity_id, acs_url, role_arn, provider_arn, session_duration)
        self.sps[entity_id] = sp
        return sp

    @property
    def signing(self) -> SigningCredential:
        """Made on first use, so an IdP that never speaks SAML spends no time on an RSA key."""
        if self._signing is None:
            self._signing = SigningCredential.self_signed("qbot sandbox IdP SAML signing")
        return self._signing

    def metadata_xml(self) -> bytes:
        """The IdP's metadata: entity id, signing certificate, and the HTTP-Redirect SSO endpoint."""
        md = etree.Element(f"{{{MD}}}EntityDescriptor", nsmap={"md": MD, "ds": DS}, entityID=self.entity_id)
        idp = etree.SubElement(
            md,
            f"{{{MD}}}IDPSSODescriptor",
            protocolSupportEnumeration=SAMLP,
            WantAuthnRequestsSigned="false",
        )
        key = etree.SubElement(idp, f"{{{MD}}}KeyDescriptor", use="signing")
        x509_data = etree.SubElement(etree.SubElement(key, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
        etree.SubElement(x509_data, f"{{{DS}}}X509Certificate").text = self.signing.cert_base64
        etree.SubElement(idp, f"{{{MD}}}NameIDFormat").text = PERSISTENT
        etree.SubElement(idp, f"{{{MD}}}SingleSignOnService", Binding=HTTP_REDIRECT, Location=self.sso_url)
        return bytes(etree.tostring(md, xml_declaration=True, encoding="UTF-8"))

    # --- requests and responses

    def check_request(self, request_xml: etree._Element) -> AuthnRequest:
        """The AuthnRequest, if it comes from a registered SP and names that SP's own ACS (SAMLRequestError)."""
        if request_xml.tag != f"{{{SAMLP}}}AuthnRequest":
            raise SAMLRequestError("The SAMLRequest is not an AuthnRequest.")
        request_id = request_xml.get("ID") or ""
        if not request_id or request_xml.get("Version") != "2.0":
            raise SAMLRequestError("The AuthnRequest has no ID or is not SAML 2.0.")
        issuer = request_xml.findtext("saml:Issuer", namespaces=NSMAP)
        sp = self.sps.get((issuer or "").strip())
        if sp is None:
            raise SAMLRequestError(f"Application {issuer!r} is not registered with this IdP.")
        destination = request_xml.get("Destination")
        if destination is not None and destination != self.sso_url:
            raise SAMLRequestError("The AuthnRequest is addressed to another IdP endpoint.")
        acs = request_xml.get("AssertionConsumerServiceURL")
        if acs is not None and acs != sp.acs_url:
            raise SAMLRequestError(f"The reply URL {acs!r} is not registered for application {sp.entity_id!r}.")
        binding = request_xml.get("ProtocolBinding")
        if binding is not None and binding != HTTP_POST:
            raise SAMLRequestError("Only the HTTP-POST binding is supported for responses.")
        return AuthnRequest(request_id, sp)

    def response_xml(self, request: AuthnRequest, user: User) -> bytes:
        """The signed Response to `request` for `user`, bent by whatever faults are switched on."""
        faults = self.faults
        now = self.clock() - (600 if faults.expired else 0)
        signer = self._rogue_key() if faults.sign_with_rogue_key else self.signing
        assertion = self._assertion(request, user, now)
        assertion = _unsigned(assertion) if faults.unsigned_assertion else _sign(assertion, signer)
        response = self._response(request, now, assertion)
        response = _unsigned(response) if faults.unsigned_response else _sign(response, signer)
        if faults.wrap == "beside":
            response = self._wrapped_beside(response)
        elif faults.wrap == "around":
            response = self._wrapped_around(response, request, now)
        elif faults.wrap is not None:
            raise ValueError(f"unknown wrap {faults.wrap!r}: 'beside' or 'around'")
        self.stats.responses_issued += 1
        body = bytes(etree.tostring(response, encoding="UTF-8"))
        if faults.doctype:
            body = b'<!DOCTYPE samlp:Response [<!ENTITY sandbox "entity">]>' + body
        return body

    def _assertion(self, request: AuthnRequest, user: User, now: float) -> etree._Element:
        faults, sp = self.faults, request.sp
        expires = _instant(now + ASSERTION_TTL)
        assertion = _element(None, "saml:Assertion", ID=_new_id(), Version="2.0", IssueInstant=_instant(now))
        _element(assertion, "saml:Issuer").text = self.entity_id
        _placeholder(assertion)
        subject = _element(assertion, "saml:Subject")
        _element(subject, "saml:NameID", Format=PERSISTENT).text = self.subject(user.username)
        confirmation = _element(subject, "saml:SubjectConfirmation", Method=BEARER)
        _element(
            confirmation,
            "saml:SubjectConfirmationData",
            InResponseTo=faults.in_response_to or request.id,
            NotOnOrAfter=expires,
            Recipient=faults.recipient or sp.acs_url,
        )
        conditions = _element(assertion, "saml:Conditions", NotBefore=_instant(now), NotOnOrAfter=expires)
        restriction = _element(conditions, "saml:AudienceRestriction")
        _element(restriction, "saml:Audience").text = faults.audience or sp.entity_id
        authn = _element(
            assertion,
            "saml:AuthnStatement",
            AuthnInstant=_instant(now),
            SessionIndex=_new_id(),
            SessionNotOnOrAfter=_instant(now + self.session_seconds),
        )
        _element(_element(authn, "saml:AuthnContext"), "saml:AuthnContextClassRef").text = PASSWORD_PROTECTED
        attributes = _element(assertion, "saml:AttributeStatement")
        _attribute(attributes, ROLE_ATTRIBUTE, faults.role_value or f"{sp.role_arn},{sp.provider_arn}")
        _attribute(attributes, SESSION_NAME_ATTRIBUTE, user.email)
        if not faults.omit_email_tag:
            _attribute(attributes, EMAIL_TAG_ATTRIBUTE, faults.email_tag or user.email)
        for key, value in faults.extra_principal_tags.items():
            _attribute(attributes, PRINCIPAL_TAG_ATTRIBUTE + key, value)
        if sp.session_duration is not None:
            _attribute(attributes, SESSION_DURATION_ATTRIBUTE, str(sp.session_duration))
        return assertion

    def _response(self, request: AuthnRequest, now: float, assertion: etree._Element) -> etree._Element:
        response = _element(
            None,
            "samlp:Response",
            ID=_new_id(),
            Version="2.0",
            IssueInstant=_instant(now),
            Destination=self.faults.destination or request.sp.acs_url,
            InResponseTo=self.faults.in_response_to or request.id,
        )
        _element(response, "saml:Issuer").text = self.entity_id
        _placeholder(response)
        _element(_element(response, "samlp:Status"), "samlp:StatusCode", Value=SUCCESS)
        response.append(assertion)
        return response

    def _forged(self, genuine: etree._Element) -> etree._Element:
        """An unsigned copy of the genuine assertion (same ID) claiming to be `faults.wrap_user`."""
        user = self.directory.by_username(self.faults.wrap_user)
        if user is None:
            raise ValueError(f"no user {self.faults.wrap_user!r} to impersonate")
        forged = _unsigned(copy.deepcopy(genuine))
        name_id = forged.find("saml:Subject/saml:NameID", NSMAP)
        if name_id is not None:
            name_id.text = self.subject(user.username)
        for value in forged.iterfind("saml:AttributeStatement/saml:Attribute", NSMAP):
            if value.get("Name") in (SESSION_NAME_ATTRIBUTE, EMAIL_TAG_ATTRIBUTE):
                value[0].text = user.email
        return forged

    def _wrapped_beside(self, response: etree._Element) -> etree._Element:
        response = _unsigned(response)
        genuine = response.find("saml:Assertion", NSMAP)
        assert genuine is not None
        genuine.addprevious(self._forged(genuine))
        return response

    def _wrapped_around(self, response: etree._Element, request: AuthnRequest, now: float) -> etree._Element:
        genuine = response.find("saml:Assertion", NSMAP)
        assert genuine is not None
        outer = _unsigned(self._response(request, now, self._forged(genuine)))
        outer.find("saml:Issuer", NSMAP).addnext(_extensions(response))
        return outer

    def _rogue_key(self) -> SigningCredential:
        if self._rogue is None:
            self._rogue = SigningCredential.self_signed("qbot sandbox IdP SAML signing")
        return self._rogue


def _sign(element: etree._Element, credential: SigningCredential) -> etree._Element:
    """An enveloped RSA-SHA256 signature over `element` (exclusive c14n), placed where the schema wants it
    (after Issuer) and referring to the element's ID."""
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed: etree._Element = signer.sign(
        element, key=credential.key, cert=[credential.cert], reference_uri=element.get("ID"), id_attribute="ID"
    )
    return signed


def _unsigned(element: etree._Element) -> etree._Element:
    """`element` without its own signature (or the placeholder for one)."""
    for signature in element.findall(f"{{{DS}}}Signature"):
        element.remove(signature)
    return element


def _element(parent: etree._Element | None, name: str, **attributes: str) -> etree._Element:
    prefix, local = name.split(":")
    tag = f"{{{NSMAP[prefix]}}}{local}"
    if parent is None:
        return etree.Element(tag, attributes, nsmap=NSMAP)
    return etree.SubElement(parent, tag, attributes)


def _placeholder(parent: etree._Element) -> None:
    """Where signxml puts the enveloped signature (SAML's schema wants it right after Issuer)."""
    etree.SubElement(parent, f"{{{DS}}}Signature", Id="placeholder", nsmap={"ds": DS})


def _extensions(content: etree._Element) -> etree._Element:
    extensions = etree.Element(f"{{{SAMLP}}}Extensions", nsmap=NSMAP)
    extensions.append(content)
    return extensions


def _attribute(statement: etree._Element, name: str, value: str) -> None:
    attribute = _element(statement, "saml:Attribute", Name=name, NameFormat=ATTR_NAME_FORMAT)
    _element(attribute, "saml:AttributeValue").text = value


def _new_id() -> str:
    """An xs:ID: it must not start with a digit, so IdPs prefix one (Entra: "_" + a GUID)."""
    return "_" + secrets.token_hex(20)


def _instant(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
