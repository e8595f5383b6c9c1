"""SAML mode's verifier: a throwaway IdP (key + self-signed certificate) signs responses with signxml here, and
each check of `bot.saml.verify_response` is proved by a response that fails only that check."""

from __future__ import annotations

import base64
import copy
import datetime
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from redis.asyncio import Redis
from signxml.algorithms import CanonicalizationMethod
from signxml.signer import XMLSigner

from bot.errors import (
    IdentityProviderError,
    QBotError,
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
from bot.saml import (
    ASSERTION_NS,
    BEARER,
    EMAIL_TAG_ATTRIBUTE,
    PROTOCOL_NS,
    ROLE_ATTRIBUTE,
    ROLE_SESSION_NAME_ATTRIBUTE,
    STATUS_SUCCESS,
    AssertionLedger,
    IdpMetadata,
    SamlMetadataSource,
    authn_request_url,
    new_request_id,
    parse_metadata,
    verify_response,
)

IDP_ENTITY = "https://idp.example.test/saml"
SSO_URL = "https://idp.example.test/saml/sso"
ACS = "https://qbot.example.test/auth/saml/acs"
SP_ENTITY = "urn:amazon:webservices"
REQUEST_ID = "_request-one"
ROLE = "arn:aws:iam::123456789012:role/qbot-user,arn:aws:iam::123456789012:saml-provider/qbot"
P, S, DS = f"{{{PROTOCOL_NS}}}", f"{{{ASSERTION_NS}}}", "{http://www.w3.org/2000/09/xmldsig#}"


# -- a throwaway IdP -----------------------------------------------------------------------------------


@dataclass
class SigningKey:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test idp")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )


def new_key() -> SigningKey:
    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))


IDP_KEY = new_key()
OTHER_KEY = new_key()
METADATA = IdpMetadata(IDP_ENTITY, SSO_URL, (IDP_KEY.cert,))


def metadata_xml(certs: list[x509.Certificate], *, entity_id: str = IDP_ENTITY, sso: str = SSO_URL) -> bytes:
    keys = "".join(
        '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        + base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
        + "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for c in certs
    )
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">' + keys +
        '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" location="x"/>'
        f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso}"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    ).encode()


def iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_response(
    *,
    now: float | None = None,
    issuer: str = IDP_ENTITY,
    audience: str = SP_ENTITY,
    recipient: str = ACS,
    destination: str | None = ACS,
    in_response_to: str = REQUEST_ID,
    not_before: float = -60,
    not_on_or_after: float = 300,
    email: str | None = "ada@example.com",
    name_id: tuple[str, str] = ("ada@example.com", "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"),
    assertion_id: str = "_assertion-one",
) -> etree._Element:
    """An unsigned samlp:Response the way Entra ID shapes one (times relative to `now`)."""
    at = time.time() if now is None else now
    response = etree.Element(P + "Response", nsmap={"samlp": PROTOCOL_NS, "saml": ASSERTION_NS},
                             ID="_response-one", Version="2.0", IssueInstant=iso(at), InResponseTo=in_response_to)
    if destination is not None:
        response.set("Destination", destination)
    etree.SubElement(response, S + "Issuer").text = issuer
    etree.SubElement(etree.SubElement(response, P + "Status"), P + "StatusCode", Value=STATUS_SUCCESS)
    assertion = etree.SubElement(response, S + "Assertion", ID=assertion_id, Version="2.0", IssueInstant=iso(at))
    etree.SubElement(assertion, S + "Issuer").text = issuer
    subject = etree.SubElement(assertion, S + "Subject")
    etree.SubElement(subject, S + "NameID", Format=name_id[1]).text = name_id[0]
    confirmation = etree.SubElement(subject, S + "SubjectConfirmation", Method=BEARER)
    etree.SubElement(confirmation, S + "SubjectConfirmationData", InResponseTo=in_response_to,
                     NotOnOrAfter=iso(at + not_on_or_after), Recipient=recipient)
    conditions = etree.SubElement(assertion, S + "Conditions", NotBefore=iso(at + not_before),
                                  NotOnOrAfter=iso(at + not_on_or_after))
    etree.SubElement(etree.SubElement(conditions, S + "AudienceRestriction"), S + "Audience").text = audience
    etree.SubElement(assertion, S + "AuthnStatement", AuthnInstant=iso(at), SessionNotOnOrAfter=iso(at + 8 * 3600))
    statement = etree.SubElement(assertion, S + "AttributeStatement")
    attributes = {ROLE_ATTRIBUTE: ROLE, ROLE_SESSION_NAME_ATTRIBUTE: "ada@example.com"}
    if email is not None:
        attributes[EMAIL_TAG_ATTRIBUTE] = email
    for name, value in attributes.items():
        etree.SubElement(etree.SubElement(statement, S + "Attribute", Name=name), S + "AttributeValue").text = value
    return response


