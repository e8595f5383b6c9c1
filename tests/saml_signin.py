"""A person's browser in SAML mode: the chat link -> the IdP's SAML sign-in -> the form the IdP's page posts to
the bot's assertion consumer, over real HTTP, keeping what a replay test needs."""

from __future__ import annotations

from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from redis.asyncio import Redis

from bot.model import ChatIdentity
from bot.tls import tls_context
from sandbox.idp.pages import login_form
from sandbox.idp.saml_routes import posted_form


class Browser:
    """One person's browser: keeps cookies, follows what a person would click."""

    def __init__(self) -> None:
        self.http = httpx.Client(follow_redirects=False, timeout=10, verify=tls_context())
        self.acs_form: tuple[str, dict[str, str]] = ("", {})
        self.cookies_at_acs: dict[str, str] = {}  # what the browser sent with its post to the ACS
        self.idp_form: tuple[str, dict[str, str]] = ("", {})  # the IdP's sign-in form, as posted

    def sign_in(self, link_url: str, username: str = "alice") -> httpx.Response:
        """Open the chat link, sign in at the IdP as `username`, and post what its page posts to the ACS."""
        start = self.http.get(link_url)
        assert start.status_code == 302, start.text
        idp_url = start.headers["location"]
        assert "SAMLRequest" in parse_qs(urlsplit(idp_url).query)
        page = self.http.get(idp_url)
        assert page.status_code == 200, page.text
        action, fields = login_form(page.text, username)
        self.idp_form = (urljoin(idp_url, action), fields)
        answer = self.http.post(self.idp_form[0], data=fields)
        assert answer.status_code == 200, answer.text
        self.acs_form = posted_form(answer.text)
        self.cookies_at_acs = {cookie.name: cookie.value or "" for cookie in self.http.cookies.jar}
        return self.http.post(self.acs_form[0], data=self.acs_form[1])

    def close(self) -> None:
        self.http.close()


async def linked_identities(redis: Redis) -> list[ChatIdentity]:
    """The chat identities with a link in the vault (what an adapter test cannot name up front)."""
    found: list[ChatIdentity] = []
    async for key in redis.scan_iter("qbot:vault:*"):
        platform, tenant, user = key.decode().removeprefix("qbot:vault:").split(":", 2)
        found.append(ChatIdentity(platform, tenant, user))
    return found
