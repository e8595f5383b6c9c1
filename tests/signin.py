"""Sign in at the sandbox IdP the way a browser does: load its login page, submit the form for one user."""

from __future__ import annotations

from urllib.parse import urljoin

import httpx

from bot.tls import tls_context
from sandbox.idp.pages import login_form


def sign_in_at_idp(http: httpx.Client, authorize_url: str, username: str) -> httpx.Response:
    """GET the IdP's authorize URL, POST its login form as `username`; returns the IdP's redirect response."""
    page = http.get(authorize_url)
    if page.status_code == 302:  # the IdP answered at once (an error sent back to the client)
        return page
    assert page.status_code == 200, page.text
    action, fields = login_form(page.text, username)
    return http.post(urljoin(str(page.url), action), data=fields)


def follow_link(link_url: str, username: str) -> httpx.Response:
    """A user opens a one-time qlink URL in a browser and signs in; returns the bot's callback response."""
    with httpx.Client(follow_redirects=False, timeout=10, verify=tls_context()) as http:
        start = http.get(link_url)
        if start.status_code != 302:
            return start
        idp = sign_in_at_idp(http, start.headers["location"], username)
        assert idp.status_code == 302, idp.text
        return http.get(idp.headers["location"])
