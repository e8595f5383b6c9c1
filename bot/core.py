"""The core every adapter calls: a message's whole turn (`handle`), commands and feedback.

Adapters hand in neutral `IncomingMessage`s with a `Turn` (bot/turn.py) and render the `Reply` they get back;
they never see tokens, credentials or Q Business. All user-facing failures arrive as `Notice`s with the domain
error's text. The account link's lifecycle lives in `bot.accounts`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

from redis.exceptions import RedisError

from bot.accounts import Accounts
from bot.attachments import DownloadBudget, read_files
from bot.broker import CredentialBroker
from bot.channel_policy import ChannelPolicies, ChannelPolicy, ChannelPolicyError
from bot.commands import CONSOLE_HELP_TEXT, HELP_TEXT, Command, command_arguments, parse_command
from bot.config import Settings
from bot.conversations import Conversations
from bot.deliveries import Deliveries
from bot.errors import (
    LinkExpired,
    NotLinked,
    NotYourConversation,
    ProfileEmailUnknown,
    QBotError,
    QUnavailable,
    SignInExpired,
)
from bot.feedback import InvalidFeedback, rating
from bot.history import History
from bot.metrics import Metrics
from bot.model import (
    ActionReview,
    Answer,
    ChatIdentity,
    IncomingMessage,
    Notice,
    NoticeKind,
    PlacedReply,
    PluginInfo,
    ProfileEmail,
    Reply,
    SharedAnswer,
    Usefulness,
)
from bot.pending_questions import PendingQuestion, PendingQuestions
from bot.plugins import PLUGIN_USAGE, Plugins
from bot.private_answers import PrivateAnswers
from bot.qbusiness import ConversationGone, CredentialsRejected, QBusinessClient
from bot.redis_lock import RedisLock
from bot.turn import QuietTurn, Turn
from bot.turn_lock import TurnLock
from bot.vault import Vault

log = logging.getLogger(__name__)

NO_POLICY = ChannelPolicy()
NOTHING_READABLE = "None of your files could be read, so there was nothing to ask."
FEEDBACK_THANKS = "Thanks for the feedback."
SIGN_IN_AGAIN = (
    "Your sign-in has expired: with your company's sign-in, qbot can act for you only for some hours at a time. "
    "Sign in again (it usually takes one click) and I'll answer your question right away."
)
FILES_NOT_KEPT = " Your files were not kept: send them again once you're back."
SIGN_IN_IS_THE_LINK = (
    "Here, signing in is the link: use the Sign in button to sign in with your company account."
)


class Core:
    """Messages, commands and feedback, the same for every platform; the account link is `accounts`'."""

    def __init__(
        self,
        settings: Settings,
        *,
        accounts: Accounts,
        vault: Vault,
        conversations: Conversations,
        broker: CredentialBroker,
        q: QBusinessClient,
        metrics: Metrics,
        deliveries: Deliveries,
        turns: TurnLock,
        downloads: DownloadBudget,
        channel_policies: ChannelPolicies,
        private_answers: PrivateAnswers,
        pending_questions: PendingQuestions,
        plugins: Plugins,
    ) -> None:
        self.settings = settings
        self.accounts = accounts  # the account link's lifecycle (sign-in routes, console sessions use it)
        self.history = History(broker, q, conversations)  # the user's conversations, read from Q (the console)
        self.downloads = downloads  # bytes of files held for questions, process-wide and per user
        self.plugins = plugins  # plugin actions and sign-in (the plugin callback route and adapters' listeners)
        self._vault = vault
        self._conversations = conversations
        self._broker = broker
        self._q = q
        self._metrics = metrics
        self._deliveries = deliveries
        self._turns = turns
        self._policies = channel_policies
        self._private_answers = private_answers
        self._pending = pending_questions

    # -- messages ---------------------------------------------------------------------------------

    async def handle(self, message: IncomingMessage, turn: Turn | None = None) -> Reply | None:
        """Everything one message needs, once for every platform; the adapter renders the reply (see `_handle`).
        A failure that escapes (Redis down, say) is counted like any other error before it propagates."""
        try:
            return await self._handle(message, turn)
        except Exception:
            platform = message.identity.platform
            self._metrics.messages.labels(platform, NoticeKind.ERROR.value).inc()
            self._metrics.failed("turn", platform)
            raise

    async def _handle(self, message: IncomingMessage, turn: Turn | None = None) -> Reply | None:
        """Everything one message needs, once for every platform; the adapter renders the reply.

        None means a redelivery of a message already taken (nothing to say). Commands run; a question is
        answered as the asker, with progress shown to linked users and the offered files read inside the
        thread's turn; in a shared place the answer is private unless the channel answers in the thread.
        """
        turn = turn or QuietTurn(message)
        platform = message.identity.platform
        if message.delivery_ids and not await self._deliveries.first(platform, *message.delivery_ids):
            log.info("ignored a redelivered %s message %s", platform, message.delivery_ids[0])
            return None
        # Files sent without a word are a question about them, not a request for help.
        command = parse_command(message.text, with_files=bool(message.files or message.offered))
        private = False  # equivalent mutant: None, as falsy
        try:
            policy = await self._policy(message)
            private = message.shared and (policy.reply or self.settings.channel_reply_mode) == "private"
            if command is None:
                plugin = await self.plugins.find(message.identity, policy.plugin) if policy.plugin else None
                reply: Reply = await self._answer(message, turn, policy, private=private, plugin=plugin)
            elif command is Command.PLUGIN:
                reply = await self._ask_plugin(message, turn, policy, private=private)
            else:
                reply = await self.run_command(command, message, turn)
        except NotLinked as exc:
            reply = Notice(NoticeKind.NOT_LINKED, exc.user_message, private=True)
            if isinstance(exc, SignInExpired) and command is None and not turn.signs_in_itself:
                reply = await self._sign_in_again(message, turn) or reply
        except QBotError as exc:
            reply = self._error_notice(exc)
        if isinstance(reply, Notice) and not reply.private and private:
            reply = dataclasses.replace(reply, private=True)  # where answers are private, so is all else said
        outcome = "answered" if isinstance(reply, Answer) else reply.kind.value
        self._metrics.messages.labels(platform, outcome).inc()
        return reply

    async def _sign_in_again(self, message: IncomingMessage, turn: Turn) -> Notice | None:
        """SAML mode, the sign-in expired: a private one-click link to sign in again, with the question kept
        (sealed, for the link's lifetime) to be answered once the user is back. None when no link can be made."""
        profile = ProfileEmail(message.profile_email) if message.profile_email else await turn.profile_email()
        if not profile.email:
            return None  # qlink says why (the profile hides its email)
        try:
            link = await self.accounts.create_link(message.identity, profile.email)
        except QBotError as exc:
            log.warning("no sign-in link for %s after its sign-in expired: %s", message.identity.key, exc.detail)
            return None
        # equivalent mutants: files/offered/delivery_ids None or left as they were; PendingQuestions keeps none of
        # them (only the words, the place and the email)
        kept = dataclasses.replace(
            message, files=(), offered=(), delivery_ids=(), profile_email=profile.email
        )
        await self._pending.keep(kept, turn.address())
        text = f"{SIGN_IN_AGAIN} {link.text}{FILES_NOT_KEPT if message.files or message.offered else ''}"
        # equivalent mutant: without private=True, as create_link's notice is private already
        return dataclasses.replace(link, text=text, private=True)

    def count_failure(self, stage: str, platform: str) -> None:
        """An adapter's failure the user may not have seen (`deliver`: Slack lost an answer or an error message;
        `receive`: a request it could not take), counted in /metrics so an outage shows there."""
        self._metrics.failed(stage, platform)

    @contextmanager
    def _stage(self, stage: str, platform: str) -> Iterator[None]:
        """Count a failure of `stage` the user is told of (an error notice), by the stage it happened in."""
        try:
            yield
        except NotLinked:
            raise  # not a failure: the user is asked to link
        except QBotError:
            self._metrics.failed(stage, platform)
            raise

    async def take_pending_question(self, identity: ChatIdentity) -> PendingQuestion | None:
        """The question `identity` asked when their sign-in had expired, once: the adapter answers it (through
        `handle`, in the place the question was asked) when the user has signed in again."""
        return await self._pending.take(identity)

    async def _policy(self, message: IncomingMessage) -> ChannelPolicy:
        """The channel's policy (an admin's, from Redis: every replica sees a change at once), or the default.
        Only shared places have one: a DM is always the asker's own."""
        if not message.shared:
            return NO_POLICY
        try:
            return await self._policies.get(message.identity.platform, message.channel) or NO_POLICY
        except ChannelPolicyError as exc:  # a restriction must not silently fall away: refuse, say why
            raise QBotError(
                "This channel's qbot settings can't be read, so I won't answer here. Please tell your "
                "administrator (qbot doctor shows the problem).",
                detail=str(exc),
            ) from None

    def _error_notice(self, exc: QBotError) -> Notice:
        log.warning("%s: %s", type(exc).__name__, exc.detail or exc.user_message)
        text = exc.user_message
        details: dict[str, str] = {}
        if isinstance(exc, QUnavailable) and exc.request_id:
            text = f"{text} (request id {exc.request_id})"
            details["request_id"] = exc.request_id
        return Notice(NoticeKind.ERROR, text, details=details)

    async def _ask_plugin(self, message: IncomingMessage, turn: Turn, policy: ChannelPolicy, *, private: bool) -> Reply:
        """qplugin <name> <request>: the request, asked of that plugin alone (PLUGIN_MODE)."""
        name, _, request = command_arguments(message.text).partition(" ")
        if not name or not request.strip():
            return Notice(NoticeKind.INFO, PLUGIN_USAGE, private=True)
        plugin = await self.plugins.find(message.identity, name)
        asked = dataclasses.replace(message, text=request.strip())
        return await self._answer(asked, turn, policy, private=private, plugin=plugin)

    async def _answer(
        self, message: IncomingMessage, turn: Turn, policy: ChannelPolicy, *, private: bool,
        plugin: PluginInfo | None = None,
    ) -> Reply:
        identity = message.identity
        if not await self._vault.exists(identity):  # cheap; only a linked user sees progress or has files read
            raise NotLinked(detail=f"{identity.key} asked without a link")
        try:
            await turn.show_progress(private=private)
        except Exception as exc:  # the question is still answered; only the progress is lost
            log.warning("could not show progress to %s: %s", identity.key, type(exc).__name__)
        started = time.perf_counter()
        async with self.downloads.turn(identity.key) as allowance:
            # One turn at a time per (user, thread), across processes: each turn's parent is the previous answer,
            # and files are read only once it is this message's turn, so waiting messages hold no file bytes.
            client_token = self._client_token(message)
            async with self._turns.hold(identity.key, message.channel, message.thread, client_token) as lock:
                files, notes = await read_files(message.offered, allowance, turn.download)
                if not message.text.strip() and not message.files and not files:
                    # equivalent mutants: private=None or left out; _handle makes every notice private where
                    # answers are
                    return Notice(NoticeKind.INFO, NOTHING_READABLE, private=private, failed_attachments=notes)
                with_files = dataclasses.replace(message, files=message.files + files)
                # equivalent mutants: without `lock`, the save lets no lock go and `hold` lets it go on leaving
                # the block, a round trip later: the same end state
                answer = await self._chat(with_files, client_token, policy, plugin, lock)
        self._metrics.answer_latency.observe(time.perf_counter() - started)
        if answer.action_review is not None or answer.plugin_auth is not None:
            # An action to review or a plugin to authorize: kept for the asker (only they may act on it).
            # not killed: "XXXX" for no plugin. The name is used only with a plugin authorization, which Q (and the
            # sandbox) asks in PLUGIN_MODE, of a plugin the asker or the channel chose
            answer = await self.plugins.keep(
                message, answer, private=private, plugin=plugin.name if plugin else "", address=turn.address()
            )
        if private:  # the asker may share it in the thread later: keep it (sealed) for a day
            try:
                await self._private_answers.keep(identity, message.channel, message.thread, answer)
            except (RedisError, OSError) as exc:  # Q answered: deliver it, only sharing it later is lost
                log.warning("could not keep the private answer of %s: %s", identity.key, type(exc).__name__)
        return dataclasses.replace(  # (an action to review or a plugin to authorize is the asker's alone)
            answer, failed_attachments=notes + answer.failed_attachments, private=private or answer.private
        )

    async def _chat(
        self,
        message: IncomingMessage,
        client_token: str,
        policy: ChannelPolicy = NO_POLICY,
        plugin: PluginInfo | None = None,
        lock: RedisLock | None = None,
    ) -> Answer:
        identity = message.identity
        with self._stage("credentials", identity.platform):
            credentials = await self._broker.credentials(identity)
        conversation = await self._conversations.begin_turn(identity, message.channel, message.thread, client_token)
        ask = partial(
            self._q.chat, text=message.text, files=message.files,
            attribute_filter=policy.attribute_filter, chat_mode=policy.chat_mode,
            plugin_id=plugin.plugin_id if plugin else None,
        )
        with self._stage("q", identity.platform):
            try:
                answer = await ask(credentials, conversation=conversation, client_token=client_token)
            except CredentialsRejected:
                # Q no longer accepts the cached credentials (revoked, clock skew): mint fresh ones, once.
                await self._broker.forget(identity)
                credentials = await self._broker.credentials(identity)
                answer = await ask(credentials, conversation=conversation, client_token=client_token)
            except ConversationGone:
                # Q forgot the conversation (expired or deleted): start afresh and answer anyway.
                await self._conversations.forget(identity, message.channel, message.thread)
                fresh_token = self._client_token(message, fresh=True)
                # equivalent mutants: fresh = None, pin_turn(None, None), conversation=None below: a pin of None
                # reads back None whoever pinned it first
                fresh = await self._conversations.pin_turn(fresh_token, None)
                answer = await ask(credentials, conversation=fresh, client_token=fresh_token)
        # equivalent mutants: turn=None or left out; `hold` lets the lock go on leaving its block, a round trip
        # later, to the same end state
        try:  # (the Redis client has already retried a few times, with backoff); the turn's lock goes with it
            await self._conversations.save(
                identity, message.channel, message.thread, answer.conversation_id, answer.message_id, turn=lock
            )
        except (RedisError, OSError) as exc:  # Q answered: deliver it, though the thread may lose its context
            log.warning("could not save the conversation of %s: %s", identity.key, type(exc).__name__)
        return answer

    @staticmethod
    def _client_token(message: IncomingMessage, *, fresh: bool = False) -> str:
        """Derived from the platform's message id: a redelivered message maps to the same Q turn."""
        # equivalent mutants: another spelling of 'new' or of '' keeps the two tokens distinct and stable; [:65]
        # of a 64-character digest
        basis = f"{message.identity.key}|{message.channel}|{message.message_id}|{'new' if fresh else ''}"
        return hashlib.sha256(basis.encode()).hexdigest()[:64]

    # -- commands ---------------------------------------------------------------------------------

    async def run_command(self, command: Command, message: IncomingMessage, turn: Turn | None = None) -> Notice:
        identity = message.identity
        if command is Command.LINK:
            return await self._link_command(message, turn or QuietTurn(message))
        if command is Command.UNLINK:
            return await self.accounts.unlink(identity)
        if command is Command.STATUS:
            return await self.accounts.status(identity)
        if command is Command.NEW:
            await self._conversations.forget(identity, message.channel, message.thread)
            return Notice(NoticeKind.INFO, "Started a new conversation. Ask away.")
        if command is Command.PLUGINS:
            return await self.plugins.listing(identity)
        return Notice(NoticeKind.INFO, CONSOLE_HELP_TEXT if turn and turn.signs_in_itself else HELP_TEXT)

    async def _link_command(self, message: IncomingMessage, turn: Turn) -> Notice:
        """qlink: a link checked against the chat profile's email, or a private word on why there is none.
        Where signing in is the link (the web console), there is no link to hand out: it could be forwarded."""
        if turn.signs_in_itself:
            email = await self.accounts.linked_email(message.identity)
            if email is not None:
                text = (
                    f"You're already signed in as {email}; that is your link. "
                    "To use another account, sign out and sign in again."
                )
                return Notice(NoticeKind.INFO, text, private=True)
            return Notice(NoticeKind.NOT_LINKED, SIGN_IN_IS_THE_LINK, private=True)
        profile = ProfileEmail(message.profile_email) if message.profile_email else await turn.profile_email()
        if not profile.email:
            problem = f" ({profile.problem}.)" if profile.problem else ""
            return Notice(NoticeKind.ERROR, f"{ProfileEmailUnknown.user_message}{problem}", private=True)
        return await self.accounts.create_link(message.identity, profile.email)

    # -- sharing ----------------------------------------------------------------------------------

    async def share(self, identity: ChatIdentity, conversation_id: str, message_id: str) -> SharedAnswer | Notice:
        """The asker's private answer, to post in the thread it was asked in ("Share in thread"): once, and only
        by the asker; a private notice otherwise."""
        kept = await self._private_answers.peek(conversation_id, message_id)
        if kept is not None and kept.owner != identity.key:
            return Notice(NoticeKind.REFUSED, "Only the person who asked can share this answer.", private=True)
        # equivalent mutant: (kept or True): where nothing was kept, there is nothing to take either
        taken = await self._private_answers.take(conversation_id, message_id) if kept else None
        if taken is None:
            return Notice(
                NoticeKind.INFO, "This answer was already shared, or is more than a day old: ask again to share it.",
                private=True,
            )
        self._metrics.shares.labels(identity.platform).inc()
        return SharedAnswer(dataclasses.replace(taken.answer, shared_by=identity), taken.channel, taken.thread)

    # -- feedback ---------------------------------------------------------------------------------

    async def feedback(
        self,
        identity: ChatIdentity,
        conversation_id: str,
        message_id: str,
        usefulness: Usefulness,
        *,
        reason: str | None = None,
        comment: str | None = None,
    ) -> Notice:
        """Rate an answer, as `handle` answers a message: a thank-you, or a private notice saying why not.
        Only the identity that owns the conversation may rate it (REFUSED for anyone else); a reason that is not
        Q's or does not fit the rating, or a comment over 1000 characters, is REFUSED with nothing sent."""
        try:
            rated = rating(usefulness, reason, comment)
            if await self._conversations.owner(conversation_id) != identity.key:
                raise NotYourConversation(detail=f"{identity.key} rated conversation {conversation_id}")
            credentials = await self._broker.credentials(identity)
            await self._q.feedback(
                credentials, conversation_id, message_id, usefulness, reason=rated.reason, comment=rated.comment
            )
        except (NotYourConversation, InvalidFeedback) as exc:
            return Notice(NoticeKind.REFUSED, exc.user_message, private=True)
        except (NotLinked, LinkExpired) as exc:
            return Notice(NoticeKind.NOT_LINKED, exc.user_message, private=True)
        except QBotError as exc:
            return dataclasses.replace(self._error_notice(exc), private=True)
        self._metrics.feedback.labels(identity.platform, usefulness.value, rated.reason_label).inc()
        return Notice(NoticeKind.INFO, FEEDBACK_THANKS, private=True)

    # -- plugin actions ---------------------------------------------------------------------------

    async def action_review(self, identity: ChatIdentity, review_id: str) -> ActionReview | Notice:
        """The action `identity` was asked to review, to show as a form: to its asker only (a private notice
        otherwise, or once it was run, cancelled or expired)."""
        return await self.plugins.review(identity, review_id)

    async def submit_action(
        self, identity: ChatIdentity, review_id: str, values: Mapping[str, Any]
    ) -> PlacedReply | Notice:
        """Run a reviewed plugin action with the form's values (see bot.plugins.checked_values), once and by its
        asker only: Q's reply, placed in the thread the action was proposed in; else a private notice saying why
        nothing was run."""
        try:
            placed = await self.plugins.submit(identity, review_id, values)
        except NotLinked as exc:
            return Notice(NoticeKind.NOT_LINKED, exc.user_message, private=True)
        except QBotError as exc:  # not killed by a test: plugins.submit says Q's failures itself; what reaches
            # here is the thread's turn lock not freed within its 150 s wait
            return dataclasses.replace(self._error_notice(exc), private=True)
        if isinstance(placed, PlacedReply):
            self._metrics.messages.labels(identity.platform, "answered").inc()
        return placed

    async def cancel_action(self, identity: ChatIdentity, review_id: str) -> Notice:
        """Drop a proposed action (its asker only): nothing is sent to Q."""
        return await self.plugins.cancel(identity, review_id)
