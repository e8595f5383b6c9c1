"""Amazon Q Business plugins in chat: actions the asker reviews and runs, plugins the asker authorizes, and the
`qplugins` / `qplugin <name> <request>` commands.

Guarantees:
- A proposed action (Q's actionReview) is kept sealed in Redis under a random id for `REVIEW_SECONDS`, with its
  asker and the thread it was asked in. Only the asker may open, run or cancel it; it runs at most once (taken
  with GETDEL before ChatSync, whose clientToken comes from the review id, so a retried call is one Q turn).
- Submitted values are checked against the review's fields first (required, allowed values, types, no unknown
  fields): a refusal names what to fix, sends nothing, and leaves the review open for a corrected submit.
- A plugin's OAuth consent (Q's authChallengeRequest) is a one-time challenge, sealed for the link lifetime,
  opened through the bot's own start URL (which binds the browser with a cookie) and finished once by the
  callback: the state Q's URL carried must come back, then authChallengeResponse is sent as the asker and the
  request the challenge held up is answered in its thread, through the platform's listener.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

from redis.asyncio import Redis

from bot.broker import CredentialBroker
from bot.cipher import CipherError, TokenCipher
from bot.conversations import Conversations
from bot.errors import NotLinked, QBotError
from bot.model import (
    ActionField,
    ActionReview,
    Answer,
    AwsCredentials,
    ChatIdentity,
    ConversationRef,
    FieldChoice,
    FieldType,
    IncomingMessage,
    Notice,
    NoticeKind,
    PlacedReply,
    PluginAuth,
    PluginInfo,
)
from bot.qbusiness import CredentialsRejected, QBusinessClient
from bot.turn_lock import TurnLock

log = logging.getLogger(__name__)

REVIEW_PREFIX = "qbot:plugin-review:"
CHALLENGE_PREFIX = "qbot:plugin-auth:"
REVIEW_SECONDS = 3600
START_PATH = "/auth/plugin/start"
CALLBACK_PATH = "/auth/plugin/callback"
MAX_RESPONSE_ENTRIES = 20  # what an OAuth redirect carries back: code, state and a few more
MAX_TEXT_VALUE = 4000

NOTHING_RUN = "Nothing was run."
REVIEW_GONE = (
    "This action was already run or cancelled, or is more than an hour old, so nothing was run. "
    "Ask again for a new one."
)
NOT_YOUR_ACTION = "Only the person who asked can run or cancel this action."
THREAD_MOVED_ON = (
    "This conversation has moved on since the action was proposed, so nothing was run. Ask again for a new one."
)
AUTH_GONE = "This authorization was already finished or has expired. Ask your question again for a new one."
AUTH_MISMATCH = "This authorization does not match the one you were asked for, so nothing was done."
AUTH_DECLINED = "The plugin was not authorized, so your question was not answered."
NO_PLUGINS = "This Amazon Q Business application has no plugins."
PLUGIN_USAGE = "Say which plugin and what to ask it: qplugin <name> <request> (qplugins lists the plugins)."

PluginListener = Callable[[PlacedReply], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True)
class Authorization:
    """How a plugin consent ended, for the browser's page (the answer itself goes to the chat)."""

    authorized: bool
    text: str


class ActionRefused(QBotError):
    """Submitted values that do not fit the review: the user's message says which and why."""


class UnknownPlugin(QBotError):
    pass


# -- the values a form submits, checked against the review ---------------------------------------------------


def checked_values(review: ActionReview, submitted: Mapping[str, Any]) -> dict[str, Any]:
    """The payload to run (field -> Q's JSON value), from what a form submitted: text for text and numbers,
    a bool (or yes/no) for a yes/no field, lists for arrays, a choice's token for a field with allowed values.
    An empty optional field is left out. Raises ActionRefused naming every problem."""
    values, problems = field_problems(review, submitted)
    if problems:
        named = [f"{label} {problem}" for label, problem in problems.values()]
        raise ActionRefused(f"Nothing was run: {'; '.join(named)}. Fix it and submit again.")
    return values


