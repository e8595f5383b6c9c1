"""SAML IdP metadata for the administrator's tests, shaped like Entra ID's: a self-signed signing certificate
whose expiry the test chooses, a redirect and a POST single sign-on service."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ENTITY_ID = "https://sts.windows.net/00000000-0000-0000-0000-0000000000aa/"
SSO_URL = "https://login.microsoftonline.com/00000000-0000-0000-0000-0000000000aa/saml2"


def certificate(days_left: float, name: str = "Microsoft Azure Federated SSO Certificate") -> str:
    """A base64 DER certificate that expires in `days_left` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def metadata(*certificates: str, entity_id: str = ENTITY_ID, sso_url: str = SSO_URL, doctype: str = "") -> str:
    keys = "".join(
        '<KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data>'
        f"<X509Certificate>{cert}</X509Certificate></X509Data></KeyInfo></KeyDescriptor>"
        for cert in certificates or (certificate(365),)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{doctype}'
        f'<EntityDescriptor ID="_5b1f" entityID="{entity_id}" xmlns="urn:oasis:names:tc:SAML:2.0:metadata">'
        '<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{keys}"
        '<SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
        f'Location="{sso_url}"/>'
        '<SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
        f'Location="{sso_url}"/>'
        '<SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location="{sso_url}"/>'
        "</IDPSSODescriptor></EntityDescriptor>\n"
    )


def write(path: Path, *certificates: str, **kwargs: str) -> Path:
    path.write_text(metadata(*certificates, **kwargs))
    return path
