"""A person's browser at the sandbox IdP's SAML side: the SP's AuthnRequest by HTTP-Redirect, the sign-in page,
and the auto-posted SAMLResponse read back the way the browser would post it to the ACS."""

from __future__ import annotations

import base64
import secrets
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from lxml import etree

from sandbox.idp.pages import login_form
from sandbox.idp.saml import HTTP_POST, SAML, SAMLP
from sandbox.idp.saml_routes import posted_form
from sandbox.world import Sandbox

NS = {"samlp": SAMLP, "saml": SAML, "ds": "http://www.w3.org/2000/09/xmldsig#"}
AWS = "https://aws.amazon.com/SAML/Attributes/"


@dataclass
class Posted:
    """What the IdP's page posts to the ACS."""

    request_id: str
    acs: str
    saml_response: str  # base64, as posted
    relay_state: str

    @property
    def xml(self) -> bytes:
        return base64.b64decode(self.saml_response)

    def root(self) -> etree._Element:
        return etree.fromstring(self.xml, etree.XMLParser(resolve_entities=False, load_dtd=False))


def authn_request(
    world: Sandbox,
    *,
    issuer: str | None = None,
    acs: str | None = None,
    prefix: bytes = b"",
    changes: dict[str, str | None] | None = None,
) -> tuple[str, str]:
    """The AuthnRequest's ID and its HTTP-Redirect encoding (raw DEFLATE, then base64); `changes` replace
    attributes (None drops one), `prefix` goes before the XML (a DOCTYPE, say)."""
    request_id = "_" + secrets.token_hex(16)
    attributes: dict[str, str | None] = {
        "ID": request_id,
        "Version": "2.0",
        "IssueInstant": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Destination": world.idp.saml.sso_url,
        "AssertionConsumerServiceURL": acs or world.acs_url,
        "ProtocolBinding": HTTP_POST,
        **(changes or {}),
    }
    request = etree.Element(
        f"{{{SAMLP}}}AuthnRequest",
        {name: value for name, value in attributes.items() if value is not None},
        nsmap={"samlp": SAMLP, "saml": SAML},
    )
    etree.SubElement(request, f"{{{SAML}}}Issuer").text = issuer or world.sp_entity_id
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = compressor.compress(prefix + etree.tostring(request)) + compressor.flush()
    return request_id, base64.b64encode(deflated).decode()


def open_sso(browser: httpx.Client, encoded: str, relay_state: str = "relay-1") -> httpx.Response:
    return browser.get("/saml/sso", params={"SAMLRequest": encoded, "RelayState": relay_state})


def sign_in(world: Sandbox, browser: httpx.Client, username: str = "alice", relay_state: str = "relay-1") -> Posted:
    """AuthnRequest -> sign-in page -> pick `username` -> the auto-posting page, read as the browser posts it."""
    request_id, encoded = authn_request(world)
    page = open_sso(browser, encoded, relay_state)
    assert page.status_code == 200, page.text
    action, fields = login_form(page.text, username)
    answer = browser.post(action, data=fields)
    assert answer.status_code == 200, answer.text
    acs, posted = posted_form(answer.text)
    return Posted(request_id, acs, posted["SAMLResponse"], posted.get("RelayState", ""))


def attribute(assertion: etree._Element, name: str) -> list[str]:
    return [
        value.text or ""
        for attr in assertion.iterfind("saml:AttributeStatement/saml:Attribute", NS)
        if attr.get("Name") == AWS + name
        for value in attr.iterfind("saml:AttributeValue", NS)
    ]
