"""`qbot doctor`'s IdP checks, made without anyone signing in: the discovery document names the issuer, the
IdP knows the client and its secret, and it does not refuse the redirect URI.

- the client check sends a token request with a made-up authorization code: an IdP that knows the client and
  its secret answers `invalid_grant` (the code), one that does not answers `invalid_client`;
- the redirect URI check opens the authorization page (no one signs in): an IdP refuses an unregistered
  redirect URI there and then.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import httpx

from adapters.checks import FAIL, OK, SKIP, WARN, Check, json_field
from bot.config import DEFAULT_SCOPES


class IdpChecks:
    """The discovery document the first check reads is used by the others."""

    def __init__(self, env: Mapping[str, str], http: httpx.Client) -> None:
        self.env = env
        self._http = http
        self.issuer = (env.get("QBOT_OIDC_ISSUER") or "").rstrip("/")
        self.client_id = env.get("QBOT_OIDC_CLIENT_ID") or ""
        self._discovery: dict[str, Any] | None = None

    def idp_discovery(self) -> Check:
        if not self.issuer:
            return Check("IdP discovery", FAIL, "QBOT_OIDC_ISSUER is unset", "set it to the IdP's issuer URL")
        url = self.issuer + "/.well-known/openid-configuration"
        fix = "check QBOT_OIDC_ISSUER: it must be the issuer exactly as the IdP's discovery document names it"
        try:
            response = self._http.get(url)
        except httpx.HTTPError as err:
            return Check("IdP discovery", FAIL, f"{url} cannot be reached ({type(err).__name__})",
                         fix + ", and reachable from here (proxy, firewall)")
        try:
            document = response.json() if response.status_code == 200 else None
        except ValueError:
            document = None
        if not isinstance(document, dict):
            return Check("IdP discovery", FAIL, f"{url} answered HTTP {response.status_code}, not a discovery document",
                         fix)
        announced = str(document.get("issuer") or "")
        if announced.rstrip("/") != self.issuer:
            return Check("IdP discovery", FAIL, f"the discovery document names the issuer {announced!r}",
                         f"set QBOT_OIDC_ISSUER={announced.rstrip('/')}")
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
        if missing:
            return Check("IdP discovery", FAIL, f"the discovery document lacks {', '.join(missing)}",
                         "use the issuer of an OpenID Connect app (not a plain OAuth server)")
        self._discovery = document
        scopes = tuple((self.env.get("QBOT_OIDC_SCOPES") or " ".join(DEFAULT_SCOPES)).split())
        supported = document.get("scopes_supported")
        if isinstance(supported, list) and "offline_access" in scopes and "offline_access" not in supported:
            return Check("IdP discovery", WARN, "the IdP does not list offline_access among its scopes: users may "
                         "get no refresh token", "enable refresh tokens (offline_access) for the app at the IdP")
        return Check("IdP discovery", OK, f"{url} names this issuer")

    def idp_client(self) -> Check:
        if self._discovery is None:
            return Check("IdP client", SKIP, "needs the discovery document")
        if not self.client_id:
            return Check("IdP client", FAIL, "QBOT_OIDC_CLIENT_ID is unset", "set it to the IdP app's client id")
        secret = self.env.get("QBOT_OIDC_CLIENT_SECRET") or ""
        methods = self._discovery.get("token_endpoint_auth_methods_supported")
        post = isinstance(methods, list) and "client_secret_basic" not in methods and "client_secret_post" in methods
        form = {
            "grant_type": "authorization_code",
            "code": "qbot-doctor-" + secrets.token_urlsafe(12),  # no such code: the IdP must say invalid_grant
            "redirect_uri": self._redirect_uri(),
            "code_verifier": secrets.token_urlsafe(48),
        }
        endpoint = str(self._discovery["token_endpoint"])
        try:
            if post:
                credentials = {"client_id": self.client_id, "client_secret": secret}
                response = self._http.post(endpoint, data={**form, **credentials})
            else:
                response = self._http.post(endpoint, data=form, auth=(self.client_id, secret))
        except httpx.HTTPError as err:
            return Check("IdP client", FAIL, f"the token endpoint cannot be reached ({type(err).__name__})",
                         "check the network path to the IdP")
        error = json_field(response, "error")
        if error == "invalid_grant":
            return Check("IdP client", OK, f"the IdP accepts client id {self.client_id!r} and its secret")
        if error == "invalid_client" or response.status_code == 401:
            return Check("IdP client", FAIL, f"the IdP refuses client id {self.client_id!r} or its secret "
                         f"({json_field(response, 'error_description') or error or response.status_code})",
                         "check QBOT_OIDC_CLIENT_ID and QBOT_OIDC_CLIENT_SECRET against the IdP app")
        if error == "unauthorized_client":
            return Check("IdP client", FAIL, "the IdP app may not use the authorization code grant",
                         "allow the Authorization Code grant (and Refresh Token) for the app at the IdP")
        return Check("IdP client", WARN, f"unexpected answer to a probe: HTTP {response.status_code} {error or ''}",
                     "sign in once with qlink to be sure")

    def idp_redirect_uri(self) -> Check:
        if self._discovery is None or not self.client_id:
            return Check("IdP redirect URI", SKIP, "needs the discovery document and a client id")
        redirect = self._redirect_uri()
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect,
            "scope": "openid",
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": secrets.token_urlsafe(32),
            "code_challenge_method": "S256",
        }
        try:
            response = self._http.get(str(self._discovery["authorization_endpoint"]), params=params)
        except httpx.HTTPError as err:
            return Check("IdP redirect URI", FAIL, f"the authorization endpoint cannot be reached "
                         f"({type(err).__name__})", "check the network path to the IdP")
        if 400 <= response.status_code < 500:
            return Check("IdP redirect URI", FAIL, f"the IdP refuses the redirect URI {redirect} "
                         f"(HTTP {response.status_code})",
                         f"register {redirect} as a sign-in redirect URI of the IdP app, or fix QBOT_PUBLIC_URL")
        return Check("IdP redirect URI", OK, f"the IdP does not refuse {redirect}")

    def _redirect_uri(self) -> str:
        return (self.env.get("QBOT_PUBLIC_URL") or "http://127.0.0.1:3978").rstrip("/") + "/auth/callback"
