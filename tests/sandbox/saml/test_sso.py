"""The sandbox IdP's SAML side as an SP meets it: metadata, AuthnRequest by redirect, sign-in, signed Response."""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime

import httpx
import pytest
from cryptography import x509
from lxml import etree
from signxml.verifier import SignatureConfiguration, XMLVerifier

from sandbox.idp.saml import HTTP_REDIRECT, MD, PERSISTENT
from sandbox.world import SAML_PROVIDER_ARN, SAML_ROLE_ARN, Sandbox
from tests.sandbox.saml.browser import NS, attribute, authn_request, open_sso, sign_in


def metadata_cert(browser: httpx.Client) -> tuple[etree._Element, x509.Certificate]:
    answer = browser.get("/saml/metadata")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/samlmetadata+xml")
    root = etree.fromstring(answer.content)
    text = root.findtext(f".//{{{MD}}}KeyDescriptor[@use='signing']//ds:X509Certificate", namespaces=NS)
    return root, x509.load_der_x509_certificate(base64.b64decode(text or ""))


def verified(xml: bytes | etree._Element, cert: x509.Certificate) -> etree._Element:
    """The element an enveloped signature at the top of `xml` covers, checked against `cert`."""
    data = xml if isinstance(xml, bytes) else etree.tostring(xml)
    result = XMLVerifier().verify(data, x509_cert=cert, expect_config=SignatureConfiguration(location="./"),
                                  id_attribute="ID")  # fmt: skip
    return result.signed_xml  # type: ignore[union-attr]


def test_metadata_names_the_idp_its_certificate_and_redirect_sso(saml_world: Sandbox, browser: httpx.Client) -> None:
    root, cert = metadata_cert(browser)
    assert root.get("entityID") == saml_world.idp.saml.entity_id == saml_world.idp_url + "/saml/metadata"
    sso = root.find(f".//{{{MD}}}IDPSSODescriptor/{{{MD}}}SingleSignOnService", NS)
    assert sso is not None
    assert (sso.get("Binding"), sso.get("Location")) == (HTTP_REDIRECT, saml_world.idp_url + "/saml/sso")
    assert cert == saml_world.idp.saml.signing.cert


def test_sign_in_posts_a_signed_response_to_the_registered_acs(saml_world: Sandbox, browser: httpx.Client) -> None:
    posted = sign_in(saml_world, browser, "alice", relay_state="opaque-relay")
    _, cert = metadata_cert(browser)
    assert posted.acs == saml_world.acs_url == saml_world.bot_public_url + "/auth/saml/acs"
    assert posted.relay_state == "opaque-relay"

    response = verified(posted.xml, cert)
    assert response.get("InResponseTo") == posted.request_id
    assert response.get("Destination") == saml_world.acs_url
    assertion = verified(response.find("saml:Assertion", NS), cert)

    assert assertion.findtext("saml:Issuer", namespaces=NS) == saml_world.idp.saml.entity_id
    name_id = assertion.find("saml:Subject/saml:NameID", NS)
    assert name_id is not None and name_id.get("Format") == PERSISTENT
    assert name_id.text == saml_world.idp.subject("alice")
    confirmation = assertion.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
    assert confirmation is not None
    assert confirmation.get("Recipient") == saml_world.acs_url
    assert confirmation.get("InResponseTo") == posted.request_id
    expires = datetime.fromisoformat(confirmation.get("NotOnOrAfter", "").replace("Z", "+00:00"))
    assert 200 < (expires - datetime.now(UTC)).total_seconds() <= 300
    audience = assertion.findtext("saml:Conditions/saml:AudienceRestriction/saml:Audience", namespaces=NS)
    assert audience == saml_world.sp_entity_id
    assert assertion.find("saml:AuthnStatement", NS).get("SessionNotOnOrAfter")
    assert attribute(assertion, "Role") == [f"{SAML_ROLE_ARN},{SAML_PROVIDER_ARN}"]
    assert attribute(assertion, "RoleSessionName") == ["alice@example.com"]
    assert attribute(assertion, "PrincipalTag:Email") == ["alice@example.com"]
    assert attribute(assertion, "SessionDuration") == [str(saml_world.saml_session_seconds)]


