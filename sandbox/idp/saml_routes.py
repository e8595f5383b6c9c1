"""The SAML 2.0 endpoints of the sandbox IdP: metadata, and single sign-on taking the AuthnRequest by the
HTTP-Redirect binding and answering by the HTTP-POST binding (an auto-posting form to the SP's ACS).

Sign-in is the OIDC side's page (the same people, a form POST), carrying SAMLRequest and RelayState in hidden
fields; the request is checked again when the form comes back, so the page cannot be used to reach another ACS.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import secrets
import zlib

from aiohttp import web
from lxml import etree

from sandbox.idp.pages import error_page, login_page
from sandbox.idp.saml import AuthnRequest, SAMLIdP, SAMLRequestError

MAX_REQUEST_BYTES = 64 * 1024  # an AuthnRequest is a few hundred bytes; refuse inflation bombs early
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" action="([^"]*)"')


class SAMLRoutes:
    def __init__(self, saml: SAMLIdP) -> None:
        self.saml = saml

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/saml/metadata", self._metadata)
        app.router.add_get("/saml/sso", self._sso_page)
        app.router.add_post("/saml/sso", self._sso_sign_in)

    async def _metadata(self, request: web.Request) -> web.Response:
        return web.Response(body=self.saml.metadata_xml(), content_type="application/samlmetadata+xml")

    async def _sso_page(self, request: web.Request) -> web.Response:
        """HTTP-Redirect binding: SAMLRequest (deflated, base64) and RelayState in the query string."""
        try:
            authn = self._authn_request(request.query.get("SAMLRequest"))
        except SAMLRequestError as err:
            return error_page("invalid_saml_request", str(err))
        fields = {"SAMLRequest": request.query["SAMLRequest"], "RelayState": request.query.get("RelayState", "")}
        return self._login_page(authn, fields)

    async def _sso_sign_in(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {name: str(form.get(name, "")) for name in ("SAMLRequest", "RelayState")}
        try:
            authn = self._authn_request(fields["SAMLRequest"] or None)
        except SAMLRequestError as err:
            return error_page("invalid_saml_request", str(err))
        username = str(form.get("username", "")).strip()
        user = self.saml.directory.by_username(username)
        if user is None:
            return self._login_page(authn, fields, f"No user named {username!r} in this directory.")
        response = self.saml.response_xml(authn, user)
        return auto_post_page(authn.sp.acs_url, base64.b64encode(response).decode(), fields["RelayState"])

    def _authn_request(self, encoded: str | None) -> AuthnRequest:
        self.saml.stats.authn_requests += 1
        try:
            return self.saml.check_request(_inflate(encoded))
        except SAMLRequestError as err:
            self.saml.stats.refusals.append(str(err))
            raise

    def _login_page(self, authn: AuthnRequest, fields: dict[str, str], error: str | None = None) -> web.Response:
        return login_page(fields, self.saml.directory.users.values(), error, action="/saml/sso",
                          application=authn.sp.entity_id)  # fmt: skip


def _inflate(encoded: str | None) -> etree._Element:
    """The AuthnRequest of the HTTP-Redirect binding: base64 of raw DEFLATE, no DTD, bounded in size."""
    if not encoded:
        raise SAMLRequestError("The request carries no SAMLRequest.")
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        xml = inflater.decompress(base64.b64decode(encoded, validate=True), MAX_REQUEST_BYTES)
        if inflater.unconsumed_tail:
            raise SAMLRequestError("The SAMLRequest is too large.")
        root = etree.fromstring(xml, _SAFE_PARSER)
    except (binascii.Error, zlib.error, etree.XMLSyntaxError, ValueError) as err:
        raise SAMLRequestError("The SAMLRequest is not a deflated, base64-encoded XML message.") from err
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise SAMLRequestError("The SAMLRequest must not carry a DTD.")
    return root


def auto_post_page(acs_url: str, saml_response: str, relay_state: str) -> web.Response:
    """The HTTP-POST binding: a form posting SAMLResponse and RelayState to the ACS, submitted by a script
    the page's CSP allows by nonce (a button remains for browsers without scripts)."""
    nonce = secrets.token_urlsafe(16)
    relay = f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}">' if relay_state else ""
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Signing you in · Sandbox IdP</title>"
        f'</head><body><form method="post" action="{html.escape(acs_url)}">'
        f'<input type="hidden" name="SAMLResponse" value="{html.escape(saml_response)}">{relay}'
        '<noscript><button type="submit">Continue</button></noscript></form>'
        f'<script nonce="{nonce}">document.forms[0].submit()</script></body></html>'
    )
    headers = {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}'",
    }
    return web.Response(text=page, content_type="text/html", headers=headers)


def posted_form(page: str) -> tuple[str, dict[str, str]]:
    """What a browser posts from the auto-posting page: the ACS URL and the SAMLResponse/RelayState fields."""
    action = _ACTION.search(page)
    if action is None:
        raise ValueError("no form on the IdP page")
    return html.unescape(action.group(1)), {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page)}