def signed(
    element: etree._Element,
    key: SigningKey = IDP_KEY,
    c14n: CanonicalizationMethod = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
) -> etree._Element:
    """`element` signed (enveloped, exclusive c14n, RSA-SHA256), its Signature right after its Issuer."""
    element = copy.deepcopy(element)
    element.insert(1, etree.Element(DS + "Signature", Id="placeholder", nsmap={"ds": DS[1:-1]}))
    signer = XMLSigner(c14n_algorithm=c14n)
    reference = "#" + str(element.get("ID"))
    result: etree._Element = signer.sign(element, key=key.key, cert=[key.cert], reference_uri=reference)
    return result


def sign_assertion(
    response: etree._Element,
    key: SigningKey = IDP_KEY,
    c14n: CanonicalizationMethod = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
) -> etree._Element:
    response = copy.deepcopy(response)
    assertion = response.find(S + "Assertion")
    assert assertion is not None
    response.replace(assertion, signed(assertion, key, c14n))
    return response


def encode(document: etree._Element | bytes) -> str:
    raw = document if isinstance(document, bytes) else etree.tostring(document)
    return base64.b64encode(raw).decode()


def verify(document: etree._Element | bytes, **overrides: object) -> object:
    arguments: dict[str, object] = {
        "metadata": METADATA, "expected_request_id": REQUEST_ID, "acs_url": ACS, "sp_entity_id": SP_ENTITY,
        "now": time.time(),
    }
    arguments.update(overrides)
    return verify_response(encode(document), **arguments)  # type: ignore[arg-type]


def refused(kind: type[QBotError], call: Callable[[], object]) -> QBotError:
    with pytest.raises(kind) as raised:
        call()
    assert raised.value.user_message  # a short sentence for the user, never a trace
    assert "Traceback" not in raised.value.user_message
    return raised.value


# -- accepted ------------------------------------------------------------------------------------------


def test_a_signed_assertion_is_accepted_and_read() -> None:
    now = time.time()
    assertion = verify(sign_assertion(build_response(now=now)), now=now)
    assert assertion.email_tag == "ada@example.com"  # type: ignore[attr-defined]
    assert assertion.name_id == "ada@example.com"  # type: ignore[attr-defined]
    assert assertion.roles == (ROLE,)  # type: ignore[attr-defined]
    assert assertion.role_session_name == "ada@example.com"  # type: ignore[attr-defined]
    assert assertion.assertion_id == "_assertion-one"  # type: ignore[attr-defined]
    assert assertion.issuer == IDP_ENTITY  # type: ignore[attr-defined]
    assert abs(assertion.not_on_or_after - (now + 300)) < 2  # type: ignore[attr-defined]
    assert abs(assertion.session_not_on_or_after - (now + 8 * 3600)) < 2  # type: ignore[attr-defined]


def test_a_signed_response_covers_its_assertion() -> None:
    assertion = verify(signed(build_response()))
    assert assertion.email_tag == "ada@example.com"  # type: ignore[attr-defined]


def test_any_certificate_of_the_metadata_verifies() -> None:
    """IdPs roll keys by publishing two certificates: a response signed with either is accepted."""
    both = IdpMetadata(IDP_ENTITY, SSO_URL, (OTHER_KEY.cert, IDP_KEY.cert))
    assert verify(sign_assertion(build_response()), metadata=both)


