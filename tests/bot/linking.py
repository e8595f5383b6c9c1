"""Test helpers that link a chat identity the real way: authorize at the sandbox IdP, sign in, redeem the code.

No shortcut into the IdP's memory: the helpers speak HTTP to the sandbox exactly as a browser and the bot do,
so the tokens they produce are the ones production code would hold.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from bot.model import ChatIdentity
from bot.oidc import IdClaims, OidcClient, TokenSet
from bot.tls import tls_context
from bot.vault import LinkedAccount, Vault
from sandbox.idp.pages import login_form
from sandbox.world import Sandbox

DEFAULT_SCOPES = ("openid", "email", "profile", "offline_access")


def oidc_client(sandbox: Sandbox, scopes: tuple[str, ...] = DEFAULT_SCOPES, **options: Any) -> OidcClient:
    """An OidcClient configured like the bot from `sandbox.env()` (close it with `aclose()`)."""
    env = sandbox.env()
    return OidcClient(
        env["QBOT_OIDC_ISSUER"],
        env["QBOT_OIDC_CLIENT_ID"],
        env["QBOT_OIDC_CLIENT_SECRET"],
        scopes,
        env["QBOT_PUBLIC_URL"] + "/auth/callback",
        **options,
    )


@dataclass(frozen=True)
class SignIn:
    """What the IdP redirected back with (`params`: code & state, or error), and the login's secrets."""

    params: dict[str, str]
    state: str
    nonce: str
    code_verifier: str

    @property
    def code(self) -> str:
        return self.params["code"]


async def sign_in(oidc: OidcClient, username: str = "alice") -> SignIn:
    """Open the authorization URL, post the IdP's login form as `username`, and read the redirect."""
    state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
    url = await oidc.authorization_url(state, nonce, verifier)
    async with httpx.AsyncClient(follow_redirects=False, timeout=10, verify=tls_context()) as browser:
        page = await browser.get(url)
        if page.status_code == 200:
            action, form = login_form(page.text, username)
            page = await browser.post(urljoin(url, action), data=form)
        assert page.status_code == 302, f"expected a redirect back to the bot, got HTTP {page.status_code}"
        location = page.headers["location"]
    assert location.startswith(oidc.redirect_uri + "?"), location
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params.get("state") == state
    return SignIn(params, state, nonce, verifier)


async def tokens_for(oidc: OidcClient, username: str = "alice") -> tuple[SignIn, TokenSet]:
    """Sign in and redeem the code (the id_token is not verified yet)."""
    login = await sign_in(oidc, username)
    return login, await oidc.exchange_code(login.code, login.code_verifier)


async def link_user(
    sandbox: Sandbox,
    vault: Vault,
    identity: ChatIdentity,
    username: str = "alice",
    *,
    oidc: OidcClient | None = None,
) -> tuple[LinkedAccount, IdClaims]:
    """Link `identity` to `username` through the real flow and store the link in `vault`, as /auth/callback does."""
    account, claims = await signed_in_account(sandbox, username, oidc=oidc)
    await vault.store(identity, account)
    return account, claims


async def signed_in_account(
    sandbox: Sandbox, username: str = "alice", *, oidc: OidcClient | None = None
) -> tuple[LinkedAccount, IdClaims]:
    """The link /auth/callback would store for `username` after a real sign-in, not yet stored: a test can
    land it (`vault.store`) at the exact moment it wants a relink to happen."""
    client = oidc if oidc is not None else oidc_client(sandbox)
    try:
        login, tokens = await tokens_for(client, username)
        claims = await client.verify_id_token(tokens.id_token, nonce=login.nonce)
    finally:
        if oidc is None:
            await client.aclose()
    assert tokens.refresh_token and claims.email
    account = LinkedAccount(
        refresh_token=tokens.refresh_token,
        email=claims.email,
        subject=claims.subject,
        issuer=claims.issuer,
        linked_at=time.time(),
        groups=claims.groups,
    )
    return account, claims