def field_problems(
    review: ActionReview, submitted: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """(the values that fit, {field key: (its label, what is wrong)}); an unknown field is keyed "" (a form
    only shows problems of its own fields, so those say so in one line)."""
    known = {field.key for field in review.fields}
    problems: dict[str, tuple[str, str]] = {}
    if any(key not in known for key in submitted):
        problems[""] = ("The form", "has a field this action does not have")
    values: dict[str, Any] = {}
    for field in review.fields:
        try:
            value = _value(field, submitted.get(field.key))
        except ValueError as exc:
            problems[field.key] = (field.label, str(exc))
            continue
        if value is None:
            if field.required:
                problems[field.key] = (field.label, "is required")
            continue
        values[field.key] = value
    return values, problems


def _value(field: ActionField, raw: Any) -> Any:
    """One field's submitted value as Q's JSON value; None when left empty."""
    if isinstance(raw, str):
        raw = raw.strip()
        if len(raw) > MAX_TEXT_VALUE:
            raise ValueError(f"is longer than {MAX_TEXT_VALUE} characters")
    if raw is None or raw == "" or raw == []:
        return None
    if field.choices:
        return _chosen(field, raw)
    if field.type is FieldType.NUMBER:
        return _number(raw)
    if field.type is FieldType.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "yes", "false", "no"):
            return raw.lower() in ("true", "yes")
        raise ValueError("must be yes or no")
    if field.type is FieldType.ARRAY:
        items = raw.replace("\n", ",").split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError("must be a list of text")
        return [item.strip() for item in items if item.strip()] or None
    if not isinstance(raw, str):
        raise ValueError("must be text")
    return raw


def _chosen(field: ActionField, raw: Any) -> Any:
    by_token: dict[str, FieldChoice] = {choice.token: choice for choice in field.choices}
    tokens = raw if isinstance(raw, list) else [raw]
    if len(tokens) > 1 and field.type is not FieldType.ARRAY:
        raise ValueError("takes one value")
    if not all(isinstance(token, str) and token in by_token for token in tokens):
        raise ValueError("must be one of " + ", ".join(choice.label for choice in field.choices))
    chosen = [by_token[token].value for token in tokens]
    return chosen if field.type is FieldType.ARRAY else chosen[0]


def _number(raw: Any) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("must be a number")
    try:
        number = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(number):
        raise ValueError("must be a number")
    return int(number) if number.is_integer() and "." not in str(raw) else number


# -- sealed, one-time records ----------------------------------------------------------------------------------


class _OneTime:
    """Records sealed to their random id's key, handed out whole once (GETDEL), expiring on their own."""

    def __init__(self, redis: Redis, cipher: TokenCipher, prefix: str) -> None:
        self._redis = redis
        self._cipher = cipher
        self._prefix = prefix

    def _key(self, record_id: str) -> str:
        return self._prefix + hashlib.sha256(record_id.encode()).hexdigest()[:40]

    async def put(self, data: dict[str, Any], seconds: int) -> str:
        record_id = secrets.token_urlsafe(18)
        key = self._key(record_id)
        await self._redis.set(key, self._cipher.seal(key, data), ex=seconds)
        return record_id

    async def peek(self, record_id: str) -> dict[str, Any] | None:
        key = self._key(record_id)
        return self._open(key, await self._redis.get(key)) if record_id else None

    async def take(self, record_id: str) -> dict[str, Any] | None:
        key = self._key(record_id)
        return self._open(key, await self._redis.getdel(key)) if record_id else None

    def _open(self, key: str, blob: bytes | str | None) -> dict[str, Any] | None:
        if blob is None:
            return None
        try:  # sealed to its key: a blob copied under another id does not open
            return self._cipher.open(key, blob)
        except CipherError:
            return None


def _review_to_dict(review: ActionReview) -> dict[str, Any]:
    return {
        "p": review.plugin_id, "y": review.plugin_type, "s": review.separator,
        "f": [
            [f.key, f.label, f.type.value, f.required, f.value, f.description,
             [[c.token, c.value, c.label] for c in f.choices], f.allowed_format]
            for f in review.fields
        ],
    }