# -- refused -------------------------------------------------------------------------------------------


def test_an_unsigned_response_is_refused() -> None:
    refused(SamlSignatureInvalid, lambda: verify(build_response()))


def test_a_signature_by_another_key_is_refused() -> None:
    """Even though the response carries the signing certificate: only the metadata's certificates count."""
    refused(SamlSignatureInvalid, lambda: verify(sign_assertion(build_response(), OTHER_KEY)))


def test_an_altered_signed_assertion_is_refused() -> None:
    response = sign_assertion(build_response())
    value = response.find(f".//{S}Attribute[@Name='{EMAIL_TAG_ATTRIBUTE}']/{S}AttributeValue")
    assert value is not None
    value.text = "eve@example.com"
    refused(SamlSignatureInvalid, lambda: verify(response))


def test_wrapping_an_attackers_assertion_beside_the_signed_one_is_refused() -> None:
    """The classic XSW: the attacker's unsigned assertion comes first, the genuine signed one is kept elsewhere."""
    genuine = sign_assertion(build_response())
    evil = build_response(email="eve@example.com", assertion_id="_evil").find(S + "Assertion")
    assert evil is not None
    genuine.insert(2, evil)
    error = refused(SamlResponseInvalid, lambda: verify(genuine))
    assert "wrapping" in error.detail

    hidden = sign_assertion(build_response())  # the genuine one moved into Extensions, the evil one in its place
    original = hidden.find(S + "Assertion")
    assert original is not None
    hidden.replace(original, copy.deepcopy(evil))
    etree.SubElement(hidden, P + "Extensions").append(original)
    refused(SamlResponseInvalid, lambda: verify(hidden))


def test_a_signed_response_wrapped_in_an_unsigned_one_is_refused() -> None:
    """A genuine signed Response hidden inside the attacker's unsigned Response: its assertion is not the outer
    Response's own, so which one a reader (STS) takes is ambiguous; refused."""
    outer = build_response(email="eve@example.com")
    evil = outer.find(S + "Assertion")
    assert evil is not None
    outer.remove(evil)
    etree.SubElement(outer, P + "Extensions").append(signed(build_response()))
    error = refused(SamlResponseInvalid, lambda: verify(outer))
    assert "wrapping" in error.detail


def test_two_signed_assertions_are_refused() -> None:
    """Both genuine (say, two users' assertions spliced together): we would verify one, and STS might use the
    other; so exactly one assertion per response."""
    response = sign_assertion(build_response())
    other = sign_assertion(build_response(email="eve@example.com", assertion_id="_assertion-two")).find(S + "Assertion")
    assert other is not None
    response.append(other)
    error = refused(SamlResponseInvalid, lambda: verify(response))
    assert "2 assertions" in error.detail


def test_a_signature_over_something_else_than_response_or_assertion_covers_nothing() -> None:
    """A signed element shaped like an assertion but named otherwise (here an Extensions) is not read."""
    response = build_response()
    assertion = response.find(S + "Assertion")
    assert assertion is not None
    text = etree.tostring(assertion).decode().replace("saml:Assertion", "samlp:Extensions")
    lookalike = etree.fromstring(text.replace('ID="_assertion-one"', 'ID="_ext"'))
    response.insert(2, signed(lookalike))
    error = refused(SamlSignatureInvalid, lambda: verify(response))
    assert "neither the Response nor its Assertion" in error.detail


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"issuer": "https://evil.example.test/saml"}, SamlAudienceMismatch),
        ({"audience": "https://other-sp.example.test"}, SamlAudienceMismatch),
        ({"recipient": "https://evil.example.test/acs"}, SamlAudienceMismatch),
        ({"destination": "https://evil.example.test/acs"}, SamlAudienceMismatch),
        ({"not_on_or_after": -300, "not_before": -600}, SamlExpired),
        ({"not_before": 600, "not_on_or_after": 900}, SamlExpired),
        ({"in_response_to": "_another-login"}, SamlOtherLogin),
        ({"email": None}, SamlEmailTagMissing),
        ({"email": "eve@example.com"}, SamlEmailTagMismatch),
    ],
    ids=[
        "issuer", "audience", "recipient", "destination", "expired", "not-yet-valid", "in-response-to", "email",
        "email-not-the-name-id",
    ],
)
def test_each_check_refuses_what_it_guards(change: dict[str, object], error: type[QBotError]) -> None:
    refused(error, lambda: verify(sign_assertion(build_response(**change))))  # type: ignore[arg-type]


