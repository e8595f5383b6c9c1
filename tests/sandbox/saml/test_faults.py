"""Each SAML fault switch sends what it says, and only that (the rest still verifies)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from lxml import etree
from signxml.exceptions import InvalidInput, InvalidSignature

from sandbox.world import Sandbox
from tests.sandbox.saml.browser import NS, attribute, sign_in
from tests.sandbox.saml.test_sso import verified


def faulted(world: Sandbox, browser: httpx.Client, **faults: object) -> tuple[etree._Element, bytes]:
    for name, value in faults.items():
        setattr(world.idp.saml.faults, name, value)
    posted = sign_in(world, browser, "alice")
    return posted.root(), posted.xml


def cert(world: Sandbox):  # type: ignore[no-untyped-def]
    return world.idp.saml.signing.cert


def the_assertion(root: etree._Element) -> etree._Element:
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    return assertion


def test_unsigned_assertion(saml_world: Sandbox, browser: httpx.Client) -> None:
    root, xml = faulted(saml_world, browser, unsigned_assertion=True)
    assert the_assertion(root).find("ds:Signature", NS) is None
    verified(xml, cert(saml_world))  # the Response is still signed


def test_unsigned_response(saml_world: Sandbox, browser: httpx.Client) -> None:
    root, _ = faulted(saml_world, browser, unsigned_response=True)
    assert root.find("ds:Signature", NS) is None
    verified(the_assertion(root), cert(saml_world))


def test_rogue_key(saml_world: Sandbox, browser: httpx.Client) -> None:
    root, xml = faulted(saml_world, browser, sign_with_rogue_key=True)
    for signed in (xml, the_assertion(root)):
        with pytest.raises(InvalidSignature):
            verified(signed, cert(saml_world))


@pytest.mark.parametrize(
    ("fault", "path", "attr"),
    [
        ("audience", "saml:Conditions/saml:AudienceRestriction/saml:Audience", None),
        ("recipient", "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "Recipient"),
        ("in_response_to", "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "InResponseTo"),
    ],
)
def test_a_misaddressed_assertion_is_still_validly_signed(
    saml_world: Sandbox, browser: httpx.Client, fault: str, path: str, attr: str | None
) -> None:
    root, _ = faulted(saml_world, browser, **{fault: "https://other.example/x"})
    element = verified(the_assertion(root), cert(saml_world)).find(path, NS)
    assert element is not None
    assert (element.get(attr) if attr else element.text) == "https://other.example/x"


def test_wrong_destination(saml_world: Sandbox, browser: httpx.Client) -> None:
    _, xml = faulted(saml_world, browser, destination="https://other.example/acs")
    assert verified(xml, cert(saml_world)).get("Destination") == "https://other.example/acs"


def test_expired(saml_world: Sandbox, browser: httpx.Client) -> None:
    root, _ = faulted(saml_world, browser, expired=True)
    assertion = verified(the_assertion(root), cert(saml_world))
    now = datetime.now(UTC)
    deadlines = [
        element.get("NotOnOrAfter", "")
        for element in assertion.iter(f"{{{NS['saml']}}}SubjectConfirmationData", f"{{{NS['saml']}}}Conditions")
    ]
    assert len(deadlines) == 2
    assert all(datetime.fromisoformat(d.replace("Z", "+00:00")) < now for d in deadlines)


def test_email_tag_omitted_or_different(saml_world: Sandbox, browser: httpx.Client) -> None:
    root, _ = faulted(saml_world, browser, omit_email_tag=True)
    assertion = verified(the_assertion(root), cert(saml_world))
    assert attribute(assertion, "PrincipalTag:Email") == []
    assert attribute(assertion, "RoleSessionName") == ["alice@example.com"]

    root, _ = faulted(saml_world, browser, omit_email_tag=False, email_tag="bob@example.com")
    assertion = verified(the_assertion(root), cert(saml_world))
    assert attribute(assertion, "PrincipalTag:Email") == ["bob@example.com"]
    assert assertion.findtext("saml:Subject/saml:NameID", namespaces=NS) == saml_world.idp.subject("alice")


def test_extra_tags_and_role_value(saml_world: Sandbox, browser: httpx.Client) -> None:
    root, _ = faulted(saml_world, browser, extra_principal_tags={"Department": "sales"}, role_value="a,b")
    assertion = verified(the_assertion(root), cert(saml_world))
    assert attribute(assertion, "PrincipalTag:Department") == ["sales"]
    assert attribute(assertion, "Role") == ["a,b"]


def test_wrapped_beside(saml_world: Sandbox, browser: httpx.Client) -> None:
    """An unsigned assertion naming Bob comes first; Alice's genuine signed one follows; no Response signature."""
    root, _ = faulted(saml_world, browser, wrap="beside")
    assert root.find("ds:Signature", NS) is None
    forged, genuine = root.findall("saml:Assertion", NS)
    assert forged.find("ds:Signature", NS) is None
    assert attribute(forged, "PrincipalTag:Email") == ["bob@example.com"]
    assert forged.findtext("saml:Subject/saml:NameID", namespaces=NS) == saml_world.idp.subject("bob")
    assert forged.get("ID") == genuine.get("ID")
    assert attribute(verified(genuine, cert(saml_world)), "PrincipalTag:Email") == ["alice@example.com"]


def test_wrapped_around(saml_world: Sandbox, browser: httpx.Client) -> None:
    """A new unsigned Response naming Bob wraps Alice's genuine signed Response: a verifier that checks 'a valid
    signature somewhere' and then reads the top-level Assertion would sign Bob in."""
    root, _ = faulted(saml_world, browser, wrap="around")
    assert root.find("ds:Signature", NS) is None
    assert attribute(the_assertion(root), "PrincipalTag:Email") == ["bob@example.com"]
    inner = root.find("samlp:Extensions/samlp:Response", NS)
    assert inner is not None
    genuine = verified(inner, cert(saml_world))
    assert attribute(the_assertion(genuine), "PrincipalTag:Email") == ["alice@example.com"]


def test_doctype(saml_world: Sandbox, browser: httpx.Client) -> None:
    _, xml = faulted(saml_world, browser, doctype=True)
    assert xml.startswith(b"<!DOCTYPE samlp:Response [<!ENTITY")
    with pytest.raises(InvalidInput):  # signxml itself refuses DTDs
        verified(xml, cert(saml_world))
    saml_world.idp.saml.faults.doctype = False
    _, xml = faulted(saml_world, browser)
    verified(xml, cert(saml_world))


def test_reset_restores_a_good_response(saml_world: Sandbox, browser: httpx.Client) -> None:
    faulted(saml_world, browser, expired=True, wrap="around", omit_email_tag=True, extra_principal_tags={"A": "b"})
    saml_world.idp.saml.faults.reset()
    root, xml = faulted(saml_world, browser)
    verified(xml, cert(saml_world))
    assert attribute(verified(the_assertion(root), cert(saml_world)), "PrincipalTag:Email") == ["alice@example.com"]
    assert saml_world.idp.saml.faults.extra_principal_tags == {}
