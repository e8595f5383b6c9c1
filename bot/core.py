"""The core every adapter calls: commands, questions, feedback, and the two halves of the account link.

Adapters hand in neutral `IncomingMessage`s and render the `Reply` they get back; they never see tokens,
credentials or Q Business. All user-facing failures arrive as `Notice`s with the domain error's text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bot.adapter_memory import AdapterMemory
from bot.attachments import DownloadBudget, read_files
from bot.broker import CredentialBroker, fingerprint
from bot.commands import HELP_TEXT, Command, parse_command
from bot.config import Settings
from bot.conversations import Conversations
from bot.deliveries import Deliveries
from bot.errors import (
    EmailMismatch,
    EmailTagMismatch,
    EmailTagMissing,
    IdentityProviderError,
    IdTokenInvalid,
    LinkNotBindable,
    LinkTokenInvalid,
    LoginStateInvalid,
    NotLinked,
    NotYourConversation,
    ProfileEmailUnknown,
    QBotError,
    QUnavailable,
)
from bot.group_sync import GroupObserver
from bot.link_deadlines import GRACE_SECONDS, LinkDeadlines
from bot.links import LinkTokens, LoginStates, PendingLink, browser_binding
from bot.metrics import Metrics
from bot.model import (
    Answer,
    ChatIdentity,
    IncomingMessage,
    Notice,
    NoticeKind,
    ProfileEmail,
    Reply,
    Usefulness,
)
from bot.oidc import OidcClient
from bot.qbusiness import ConversationGone, CredentialsRejected, QBusinessClient
from bot.turn import QuietTurn, Turn
from bot.turn_lock import TurnLock
from bot.vault import LinkedAccount, Vault

log = logging.getLogger(__name__)

LinkedListener = Callable[[ChatIdentity, str], Awaitable[None]]

NOTHING_READABLE = "None of your files could be read, so there was nothing to ask."


@dataclass(frozen=True)
class LoginStart:
    authorize_url: str
    state: str
    cookie_value: str = field(repr=False)  # the sealed login state: the browser keeps it until the callback


@dataclass(frozen=True)
class LinkResult:
    identity: ChatIdentity
    email: str
    return_to: str | None


class Core:
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
        broker: CredentialBroker,
        q: QBusinessClient,
        metrics: Metrics,
        deliveries: Deliveries,
        turns: TurnLock,
        adapter_memory: AdapterMemory,
        downloads: DownloadBudget,
        group_observer: GroupObserver | None = None,
    ) -> None:
        self.settings = settings
        self.vault = vault
        self.links = links
        self.login_states = login_states
        self.link_deadlines = link_deadlines
        self.conversations = conversations
        self.oidc = oidc
        self.broker = broker
        self.q = q
        self.metrics = metrics
        self.deliveries = deliveries
        self.turns = turns
        self.adapter_memory = adapter_memory
        self.downloads = downloads  # bytes of files held for questions, process-wide and per user
        self.group_observer = group_observer  # automatic group sync (QBOT_GROUP_SYNC), when on
        self._linked_listeners: dict[str, LinkedListener] = {}

    def on_linked(self, platform: str, listener: LinkedListener) -> None:
        """An adapter asks to be told when one of its users finishes linking (to confirm it in chat)."""
        self._linked_listeners[platform] = listener

    async def first_delivery(self, platform: str, delivery_id: str, *also_known_as: str) -> bool:
        """True once per platform delivery across all bot processes: retries and duplicates get False.

        `also_known_as` names the same delivery differently (Slack: the event id and the message's ts), so a
        message redelivered under a new event id is still recognised.
        """
        return await self.deliveries.first(platform, delivery_id, *also_known_as)

    async def remember(self, platform: str, key: str, value: Mapping[str, Any], ttl_seconds: int) -> None:
        """Keep a small JSON record for an adapter (sealed at rest, expiring): adapters never touch Redis."""
        await self.adapter_memory.put(platform, key, value, ttl_seconds)

    async def recall(self, platform: str, key: str) -> dict[str, Any] | None:
        """A record `remember` kept, or None once it expired."""
        return await self.adapter_memory.get(platform, key)

    # -- messages ---------------------------------------------------------------------------------

    async def handle(self, message: IncomingMessage, turn: Turn | None = None) -> Reply | None:
        """Everything one message needs, once for every platform; the adapter renders the reply.

        None means a redelivery of a message already taken (nothing to say). Commands run; a question is
        answered as the asker, with progress shown to linked users and the offered files read inside the
        thread's turn; in a shared place the answer is private unless the channel answers in the thread.
        """
        turn = turn or QuietTurn(message)
        platform = message.identity.platform
        if message.delivery_ids and not await self.deliveries.first(platform, *message.delivery_ids):
            log.info("ignored a redelivered %s message %s", platform, message.delivery_ids[0])
            return None
        # Files sent without a word are a question about them, not a request for help.
        command = parse_command(message.text, with_files=bool(message.files or message.offered))
        try:
            if command is None:
                reply: Reply = await self._answer(message, turn)
            else:
                reply = await self.run_command(command, message, turn)
        except NotLinked as exc:
            reply = Notice(NoticeKind.NOT_LINKED, exc.user_message, private=True)
        except QBotError as exc:
            reply = self._error_notice(exc)
        if isinstance(reply, Notice) and not reply.private and self.answers_privately(message):
            reply = dataclasses.replace(reply, private=True)  # where answers are private, so is all else said
        outcome = "answered" if isinstance(reply, Answer) else reply.kind.value
        self.metrics.messages.labels(platform, outcome).inc()
        return reply

    def answers_privately(self, message: IncomingMessage) -> bool:
        """Whether only the asker may see the answer: asked in a shared place that does not answer in threads."""
        return message.shared and self.settings.channel_reply_mode == "ephemeral"

    def _error_notice(self, exc: QBotError) -> Notice:
        log.warning("%s: %s", type(exc).__name__, exc.detail or exc.user_message)
        text = exc.user_message
        details: dict[str, str] = {}
        if isinstance(exc, QUnavailable) and exc.request_id:
            text = f"{text} (request id {exc.request_id})"
            details["request_id"] = exc.request_id
        return Notice(NoticeKind.ERROR, text, details=details)

    async def _answer(self, message: IncomingMessage, turn: Turn) -> Reply:
        identity = message.identity
        private = self.answers_privately(message)
        if not await self.vault.exists(identity):  # cheap; only a linked user sees progress or has files read
            raise NotLinked(detail=f"{identity.key} asked without a link")
        try:
            await turn.show_progress(private=private)
        except Exception as exc:  # the question is still answered; only the progress is lost
            log.warning("could not show progress to %s: %s", identity.key, type(exc).__name__)
        started = time.perf_counter()
        async with self.downloads.turn(identity.key) as allowance:
            # One turn at a time per (user, thread), across processes: each turn's parent is the previous answer,
            # and files are read only once it is this message's turn, so waiting messages hold no file bytes.
            async with self.turns.hold(identity.key, message.channel, message.thread):
                files, notes = await read_files(message.offered, allowance, turn.download)
                if not message.text.strip() and not message.files and not files:
                    return Notice(NoticeKind.INFO, NOTHING_READABLE, private=private, failed_attachments=notes)
                answer = await self._chat(dataclasses.replace(message, files=message.files + files))
        self.metrics.answer_latency.observe(time.perf_counter() - started)
        return dataclasses.replace(
            answer, failed_attachments=notes + answer.failed_attachments, private=private
        )

    async def _chat(self, message: IncomingMessage) -> Answer:
        identity = message.identity
        credentials = await self.broker.credentials(identity)
        client_token = self._client_token(message)
        current = await self.conversations.get(identity, message.channel, message.thread)
        conversation = await self.conversations.pin_turn(client_token, current)
        ask = partial(self.q.chat, text=message.text, files=message.files)
        try:
            answer = await ask(credentials, conversation=conversation, client_token=client_token)
        except CredentialsRejected:
            # Q no longer accepts the cached credentials (revoked, clock skew): mint fresh ones, once.
            await self.broker.forget(identity)
            credentials = await self.broker.credentials(identity)
            answer = await ask(credentials, conversation=conversation, client_token=client_token)
        except ConversationGone:
            # Q forgot the conversation (expired or deleted): start afresh and answer anyway.
            await self.conversations.forget(identity, message.channel, message.thread)
            fresh_token = self._client_token(message, fresh=True)
            answer = await ask(
                credentials, conversation=await self.conversations.pin_turn(fresh_token, None), client_token=fresh_token
            )
        await self.conversations.save(
            identity, message.channel, message.thread, answer.conversation_id, answer.message_id
        )
        return answer

    @staticmethod
    def _client_token(message: IncomingMessage, *, fresh: bool = False) -> str:
        """Derived from the platform's message id: a redelivered message maps to the same Q turn."""
        basis = f"{message.identity.key}|{message.channel}|{message.message_id}|{'new' if fresh else ''}"
        return hashlib.sha256(basis.encode()).hexdigest()[:64]

    # -- commands ---------------------------------------------------------------------------------

    async def run_command(self, command: Command, message: IncomingMessage, turn: Turn | None = None) -> Notice:
        identity = message.identity
        if command is Command.LINK:
            return await self._link_command(message, turn or QuietTurn(message))
        if command is Command.UNLINK:
            return await self.unlink(identity)
        if command is Command.STATUS:
            return await self.status(identity)
        if command is Command.NEW:
            await self.conversations.forget(identity, message.channel, message.thread)
            return Notice(NoticeKind.INFO, "Started a new conversation. Ask away.")
        return Notice(NoticeKind.INFO, HELP_TEXT)

    async def _link_command(self, message: IncomingMessage, turn: Turn) -> Notice:
        """qlink: a link checked against the chat profile's email, or a private word on why there is none."""
        profile = ProfileEmail(message.profile_email) if message.profile_email else await turn.profile_email()
        if not profile.email:
            problem = f" ({profile.problem}.)" if profile.problem else ""
            return Notice(NoticeKind.ERROR, f"{ProfileEmailUnknown.user_message}{problem}", private=True)
        return await self.create_link(message.identity, profile.email)

    async def create_link(
        self,
        identity: ChatIdentity,
        profile_email: str | None,
        *,
        return_to: str | None = None,
        browser_secret: str | None = None,
    ) -> Notice:
        """A one-time sign-in link for `identity`; with `browser_secret`, it opens only in the browser holding it.

        Never a link that is both unbound to a browser and without a profile email to check the sign-in
        against (`LinkNotBindable`): whoever opened such a link would bind their IdP account to this chat
        account. (With QBOT_REQUIRE_EMAIL_MATCH=false the email is not enforced, and links are forwardable:
        the start-up log and `qbot doctor` say so.)
        """
        if not browser_secret and not profile_email:
            raise LinkNotBindable(detail=f"no browser binding and no profile email for {identity.key}")
        token = await self.links.create(
            PendingLink(
                identity=identity,
                profile_email=profile_email,
                return_to=return_to,
                created_at=time.time(),
                browser_binding=browser_binding(browser_secret) if browser_secret else None,
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
        return Notice(NoticeKind.INFO, f"Linked as {account.email} since {since}.", private=True)

    # -- feedback ---------------------------------------------------------------------------------

    async def feedback(
        self, identity: ChatIdentity, conversation_id: str, message_id: str, usefulness: Usefulness
    ) -> None:
        """Rate an answer: only the identity that owns the conversation may (NotYourConversation otherwise)."""
        if await self.conversations.owner(conversation_id) != identity.key:
            raise NotYourConversation(detail=f"{identity.key} rated conversation {conversation_id}")
        credentials = await self.broker.credentials(identity)
        await self.q.feedback(credentials, conversation_id, message_id, usefulness)

    # -- the account link ---------------------------------------------------------------------------

    async def start_login(self, link_token: str, *, browser_secret: str | None = None) -> LoginStart:
        """Consume the one-time link (single use) and begin the IdP login for it (see `begin_login`).

        A link the adapter bound to a browser opens only in the browser holding `browser_secret`.
        """
        pending = await self.links.consume(link_token)
        if pending.browser_binding and (
            not browser_secret or not hmac.compare_digest(browser_binding(browser_secret), pending.browser_binding)
        ):
            raise LinkTokenInvalid(
                "This sign-in link was made for another browser. Start signing in again from there.",
                detail="link opened outside its browser",
            )
        return await self.begin_login(pending)

    async def begin_login(self, pending: PendingLink) -> LoginStart:
        """Begin the IdP login (code + PKCE S256 + nonce + state) that will link `pending.identity`.

        Stores nothing: the login state is sealed into `cookie_value`, which must come back with the callback
        (the route keeps it in a cookie). So anonymous visitors cannot grow Redis, and a login finishes only in
        the browser that began it: forwarding the IdP page to a colleague cannot bind their sign-in to you.
        """
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
        if not login_cookie:
            self.metrics.links.labels("other_browser").inc()
            minutes = max(1, self.login_states.ttl_seconds // 60)
            raise LoginStateInvalid(
                "This sign-in is over, or was started in another browser. Start again (run qlink, or Sign in on "
                f"the web console) and finish within {minutes} minutes in the same browser.",
                detail="callback without its login cookie (another browser, or expired)",
            )
        login = self.login_states.open(state, login_cookie)
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
            expected = login.pending.profile_email
            if (
                self.settings.require_email_match
                and expected
                and claims.email_tag.lower() != expected.lower()
            ):
                raise EmailMismatch(
                    f"You signed in as {claims.email_tag}, but your chat profile says {expected}. "
                    "Sign in with your own account: run qlink again for a new link.",
                    detail="email mismatch",
                )
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
        listener = self._linked_listeners.get(identity.platform)
        if listener is not None:
            try:
                await listener(identity, claims.email_tag)
            except Exception:  # the link stands even if the chat confirmation cannot be sent
                log.exception("could not confirm the link to %s in chat", identity.key)
        return LinkResult(identity, claims.email_tag, login.pending.return_to)

    async def _revoke_quietly(self, refresh_token: str) -> None:
        """Best effort: a token the IdP could not revoke now still expires there on its own."""
        try:
            await self.oidc.revoke(refresh_token)
        except QBotError as exc:
            log.warning("revocation of refresh token %s failed: %s", fingerprint(refresh_token), exc.detail)
