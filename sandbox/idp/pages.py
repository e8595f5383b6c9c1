"""The sandbox IdP's HTML: the sign-in page listing the directory's people, and the error page.

Sign-in is a plain form POST carrying the authorization request in hidden fields, so a test, a benchmark
and a headless browser sign in the same way; `login_form` reads the page back the way a browser would.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from string import Template

from aiohttp import web

from sandbox.directory import User

_LOGIN_PAGE = Template(resources.files("sandbox").joinpath("templates/login.html").read_text("utf-8"))
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # No form-action: Chromium applies it to the redirect that follows the sign-in POST.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" action="([^"]*)"')


def login_page(
    params: Mapping[str, str],
    users: Iterable[User],
    error: str | None = None,
    *,
    action: str = "/authorize",
    application: str | None = None,
) -> web.Response:
    """The sign-in page for one authorization request (`params`, carried along in hidden fields), posted to
    `action`; `application` names who asks (the OIDC client id unless given: SAML passes the SP's entity id)."""
    params = {key: value for key, value in params.items() if key != "username"}
    page = _LOGIN_PAGE.substitute(
        client_id=html.escape(application if application is not None else params.get("client_id", "")),
        action=html.escape(action),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        hidden=_hidden_fields(params),
        users=_user_buttons(users),
    )
    return web.Response(text=page, content_type="text/html", headers=_PAGE_HEADERS)


def error_page(error: str, description: str) -> web.Response:
    """What the user sees when the request cannot be sent back to a client (no validated redirect_uri)."""
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign-in error · Sandbox IdP</title>"
        f"</head><body><h1>Sign-in request refused</h1><p><code>{html.escape(error)}</code>: "
        f"{html.escape(description)}</p></body></html>"
    )
    return web.Response(status=400, text=page, content_type="text/html", headers=_PAGE_HEADERS)


def login_form(page: str, username: str) -> tuple[str, dict[str, str]]:
    """The sign-in page's form action and the fields a browser would post to sign in as `username`."""
    action = _ACTION.search(page)
    if action is None:
        raise ValueError("no login form on the IdP page")
    fields = {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page)}
    fields["username"] = username
    return html.unescape(action.group(1)), fields


def _hidden_fields(params: Mapping[str, str]) -> str:
    return "\n".join(
        f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">' for key, value in params.items()
    )


def _user_buttons(users: Iterable[User]) -> str:
    return "\n".join(
        f'<li><button type="submit" name="username" value="{html.escape(user.username)}">'
        f"<strong>{html.escape(user.name)}</strong> "
        f'<span class="email">{html.escape(user.email)}</span><br>'
        f'<span class="groups">{html.escape(", ".join(user.groups) or "no groups")}</span></button></li>'
        for user in users
    )