def test_both_signatures_are_rsa_sha256_exclusive_c14n_naming_their_element(
    saml_world: Sandbox, browser: httpx.Client
) -> None:
    root = sign_in(saml_world, browser).root()
    for element in (root, root.find("saml:Assertion", NS)):
        assert element is not None
        signature = element.find("ds:Signature", NS)
        assert signature is not None, "unsigned element"
        info = signature.find("ds:SignedInfo", NS)
        assert info is not None
        assert info.find("ds:SignatureMethod", NS).get("Algorithm").endswith("#rsa-sha256")
        c14n = info.find("ds:CanonicalizationMethod", NS).get("Algorithm")
        assert c14n == "http://www.w3.org/2001/10/xml-exc-c14n#"
        assert info.find("ds:Reference", NS).get("URI") == "#" + element.get("ID", "")
        assert element.index(signature) == 1, "the signature follows the Issuer, as SAML's schema wants"


def test_the_sign_in_page_lists_the_directory(saml_world: Sandbox, browser: httpx.Client) -> None:
    _, encoded = authn_request(saml_world)
    page = open_sso(browser, encoded)
    assert page.status_code == 200
    assert saml_world.sp_entity_id in page.text
    for user in saml_world.directory.users.values():
        assert user.email in page.text


def test_an_unknown_user_stays_on_the_page(saml_world: Sandbox, browser: httpx.Client) -> None:
    _, encoded = authn_request(saml_world)
    answer = browser.post("/saml/sso", data={"SAMLRequest": encoded, "RelayState": "r", "username": "mallory"})
    assert answer.status_code == 200
    assert "No user named &#x27;mallory&#x27;" in answer.text
    assert "SAMLResponse" not in answer.text


def test_an_unregistered_sp_is_refused(saml_world: Sandbox, browser: httpx.Client) -> None:
    _, encoded = authn_request(saml_world, issuer="https://evil.example/sp")
    for answer in (
        open_sso(browser, encoded),
        browser.post("/saml/sso", data={"SAMLRequest": encoded, "username": "alice"}),
    ):
        assert answer.status_code == 400
        assert "is not registered with this IdP" in answer.text
        assert "SAMLResponse" not in answer.text


def test_a_reply_url_other_than_the_registered_acs_is_refused(saml_world: Sandbox, browser: httpx.Client) -> None:
    _, encoded = authn_request(saml_world, acs="https://evil.example/acs")
    for answer in (
        open_sso(browser, encoded),
        browser.post("/saml/sso", data={"SAMLRequest": encoded, "username": "alice"}),
    ):
        assert answer.status_code == 400
        assert "is not registered for application" in answer.text
        assert "SAMLResponse" not in answer.text


def test_a_request_that_is_not_a_deflated_authn_request_is_refused(browser: httpx.Client) -> None:
    for encoded in ("not base64!", base64.b64encode(b"<AuthnRequest/>").decode()):
        answer = open_sso(browser, encoded)
        assert answer.status_code == 400
        assert "SAMLRequest" in answer.text
    assert browser.get("/saml/sso").status_code == 400


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"Destination": "https://other-idp.example/sso"}, "addressed to another IdP endpoint"),
        ({"ProtocolBinding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"}, "Only the HTTP-POST binding"),
        ({"ID": None}, "has no ID"),
        ({"Version": "1.1"}, "is not SAML 2.0"),
    ],
)
def test_a_malformed_authn_request_is_refused(
    saml_world: Sandbox, browser: httpx.Client, changes: dict[str, str | None], says: str
) -> None:
    _, encoded = authn_request(saml_world, changes=changes)
    answer = open_sso(browser, encoded)
    assert answer.status_code == 400
    assert says in answer.text


def test_an_authn_request_with_a_dtd_is_refused(saml_world: Sandbox, browser: httpx.Client) -> None:
    _, encoded = authn_request(saml_world, prefix=b'<!DOCTYPE x [<!ENTITY e "e">]>')
    answer = open_sso(browser, encoded)
    assert answer.status_code == 400
    assert "must not carry a DTD" in answer.text


def test_an_oversized_authn_request_is_refused(saml_world: Sandbox, browser: httpx.Client) -> None:
    _, encoded = authn_request(saml_world, prefix=b"<!--" + b"x" * 70_000 + b"-->")
    answer = open_sso(browser, encoded)
    assert answer.status_code == 400
    assert "too large" in answer.text


def test_a_message_other_than_an_authn_request_is_refused(browser: httpx.Client) -> None:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    logout = b'<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_l" Version="2.0"/>'
    answer = open_sso(browser, base64.b64encode(compressor.compress(logout) + compressor.flush()).decode())
    assert answer.status_code == 400
    assert "is not an AuthnRequest" in answer.text