def _review_from_dict(data: dict[str, Any], review_id: str) -> ActionReview:
    fields = tuple(
        ActionField(str(key), str(label), FieldType(kind), bool(required), value, str(description),
                    tuple(FieldChoice(str(token), choice, str(text)) for token, choice, text in choices), str(fmt))
        for key, label, kind, required, value, description, choices, fmt in data["f"]
    )
    return ActionReview(str(data["p"]), str(data["y"]), fields, str(data["s"]), review_id)


def _identity_of(data: dict[str, Any]) -> ChatIdentity:
    platform, tenant, user = (str(part) for part in data["i"])
    return ChatIdentity(platform, tenant, user)


def _placed(data: dict[str, Any], reply: Answer | Notice) -> PlacedReply:
    return PlacedReply(
        reply, _identity_of(data), str(data["c"]), str(data["t"]), bool(data["sh"]), str(data.get("a") or "")
    )


class Plugins:
    """Plugin actions, plugin sign-in and the plugin commands, as the asking identity's linked user."""

    def __init__(
        self,
        redis: Redis,
        cipher: TokenCipher,
        *,
        q: QBusinessClient,
        broker: CredentialBroker,
        conversations: Conversations,
        turns: TurnLock,
        public_url: str,
        auth_seconds: int,
    ) -> None:
        self._reviews = _OneTime(redis, cipher, REVIEW_PREFIX)
        self._challenges = _OneTime(redis, cipher, CHALLENGE_PREFIX)
        self._q = q
        self._broker = broker
        self._conversations = conversations
        self._turns = turns
        self._public_url = public_url.rstrip("/")
        self._auth_seconds = auth_seconds
        self._listeners: dict[str, PluginListener] = {}

    def on_reply(self, platform: str, listener: PluginListener) -> None:
        """Where a reply that arrives out of turn (a plugin authorized in the browser) is delivered."""
        self._listeners[platform] = listener

    # -- commands ---------------------------------------------------------------------------------------------

    async def listing(self, identity: ChatIdentity) -> Notice:
        """qplugins: the application's plugins, as the asker sees them."""
        plugins = await self._as(identity, self._q.list_plugins)
        if not plugins:
            return Notice(NoticeKind.INFO, NO_PLUGINS, private=True)
        lines = [
            f"• {plugin.name} ({plugin.type.replace('_', ' ').title()}){'' if plugin.enabled else ' — disabled'}"
            for plugin in sorted(plugins, key=lambda p: p.name.lower())
        ]
        text = "Plugins you can ask with qplugin <name> <request>:\n" + "\n".join(lines)
        return Notice(NoticeKind.INFO, text, private=True)

    async def find(self, identity: ChatIdentity, name: str) -> PluginInfo:
        """The enabled plugin called `name` (any case) or with that id; UnknownPlugin says which ones there are."""
        plugins = await self._as(identity, self._q.list_plugins)
        for plugin in plugins:
            if name.lower() in (plugin.name.lower(), plugin.plugin_id) and plugin.enabled:
                return plugin
        names = ", ".join(sorted(p.name for p in plugins if p.enabled)) or "none"
        raise UnknownPlugin(f"There is no plugin called {name!r} here (plugins: {names}).")

    # -- an answer that proposes an action or asks for consent -------------------------------------------------

    async def keep(
        self, message: IncomingMessage, answer: Answer, *, private: bool, plugin: str = "", address: str = ""
    ) -> Answer:
        """Keep what the answer asks of its asker (a review, a consent) and hand back the answer carrying the
        handles adapters render (the review id, the authorization's start URL). `address`: the adapter's note of
        where to answer out of turn (Turn.address), kept with it."""
        place = {
            "i": [message.identity.platform, message.identity.tenant, message.identity.user],
            "c": message.channel, "t": message.thread, "sh": message.shared, "pr": private,
            "ci": answer.conversation_id, "mi": answer.message_id, "a": address,
        }
        if answer.action_review is not None:
            review_id = await self._reviews.put({**place, "r": _review_to_dict(answer.action_review)}, REVIEW_SECONDS)
            answer = dataclasses.replace(
                answer, action_review=dataclasses.replace(answer.action_review, review_id=review_id)
            )
        if answer.plugin_auth is not None:
            auth = answer.plugin_auth
            challenge_id = await self._challenges.put(
                {**place, "u": auth.authorization_url, "n": plugin, "q": message.text}, self._auth_seconds
            )
            start = f"{self._public_url}{START_PATH}?{urlencode({'c': challenge_id})}"
            answer = dataclasses.replace(answer, plugin_auth=PluginAuth(auth.authorization_url, plugin, start))
        if answer.action_review is not None or answer.plugin_auth is not None:
            answer = dataclasses.replace(answer, private=True)  # its buttons are the asker's: nobody else's to see
        return answer

    # -- actions ----------------------------------------------------------------------------------------------

    async def review(self, identity: ChatIdentity, review_id: str) -> ActionReview | Notice:
        """The kept review, to show as a form: only to its asker."""
        kept = await self._reviews.peek(review_id)
        if kept is None:
            return Notice(NoticeKind.INFO, REVIEW_GONE, private=True)
        if _identity_of(kept) != identity:
            return Notice(NoticeKind.REFUSED, NOT_YOUR_ACTION, private=True)
        return _review_from_dict(kept["r"], review_id)

    async def submit(
        self, identity: ChatIdentity, review_id: str, submitted: Mapping[str, Any]
    ) -> PlacedReply | Notice:
        """Run the reviewed action with the asker's values, once: Q's reply goes to the thread it was asked in
        (private where the review was). A private notice, with nothing sent, when the values do not fit, the
        clicker is not the asker, the review is gone, or the thread has moved on."""
        kept = await self._reviews.peek(review_id)
        if kept is None:
            return Notice(NoticeKind.INFO, REVIEW_GONE, private=True)
        if _identity_of(kept) != identity:
            return Notice(NoticeKind.REFUSED, NOT_YOUR_ACTION, private=True)
        review = _review_from_dict(kept["r"], review_id)
        try:
            values = checked_values(review, submitted)
        except ActionRefused as exc:
            return Notice(NoticeKind.REFUSED, exc.user_message, private=True)
        channel, thread = str(kept["c"]), str(kept["t"])
        async with self._turns.hold(identity.key, channel, thread):
            if await self._reviews.take(review_id) is None:  # a double click: the other one runs it
                return Notice(NoticeKind.INFO, REVIEW_GONE, private=True)
            reviewed = ConversationRef(str(kept["ci"]), str(kept["mi"]))
            if await self._conversations.get(identity, channel, thread) != reviewed:
                return Notice(NoticeKind.INFO, THREAD_MOVED_ON, private=True)
            token = hashlib.sha256(f"action|{review_id}".encode()).hexdigest()
            try:
                answer = await self._as(
                    identity, lambda credentials: self._q.execute_action(credentials, reviewed, review, values, token)
                )
            except NotLinked:
                raise  # the core asks them to link
            except QBotError as exc:
                log.warning("a plugin action of %s failed: %s", identity.key, exc.detail or exc.user_message)
                return Notice(NoticeKind.ERROR, f"Amazon Q could not run the action: {exc.user_message}", private=True)
            return await self._answered(kept, answer)

    async def cancel(self, identity: ChatIdentity, review_id: str) -> Notice:
        """Drop the review (its asker only): nothing is sent to Q."""
        kept = await self._reviews.peek(review_id)
        if kept is not None and _identity_of(kept) != identity:
            return Notice(NoticeKind.REFUSED, NOT_YOUR_ACTION, private=True)
        await self._reviews.take(review_id)
        return Notice(NoticeKind.INFO, NOTHING_RUN, private=True)

    # -- plugin sign-in ----------------------------------------------------------------------------------------

    async def authorization_url(self, challenge_id: str) -> tuple[str, str]:
        """(the plugin's consent URL, its state) for the start route; QBotError when the challenge is gone."""
        kept = await self._challenges.peek(challenge_id)
        if kept is None:
            raise QBotError(AUTH_GONE, detail="plugin authorization start without a live challenge")
        url = str(kept["u"])
        return url, _state_of(url)

    async def authorized(self, challenge_id: str, returned: Mapping[str, str]) -> Authorization:
        """The consent came back (the callback's query): finish it once as the asker, deliver the answer to the
        request it held up in its thread, and say on the page how it went."""
        kept = await self._challenges.take(challenge_id)
        if kept is None:
            return Authorization(False, AUTH_GONE)
        expected = _state_of(str(kept["u"]))
        if expected and returned.get("state") != expected:
            log.warning("a plugin authorization came back with another state; dropped")
            return Authorization(False, AUTH_MISMATCH)
        identity = _identity_of(kept)
        if "error" in returned or not returned.get("code"):
            await self._deliver(_placed(kept, Notice(NoticeKind.INFO, AUTH_DECLINED, private=bool(kept["pr"]))))
            return Authorization(False, AUTH_DECLINED)
        response_map = {
            key[:100]: value[:2048] for key, value in list(returned.items())[:MAX_RESPONSE_ENTRIES] if key and value
        }
        channel, thread = str(kept["c"]), str(kept["t"])
        token = hashlib.sha256(f"auth|{challenge_id}".encode()).hexdigest()
        conversation = ConversationRef(str(kept["ci"]), str(kept["mi"]))
        try:
            async with self._turns.hold(identity.key, channel, thread):
                current = await self._conversations.get(identity, channel, thread)
                if current is not None and current.conversation_id == conversation.conversation_id:
                    conversation = current  # asked more meanwhile: Q continues from the thread's latest answer
                answer = await self._as(
                    identity,
                    lambda credentials: self._q.answer_auth_challenge(credentials, conversation, response_map, token),
                )
                placed = await self._answered(kept, answer)
        except QBotError as exc:
            log.warning("a plugin authorization of %s failed: %s", identity.key, exc.detail or exc.user_message)
            await self._deliver(_placed(kept, Notice(NoticeKind.ERROR, exc.user_message, private=bool(kept["pr"]))))
            return Authorization(False, exc.user_message)
        name = str(kept["n"]) or "The plugin"
        if not await self._deliver(placed):
            return Authorization(True, f"{name} is authorized. Go back and ask your question again.")
        return Authorization(True, f"{name} is authorized. Your answer is in the chat; you can close this page.")

    # -- shared steps ------------------------------------------------------------------------------------------

    async def _answered(self, kept: dict[str, Any], answer: Answer) -> PlacedReply:
        """Q's reply in the kept thread: the thread continues from it, and what it asks for in turn is kept."""
        identity = _identity_of(kept)
        channel, thread = str(kept["c"]), str(kept["t"])
        await self._conversations.save(identity, channel, thread, answer.conversation_id, answer.message_id)
        asked = IncomingMessage(identity, str(kept.get("q") or ""), channel, thread, "", shared=bool(kept["sh"]))
        answer = await self.keep(
            asked, answer, private=bool(kept["pr"]), plugin=str(kept.get("n") or ""), address=str(kept.get("a") or "")
        )
        return _placed(kept, dataclasses.replace(answer, private=bool(kept["pr"]) or answer.private))

    async def _deliver(self, placed: PlacedReply) -> bool:
        """False where the platform takes no reply out of turn (the web console answers requests only)."""
        listener = self._listeners.get(placed.identity.platform)
        if listener is None:
            log.info("no %s listener for a plugin reply: the user asks again", placed.identity.platform)
            return False
        await listener(placed)
        return True

    async def _as(self, identity: ChatIdentity, call: Callable[[AwsCredentials], Awaitable[T]]) -> T:
        credentials = await self._broker.credentials(identity)
        try:
            return await call(credentials)
        except CredentialsRejected:  # revoked or skewed: fresh credentials, once
            await self._broker.forget(identity)
            return await call(await self._broker.credentials(identity))


def _state_of(url: str) -> str:
    return (parse_qs(urlsplit(url).query).get("state") or [""])[0]