def test_the_responses_own_issuer_and_in_response_to_must_agree_too() -> None:
    """Unsigned when only the assertion is signed, but an IdP never sends them different: refuse if they are."""
    response = sign_assertion(build_response())
    response.set("InResponseTo", "_another-login")
    refused(SamlOtherLogin, lambda: verify(response))
    response = sign_assertion(build_response())
    issuer = response.find(S + "Issuer")
    assert issuer is not None
    issuer.text = "https://evil.example.test/saml"
    refused(SamlAudienceMismatch, lambda: verify(response))


def test_an_opaque_name_id_need_not_be_the_email() -> None:
    """Entra and most IdPs name users by a persistent id: only an emailAddress NameID must be the Email tag."""
    persistent = ("f3a9c0d2", "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")
    assertion = verify(sign_assertion(build_response(email="ada@example.com", name_id=persistent)))
    assert assertion.name_id == "f3a9c0d2"  # type: ignore[attr-defined]
    assert verify(sign_assertion(build_response(email="ADA@example.com")))  # an email's case is no difference


def test_no_destination_is_fine_but_the_recipient_still_counts() -> None:
    assert verify(sign_assertion(build_response(destination=None)))
    refused(SamlAudienceMismatch, lambda: verify(sign_assertion(build_response(destination=None)), acs_url=SSO_URL))


def test_the_clock_skew_is_small() -> None:
    now = time.time()
    response = sign_assertion(build_response(now=now, not_on_or_after=60))
    assert verify(response, now=now + 60 + 100)  # within the skew
    refused(SamlExpired, lambda: verify(response, now=now + 60 + 200))


def test_a_response_the_idp_marks_failed_is_refused_with_its_message() -> None:
    response = build_response()
    status = response.find(f"{P}Status/{P}StatusCode")
    assert status is not None
    status.set("Value", "urn:oasis:names:tc:SAML:2.0:status:Responder")
    etree.SubElement(status.getparent(), P + "StatusMessage").text = "User is not assigned to the app"
    error = refused(IdentityProviderError, lambda: verify(sign_assertion(response)))
    assert "not assigned" in error.user_message


def test_a_doctype_and_entities_are_refused_before_anything_is_read() -> None:
    body = etree.tostring(sign_assertion(build_response())).decode()
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    )
    bomb = laughs + body.replace(">ada@example.com<", ">&c;<", 1)
    error = refused(SamlResponseInvalid, lambda: verify(bomb.encode()))
    assert "DOCTYPE" in error.detail
    external = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + body.replace(">ada@example.com<", ">&x;<", 1)
    refused(SamlResponseInvalid, lambda: verify(external.encode()))
    refused(SamlResponseInvalid, lambda: verify(b"<not-closed"))
    refused(SamlResponseInvalid, lambda: verify_response("%%% not base64", metadata=METADATA,
                                                         expected_request_id=REQUEST_ID, acs_url=ACS,
                                                         sp_entity_id=SP_ENTITY, now=time.time()))


def test_a_comment_does_not_truncate_what_was_signed() -> None:
    """`ada@example.com<!---->.evil.test` was signed as ada@example.com.evil.test: never read as ada@example.com."""
    response = build_response(name_id=("f3a9c0d2", "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"))
    value = response.find(f".//{S}Attribute[@Name='{EMAIL_TAG_ATTRIBUTE}']/{S}AttributeValue")
    assert value is not None
    value.text = "ada@example.com"
    value.append(etree.Comment(""))
    value[0].tail = ".evil.test"
    with_comments = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0_WITH_COMMENTS  # keeps the comment
    assertion = verify(sign_assertion(response, c14n=with_comments))
    assert assertion.email_tag == "ada@example.com.evil.test"  # type: ignore[attr-defined]


