"""The account link's whole lifecycle: one-time links, the IdP login, the vault entry, unlinking.

A chat identity is linked only through a sign-in that can be checked: a one-time link (single use, sealed,
expiring) bound to the browser that asked for it or to the chat profile's email, redeemed by an OIDC login
(code + PKCE + nonce, its state sealed into the browser's own cookie) whose verified email and AWS Email tag
name the same person. Linking again, unlinking, or the end of a link's lifetime revokes the previous refresh
token at the IdP. Every failure raises a domain error and stores nothing.

In SAML mode (`saml` given) the same one-time link leads to a SAML login instead: an AuthnRequest whose ID is
sealed into the browser's cookie, and a POSTed response verified (signature, issuer, recipient, audience,
validity, InResponseTo, single use) and held to the same email rule. STS AssumeRoleWithSAML then gives the
link's credentials, stored with it; the link has no refresh token, so when they expire the user signs in again.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from bot.broker import CredentialBroker, fingerprint
from bot.config import Settings
from bot.conversations import Conversations
from bot.errors import (
    EmailMismatch,
    EmailTagMismatch,
    EmailTagMissing,
    IdentityProviderError,
    IdTokenInvalid,
    LinkNotBindable,
    LoginStateInvalid,
    QBotError,
)
from bot.group_sync import GroupObserver
from bot.link_deadlines import GRACE_SECONDS, LinkDeadlines
from bot.links import LinkTokens, LoginState, LoginStates, PendingLink
from bot.metrics import Metrics
from bot.model import ChatIdentity, Notice, NoticeKind
from bot.oidc import OidcClient
from bot.saml import SamlServiceProvider, new_request_id
from bot.vault import LinkedAccount, Vault

log = logging.getLogger(__name__)

LinkedListener = Callable[[ChatIdentity, str], Awaitable[None]]


@dataclass(frozen=True)
class LoginStart:
    authorize_url: str
    state: str
    cookie_value: str = field(repr=False)  # the sealed login state: the browser keeps it until the callback
    saml: bool = False  # the IdP answers with a cross-site POST to the SAML assertion consumer, not a redirect


@dataclass(frozen=True)
class LinkResult:
    identity: ChatIdentity
    email: str
    return_to: str | None


class Accounts:
    def __init__(
        self,
        settings: Settings,
        *,
        vault: Vault,
        links: LinkTokens,
        login_states: LoginStates,
        link_deadlines: LinkDeadlines,
        conversations: Conversations,
        oidc: OidcClient,
        metrics: Metrics,
        group_observer: GroupObserver | None = None,
        saml: SamlServiceProvider | None = None,
        broker: CredentialBroker | None = None,
    ) -> None:
        self.settings = settings
        self.vault = vault
        self.links = links
        self.login_states = login_states
        self.link_deadlines = link_deadlines
        self.conversations = conversations
        self.oidc = oidc
        self.metrics = metrics
        self.group_observer = group_observer  # automatic group sync (QBOT_GROUP_SYNC), when on
        self._linked_listeners: dict[str, LinkedListener] = {}
        self.saml = saml  # SAML mode when set: logins go to the SAML IdP, credentials come from AssumeRoleWithSAML
        self._broker = broker
        if saml is not None and broker is None:
            raise ValueError("SAML mode needs the broker, for AssumeRoleWithSAML")

    def on_linked(self, platform: str, listener: LinkedListener) -> None:
        """An adapter asks to be told when one of its users finishes linking (to confirm it in chat)."""
        self._linked_listeners[platform] = listener

    async def create_link(
        self,
        identity: ChatIdentity,
        profile_email: str | None,
        *,
        return_to: str | None = None,
    ) -> Notice:
        """A one-time sign-in link for `identity`, checked against its chat profile's email.

        Never a link without a profile email to check the sign-in against (`LinkNotBindable`): whoever opened
        it would bind their IdP account to this chat account. (The web console has no such links: its own
        sign-in, bound to the browser by the login cookie, is the link. With QBOT_REQUIRE_EMAIL_MATCH=false the
        email is not enforced and links are forwardable: the start-up log and `qbot doctor` say so.)
        """
        if not profile_email:
            raise LinkNotBindable(detail=f"no profile email for {identity.key}")
        token = await self.links.create(
            PendingLink(
                identity=identity,
                profile_email=profile_email,
                return_to=return_to,
                created_at=time.time(),
            )
        )
        url = f"{self.settings.public_url}/auth/start?t={token}"
        minutes = max(1, self.settings.link_ttl_seconds // 60)
        text = (
            f"Open this link within {minutes} minutes to sign in with your company account. "
            "It works once and is only for you: don't share it."
        )
        return Notice(NoticeKind.LINK, text, url=url, private=True)

    async def unlink(self, identity: ChatIdentity) -> Notice:
        account = await self.vault.delete(identity)  # its cached credentials go with it, atomically
        await self.conversations.forget_all(identity)
        if account is None:
            return Notice(NoticeKind.INFO, "You weren't linked. Nothing to forget.", private=True)
        await self._revoke_quietly(account.refresh_token)  # the link is gone here either way
        self.metrics.links.labels("unlinked").inc()
        return Notice(
            NoticeKind.INFO, f"Unlinked {account.email}. Your sign-in and conversations are forgotten.", private=True
        )

    async def is_linked(self, identity: ChatIdentity) -> bool:
        """Cheap (no decryption): whether a link is stored. `linked_email` tells whether it still opens."""
        return await self.vault.exists(identity)

    async def linked_email(self, identity: ChatIdentity) -> str | None:
        """The email an identity is linked as, or None: what an adapter may know of the vault."""
        account = await self.vault.load(identity)
        return account.email if account else None

    async def status(self, identity: ChatIdentity) -> Notice:
        account = await self.vault.load(identity)
        if account is None:
            return Notice(NoticeKind.NOT_LINKED, "You aren't linked. Run qlink to sign in once.", private=True)
        since = time.strftime("%Y-%m-%d", time.gmtime(account.linked_at))
        if not account.refresh_token:  # a SAML sign-in: it lasts as long as its credentials
            credentials = await self.vault.load_credentials(identity)
            if credentials is None:
                return Notice(
                    NoticeKind.NOT_LINKED,
                    f"You signed in as {account.email}, but that sign-in has expired. Run qlink to sign in again.",
                    private=True,
                )
            until = credentials.expiration.strftime("%Y-%m-%d %H:%M UTC")
            return Notice(
                NoticeKind.INFO, f"Signed in as {account.email}; this sign-in lasts until {until}.", private=True
            )
        return Notice(NoticeKind.INFO, f"Linked as {account.email} since {since}.", private=True)

    # -- the account link ---------------------------------------------------------------------------

    async def start_login(self, link_token: str) -> LoginStart:
        """Consume the one-time link (single use) and begin the IdP login for it (see `begin_login`)."""
        return await self.begin_login(await self.links.consume(link_token))

    async def begin_login(self, pending: PendingLink) -> LoginStart:
        """Begin the IdP login (code + PKCE S256 + nonce + state) that will link `pending.identity`.

        Stores nothing: the login state is sealed into `cookie_value`, which must come back with the callback
        (the route keeps it in a cookie). So anonymous visitors cannot grow Redis, and a login finishes only in
        the browser that began it: forwarding the IdP page to a colleague cannot bind their sign-in to you.
        """
        if self.saml is not None:  # an AuthnRequest; its ID comes back sealed, the RelayState names the login
            request_id = new_request_id()
            state, sealed = self.login_states.seal(pending, "", "", saml_request_id=request_id)
            return LoginStart(await self.saml.login_url(request_id, state), state, sealed, saml=True)
        nonce = secrets.token_urlsafe(24)
        code_verifier = secrets.token_urlsafe(64)
        state, sealed = self.login_states.seal(pending, nonce, code_verifier)
        return LoginStart(await self.oidc.authorization_url(state, nonce, code_verifier), state, sealed)

    async def extend_link(self, identity: ChatIdentity, lifetime_seconds: float) -> bool:
        """A link that ends (a web session) now ends `lifetime_seconds` from now: its refresh token is revoked
        then by `end_overdue_links`, and the vault keeps it a grace period longer so that sweep still finds it.
        False (and nothing recorded) when `identity` is not linked."""
        if not await self.vault.touch(identity, math.ceil(lifetime_seconds) + GRACE_SECONDS):
            return False
        await self.link_deadlines.set(identity, time.time() + lifetime_seconds)
        return True

    async def end_overdue_links(self, now: float | None = None) -> int:
        """Unlink every link whose lifetime is over, revoking its refresh token; returns how many were claimed.
        Safe to run in every bot process at once: each overdue link is claimed by exactly one."""
        moment = time.time() if now is None else now
        claimed = 0
        while batch := await self.link_deadlines.claim_due(moment):
            for identity in batch:
                await self.unlink(identity)
            claimed += len(batch)
        return claimed

    async def finish_login(self, params: Mapping[str, str], *, login_cookie: str | None = None) -> LinkResult:
        """Handle the IdP's redirect. Any failure raises a domain error and stores nothing."""
        state = params.get("state", "")
        if not state:
            raise LoginStateInvalid(detail="callback without state")
        login = self._open_login(state, login_cookie)
        if login.saml_request_id:
            raise LoginStateInvalid(detail="the login state is a SAML one")
        if "error" in params:
            description = params.get("error_description") or params["error"]
            self.metrics.links.labels("idp_error").inc()
            raise IdentityProviderError(
                f"The sign-in service refused the login: {description[:200]}. Run qlink to try again.",
                detail=f"authorize error {params['error']}",
            )
        code = params.get("code", "")
        if not code:
            raise IdentityProviderError("The sign-in service sent no authorization code. Run qlink again.")
        tokens = await self.oidc.exchange_code(code, login.code_verifier)
        try:
            await self.login_states.spend(state, login)  # the IdP really sent the user back: once only
            claims = await self.oidc.verify_id_token(tokens.id_token, nonce=login.nonce)
            if not claims.email:
                raise IdTokenInvalid(
                    "Your sign-in has no email address, which Amazon Q needs. Ask your administrator.",
                    detail="id_token without email",
                )
            if not claims.email_verified:
                raise IdTokenInvalid(
                    "Your sign-in's email address is not verified. Ask your administrator.",
                    detail="email_verified is false",
                )
            if not claims.email_tag:
                raise EmailTagMissing(detail="id_token without the Email principal tag")
            # STS and Q act on the Email tag, not on `email`: the two must name the same, verified person.
            if claims.email_tag.lower() != claims.email.lower():
                raise EmailTagMismatch(detail="the Email principal tag differs from the verified email")
            self._check_profile_email(claims.email_tag, login.pending.profile_email)
            if not tokens.refresh_token:
                raise IdentityProviderError(
                    "The sign-in service issued no refresh token, so qbot cannot act for you later. "
                    "Ask your administrator to allow offline_access for the qbot app.",
                    detail="no refresh token",
                )
        except QBotError:
            self.metrics.links.labels("refused").inc()
            if tokens.refresh_token:
                await self._revoke_quietly(tokens.refresh_token)
            raise
        identity = login.pending.identity
        replaced = await self.vault.store(
            identity,
            LinkedAccount(
                refresh_token=tokens.refresh_token,
                email=claims.email_tag,
                subject=claims.subject,
                issuer=claims.issuer,
                linked_at=time.time(),
                groups=claims.groups,
            ),
            ttl_seconds=login.pending.expires_in,
        )
        if replaced is not None and replaced.refresh_token != tokens.refresh_token:
            await self._revoke_quietly(replaced.refresh_token)  # a relink: the previous sign-in is over
        if login.pending.expires_in is not None:  # a link that ends (a web session) is revoked when it does
            await self.extend_link(identity, login.pending.expires_in)
        self.metrics.links.labels("linked").inc()
        if self.group_observer is not None:
            await self.group_observer.observe(claims.email_tag, claims.groups)
        log.info(
            "linked %s as %s (refresh token %s)", identity.key, claims.email_tag, fingerprint(tokens.refresh_token)
        )
        await self._tell_linked(identity, claims.email_tag)
        return LinkResult(identity, claims.email_tag, login.pending.return_to)

    def _open_login(self, state: str, login_cookie: str | None) -> LoginState:
        """The login state sealed in the cookie that came back with `state`; refused without it."""
        if not login_cookie:
            self.metrics.links.labels("other_browser").inc()
            minutes = max(1, self.login_states.ttl_seconds // 60)
            raise LoginStateInvalid(
                "This sign-in is over, or was started in another browser. Start again (run qlink, or Sign in on "
                f"the web console) and finish within {minutes} minutes in the same browser.",
                detail="callback without its login cookie (another browser, or expired)",
            )
        return self.login_states.open(state, login_cookie)

    def _check_profile_email(self, email_tag: str, expected: str | None) -> None:
        """The email rule: the sign-in's Email tag is the chat profile's email (QBOT_REQUIRE_EMAIL_MATCH)."""
        if self.settings.require_email_match and expected and email_tag.lower() != expected.lower():
            raise EmailMismatch(
                f"You signed in as {email_tag}, but your chat profile says {expected}. "
                "Sign in with your own account: run qlink again for a new link.",
                detail="email mismatch",
            )

    async def _tell_linked(self, identity: ChatIdentity, email: str) -> None:
        listener = self._linked_listeners.get(identity.platform)
        if listener is not None:
            try:
                await listener(identity, email)
            except Exception:  # the link stands even if the chat confirmation cannot be sent
                log.exception("could not confirm the link to %s in chat", identity.key)

    async def finish_saml_login(self, form: Mapping[str, str], *, login_cookie: str | None = None) -> LinkResult:
        """Handle the SAMLResponse the IdP POSTed to the assertion consumer: verify it against the login its
        RelayState names (and whose cookie came back), hold it to the email rule, trade it at STS, store the link
        with its credentials. Any failure raises a domain error and stores nothing (a verified assertion is
        spent, though: it cannot be replayed after a refusal either)."""
        if self.saml is None or self._broker is None:
            raise LoginStateInvalid(detail="a SAML response, but the bot is in OIDC mode")
        relay_state = form.get("RelayState", "")
        if not relay_state or not form.get("SAMLResponse"):
            raise LoginStateInvalid(detail="assertion consumer called without RelayState or SAMLResponse")
        login = self._open_login(relay_state, login_cookie)
        if not login.saml_request_id:
            raise LoginStateInvalid(detail="the login state is an OIDC one")
        try:
            assertion = await self.saml.accept(form["SAMLResponse"], expected_request_id=login.saml_request_id)
            await self.login_states.spend(relay_state, login)  # the IdP really answered this login: once only
            self._check_profile_email(assertion.email_tag, login.pending.profile_email)
            credentials = await self._broker.assume_role_with_saml(login.pending.identity, form["SAMLResponse"])
        except QBotError:
            self.metrics.links.labels("refused").inc()
            raise
        identity = login.pending.identity
        account = LinkedAccount(
            refresh_token="",  # SAML has none: the credentials below are the whole sign-in
            email=assertion.email_tag,
            subject=assertion.name_id,
            issuer=assertion.issuer,
            linked_at=time.time(),
        )
        replaced = await self.vault.store(identity, account, ttl_seconds=login.pending.expires_in)
        stored = await self.vault.load(identity)
        if stored is not None and (stored.subject, stored.issuer, stored.linked_at) == (
            account.subject, account.issuer, account.linked_at
        ):  # still this link (not relinked meanwhile): its credentials are this generation's
            await self.vault.store_credentials(identity, credentials, generation=stored.generation)
        if replaced is not None:
            await self._revoke_quietly(replaced.refresh_token)  # an OIDC link before: that sign-in is over
        if login.pending.expires_in is not None:
            await self.extend_link(identity, login.pending.expires_in)
        self.metrics.links.labels("linked").inc()
        log.info(
            "linked %s as %s (SAML assertion %s, credentials until %s)", identity.key, assertion.email_tag,
            fingerprint(assertion.assertion_id), credentials.expiration.isoformat(),
        )
        await self._tell_linked(identity, assertion.email_tag)
        return LinkResult(identity, assertion.email_tag, login.pending.return_to)

    async def _revoke_quietly(self, refresh_token: str) -> None:
        """Best effort: a token the IdP could not revoke now still expires there on its own. (A SAML link has
        none: its credentials end on their own.)"""
        if not refresh_token:
            return
        try:
            await self.oidc.revoke(refresh_token)
        except QBotError as exc:
            log.warning("revocation of refresh token %s failed: %s", fingerprint(refresh_token), exc.detail)
