"""An IdP's SAML 2.0 metadata as the administrator's tools need it: its entity id, its single sign-on URL, and
the certificates it signs with (`qbot admin provision` gives the document to IAM; `qbot doctor` checks it).

Parsed with lxml without a DTD, entities, or the network, and a document that declares a DOCTYPE is refused
outright: metadata never needs one, and it is how XML entity attacks arrive. Only the IdP's
`IDPSSODescriptor` counts (Entra ID's metadata also holds WS-Federation role descriptors with their own keys).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
REDIRECT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
_NS = {"md": MD, "ds": DS}
ACS_PATH = "/auth/saml/acs"


class MetadataError(ValueError):
    """The metadata cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class IdpMetadata:
    entity_id: str
    sso_url: str  # the HTTP-Redirect SingleSignOnService, where the bot sends AuthnRequests
    certificates: tuple[x509.Certificate, ...]  # those the IdP signs with (KeyDescriptor use="signing" or unset)


def acs_url(public_url: str) -> str:
    """Where the IdP posts its response: also the assertion's Recipient, which STS compares with `SAML:aud`."""
    return public_url.strip().rstrip("/") + ACS_PATH


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def read_metadata(source: str, http: httpx.Client) -> str:
    """The document at a URL (an IdP's federation metadata URL) or in a file, as text."""
    if is_url(source):
        try:
            response = http.get(source, follow_redirects=True)
        except httpx.HTTPError as err:
            raise MetadataError(f"{source} cannot be reached ({type(err).__name__})") from None
        if response.status_code != 200:
            raise MetadataError(f"{source} answered HTTP {response.status_code}")
        return response.text
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MetadataError(f"cannot read {source}: {err}") from None


def parse_metadata(document: str | bytes) -> IdpMetadata:
    """The IdP's entity id, redirect SSO URL and signing certificates; MetadataError when any is missing."""
    data = document.encode("utf-8") if isinstance(document, str) else document
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise MetadataError(f"not XML: {err}") from None
    if root.getroottree().docinfo.doctype:
        raise MetadataError("it declares a DOCTYPE, which SAML metadata never needs (refused: XML entity attacks)")
    if root.tag == f"{{{MD}}}EntitiesDescriptor":
        entities = root.findall("md:EntityDescriptor", _NS)
        idps = [e for e in entities if e.find("md:IDPSSODescriptor", _NS) is not None]
        if len(idps) != 1:
            raise MetadataError(f"it describes {len(idps)} identity providers; give the metadata of exactly one")
        root = idps[0]
    if root.tag != f"{{{MD}}}EntityDescriptor":
        raise MetadataError(f"its root is {root.tag}, not a SAML 2.0 md:EntityDescriptor")
    entity_id = (root.get("entityID") or "").strip()
    if not entity_id:
        raise MetadataError("its EntityDescriptor has no entityID")
    idp = root.find("md:IDPSSODescriptor", _NS)
    if idp is None or PROTOCOL not in (idp.get("protocolSupportEnumeration") or "").split():
        raise MetadataError("it has no SAML 2.0 IDPSSODescriptor (is it a service provider's metadata?)")
    sso_url = next(
        (
            (service.get("Location") or "").strip()
            for service in idp.findall("md:SingleSignOnService", _NS)
            if service.get("Binding") == REDIRECT_BINDING
        ),
        "",
    )
    if not sso_url:
        raise MetadataError("it has no SingleSignOnService with the HTTP-Redirect binding")
    certificates = []
    for key in idp.findall("md:KeyDescriptor", _NS):
        if key.get("use") not in (None, "signing"):
            continue
        for node in key.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS):
            text = "".join((node.text or "").split())
            try:
                certificates.append(x509.load_der_x509_certificate(base64.b64decode(text, validate=True)))
            except (binascii.Error, ValueError):
                raise MetadataError("one of its signing certificates is not a base64 X.509 certificate") from None
    if not certificates:
        raise MetadataError("it names no signing certificate (KeyDescriptor use=\"signing\" with X509Certificate)")
    return IdpMetadata(entity_id=entity_id, sso_url=sso_url, certificates=tuple(certificates))


@dataclass(frozen=True)
class TrustDifference:
    """How IAM's copy of the metadata differs from the IdP's, in what STS uses: the issuer and the keys."""

    other_issuer: str = ""  # IAM's entity id, when it is not the IdP's
    issuer: str = ""  # the IdP's
    missing: int = 0  # certificates the IdP signs with that IAM lacks: STS refuses what they sign
    retired: int = 0  # certificates IAM still trusts that the IdP no longer lists

    def __bool__(self) -> bool:
        return bool(self.other_issuer or self.missing or self.retired)

    def describe(self) -> str:
        parts = [f"the issuer {self.other_issuer}, not {self.issuer}"] if self.other_issuer else []
        if self.missing:
            parts.append(f"{self.missing} of the IdP's signing certificate(s) missing")
        if self.retired:
            parts.append(f"{self.retired} certificate(s) the IdP no longer lists still trusted")
        return "; ".join(parts)


def trust_difference(idp: IdpMetadata, iam_copy: IdpMetadata) -> TrustDifference:
    """Compared by meaning, not text: the document's ID, signature and formatting change from one download of
    the same metadata to the next (Entra ID's metadata URL), and STS uses only the issuer and the keys."""
    ours = {cert.fingerprint(hashes.SHA256()) for cert in idp.certificates}
    held = {cert.fingerprint(hashes.SHA256()) for cert in iam_copy.certificates}
    return TrustDifference(
        other_issuer=iam_copy.entity_id if iam_copy.entity_id != idp.entity_id else "",
        issuer=idp.entity_id,
        missing=len(ours - held),
        retired=len(held - ours),
    )