# -- metadata and the AuthnRequest -----------------------------------------------------------------------


def test_metadata_gives_the_issuer_the_redirect_endpoint_and_the_certificates() -> None:
    metadata = parse_metadata(metadata_xml([IDP_KEY.cert, OTHER_KEY.cert]))
    assert metadata.entity_id == IDP_ENTITY
    assert metadata.sso_redirect_url == SSO_URL
    assert metadata.signing_certificates == (IDP_KEY.cert, OTHER_KEY.cert)


def test_metadata_that_lacks_something_names_it() -> None:
    error = refused(SamlMetadataInvalid, lambda: parse_metadata(metadata_xml([])))
    assert "signing certificate" in error.detail
    error = refused(SamlMetadataInvalid, lambda: parse_metadata(metadata_xml([IDP_KEY.cert], entity_id="")))
    assert "entityID" in error.detail
    refused(SamlMetadataInvalid, lambda: parse_metadata(b'<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>'))
    refused(SamlMetadataInvalid, lambda: parse_metadata(metadata_xml([IDP_KEY.cert], sso="http://idp.test/sso")))


async def test_metadata_from_a_file_is_read(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "idp.xml"
    path.write_bytes(metadata_xml([IDP_KEY.cert]))
    assert (await SamlMetadataSource(file=str(path)).get()).entity_id == IDP_ENTITY
    with pytest.raises(SamlMetadataInvalid):
        await SamlMetadataSource(file=str(path) + ".missing").get()


def test_the_authn_request_travels_deflated_with_its_id_and_relay_state() -> None:
    request_id = new_request_id()
    assert request_id.startswith("_") and len(request_id) >= 33
    url = authn_request_url(request_id, ACS, SP_ENTITY, "relay-1", sso_url=SSO_URL + "?tenant=a")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == SSO_URL
    query = parse_qs(parts.query)
    assert query["tenant"] == ["a"] and query["RelayState"] == ["relay-1"]
    request = etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), wbits=-15))
    assert request.tag == P + "AuthnRequest"
    assert request.get("ID") == request_id
    assert request.get("AssertionConsumerServiceURL") == ACS
    assert request.get("Destination") == SSO_URL + "?tenant=a"
    assert request.findtext(S + "Issuer") == SP_ENTITY


async def test_an_assertion_is_spent_once(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        now = time.time()
        assertion = verify(sign_assertion(build_response(now=now)), now=now)
        ledger = AssertionLedger(redis)
        await ledger.spend(assertion, now=now)  # type: ignore[arg-type]
        with pytest.raises(SamlAssertionReplayed):
            await ledger.spend(assertion, now=now)  # type: ignore[arg-type]
        ttl = await redis.pttl(next(iter(await redis.keys("qbot:saml-assertion:*"))))
        assert 300_000 < ttl <= (300 + 120) * 1000  # kept until the assertion could no longer be used anyway
    finally:
        await redis.aclose()


async def test_metadata_from_a_url_is_cached_and_a_failed_refresh_keeps_the_last_good_copy() -> None:
    served = {"hits": 0, "status": 200}

    async def metadata(_request: web.Request) -> web.Response:
        served["hits"] += 1
        return web.Response(body=metadata_xml([IDP_KEY.cert]), status=served["status"])

    app = web.Application()
    app.router.add_get("/metadata", metadata)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/metadata"))
        cached = SamlMetadataSource(url=url)
        assert (await cached.get()).entity_id == IDP_ENTITY
        assert (await cached.get()).entity_id == IDP_ENTITY
        assert served["hits"] == 1  # within max_age: not fetched again

        always = SamlMetadataSource(url=url, max_age_seconds=0)
        await always.get()
        served["status"] = 500
        assert (await always.get()).entity_id == IDP_ENTITY  # the IdP hiccups: the last good copy serves
        assert served["hits"] == 3
        with pytest.raises(SamlMetadataInvalid):
            await SamlMetadataSource(url=url).get()  # nothing good yet: refused
