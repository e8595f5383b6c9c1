"""The finer rules of AssumeRoleWithSAML, on assertions the sandbox IdP signed and a test then edited and
signed again with the IdP's own key (so only the rule under test can refuse them)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from lxml import etree
from signxml.algorithms import CanonicalizationMethod
from signxml.signer import XMLSigner

from sandbox.world import Sandbox
from tests.sandbox.saml.browser import AWS, NS
from tests.sandbox.saml.test_assume_role import assertion, assume, refused

SAML = NS["saml"]


def resigned(world: Sandbox, saml_response: str, edit: Callable[[etree._Element], Any], reference: str = "") -> str:
    """The Response with its Assertion edited and signed again by the IdP's key (the Response left unsigned);
    `reference` names the ID the new signature covers (the Assertion's by default)."""
    root = etree.fromstring(base64.b64decode(saml_response))
    for signature in root.findall("ds:Signature", NS):
        root.remove(signature)
    original = root.find("saml:Assertion", NS)
    assert original is not None
    original.remove(original.find("ds:Signature", NS))
    edit(original)
    original.find("saml:Issuer", NS).addnext(
        etree.Element(f"{{{NS['ds']}}}Signature", Id="placeholder", nsmap={"ds": NS["ds"]})
    )
    credential = world.idp.saml.signing
    signed = XMLSigner(c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0).sign(
        original, key=credential.key, cert=[credential.cert], reference_uri=reference or original.get("ID"),
        id_attribute="ID",
    )  # fmt: skip
    root.replace(original, signed)
    return base64.b64encode(etree.tostring(root)).decode()


def later(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def attribute_element(assertion_xml: etree._Element, name: str) -> etree._Element:
    found = assertion_xml.find(f"saml:AttributeStatement/saml:Attribute[@Name='{AWS}{name}']", NS)
    assert found is not None
    return found


def test_an_assertion_signed_again_unchanged_is_accepted(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    """The helper itself: editing nothing leaves a good assertion (so each refusal below is the rule's)."""
    assert assume(sts, resigned(saml_world, assertion(saml_world, browser), lambda a: None))["Credentials"]


def test_a_signature_over_part_of_the_assertion(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    def give_the_attributes_an_id(a: etree._Element) -> None:
        a.find("saml:AttributeStatement", NS).set("ID", "_attributes")

    response = resigned(saml_world, assertion(saml_world, browser), give_the_attributes_an_id, "_attributes")
    refused(saml_world, sts, response, "InvalidIdentityToken", "signature invalid")


def test_not_yet_valid(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    response = resigned(
        saml_world, assertion(saml_world, browser), lambda a: a.find("saml:Conditions", NS).set("NotBefore", later(60))
    )
    refused(saml_world, sts, response, "InvalidIdentityToken", "not yet valid")


def test_conditions_expired_alone(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    response = resigned(
        saml_world,
        assertion(saml_world, browser),
        lambda a: a.find("saml:Conditions", NS).set("NotOnOrAfter", later(-30)),
    )
    refused(saml_world, sts, response, "ExpiredTokenException")


def test_no_bearer_confirmation(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    def sender_vouches(a: etree._Element) -> None:
        confirmation = a.find("saml:Subject/saml:SubjectConfirmation", NS)
        confirmation.set("Method", "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches")

    response = resigned(saml_world, assertion(saml_world, browser), sender_vouches)
    refused(saml_world, sts, response, "InvalidIdentityToken", "bearer")


def test_role_session_name_required_and_well_formed(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    def spaced(a: etree._Element) -> None:
        attribute_element(a, "RoleSessionName")[0].text = "alice at example"

    def missing(a: etree._Element) -> None:
        name = attribute_element(a, "RoleSessionName")
        name.getparent().remove(name)

    for edit in (spaced, missing):
        response = resigned(saml_world, assertion(saml_world, browser), edit)
        refused(saml_world, sts, response, "InvalidIdentityToken", "RoleSessionName")


def test_session_duration_within_aws_bounds(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    def a_minute(a: etree._Element) -> None:
        attribute_element(a, "SessionDuration")[0].text = "60"

    response = resigned(saml_world, assertion(saml_world, browser), a_minute)
    refused(saml_world, sts, response, "InvalidIdentityToken", "SessionDuration")


def test_a_tag_with_two_values(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    def second_email(a: etree._Element) -> None:
        email = attribute_element(a, "PrincipalTag:Email")
        etree.SubElement(email, f"{{{SAML}}}AttributeValue").text = "bob@example.com"

    response = resigned(saml_world, assertion(saml_world, browser), second_email)
    refused(saml_world, sts, response, "InvalidIdentityToken", "exactly one value")


def test_a_response_that_reports_failure(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    root = etree.fromstring(base64.b64decode(assertion(saml_world, browser, unsigned_response=True)))
    root.find("samlp:Status/samlp:StatusCode", NS).set("Value", "urn:oasis:names:tc:SAML:2.0:status:Requester")
    refused(saml_world, sts, base64.b64encode(etree.tostring(root)).decode(), "InvalidIdentityToken", "success")


def test_the_assertion_must_be_the_responses_own(saml_world: Sandbox, browser: httpx.Client, sts: Any) -> None:
    """One signed Assertion, but tucked into Extensions rather than where a Response carries it."""
    root = etree.fromstring(base64.b64decode(assertion(saml_world, browser, unsigned_response=True)))
    signed = root.find("saml:Assertion", NS)
    extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
    root.find("saml:Issuer", NS).addnext(extensions)
    extensions.append(signed)
    refused(saml_world, sts, base64.b64encode(etree.tostring(root)).decode(), "InvalidIdentityToken", "exactly one")
