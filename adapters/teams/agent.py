"""One Teams turn: a message, a 👍/👎 click or the bot's arrival, translated for the core and rendered back.

Deciding what to answer is the core's job (`Core.handle`); this class only reads the activity, shows typing
while the core works, and renders the reply where it belongs in Teams:
- answers (Adaptive Cards) in place: the reply chain in channels, the chat elsewhere;
- one-time links only in the user's personal chat, as a sign-in card; a short pointer where they asked;
- private notices (qstatus, qunlink) in the personal chat when asked in a channel or group chat;
- everything else in place, as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from microsoft_agents.activity import (
    Activity,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    AdaptiveCardInvokeValue,
    Attachment,
    ChannelAccount,
)
from microsoft_agents.hosting.core import ActivityHandler, TurnContext
from microsoft_agents.hosting.core.connector import ConnectorClientBase

from adapters.teams.activities import PLATFORM, Scope, TeamsMessage, identity_of, read_message, scope_of
from adapters.teams.cards import (
    CARD_CONTENT_TYPE,
    THANKS,
    Card,
    answer_cards,
    parse_feedback,
    sign_in_card,
    thanked,
    without_actions,
)
from adapters.teams.files import FileHosts, fetch_files
from adapters.teams.private_chat import PrivateChats
from adapters.teams.roster import profile_email
from bot.attachments import DownloadBudget
from bot.commands import HELP_TEXT, Command, parse_command
from bot.core import Core
from bot.errors import ProfileEmailUnknown, QBotError
from bot.model import Answer, ChatFile, FailedAttachment, IncomingMessage, Notice, NoticeKind, Reply

log = logging.getLogger(__name__)

TYPING_EVERY_SECONDS = 3.0
CARD_MEMORY_SECONDS = 24 * 3600  # a rating after a day still counts; only the card is no longer redrawn
LINK_SENT = "I sent you a sign-in link in our private chat. Sign in there once, then ask me again here."
ANSWERED_PRIVATELY = "I answered you in our private chat."
OPEN_A_CHAT = (
    "I couldn't message you privately. Open a chat with me (select my name, then Chat, or find me under "
    "Apps), type qlink there, and sign in once."
)
LINKED = "You're linked as {email}. Ask me anything here, or mention me in a channel or group chat."


def text_activity(text: str) -> Activity:
    return Activity(type=ActivityTypes.message, text=text, text_format="plain")


def card_activity(card: Card) -> Activity:
    return Activity(type=ActivityTypes.message, attachments=[Attachment(content_type=CARD_CONTENT_TYPE, content=card)])


def card_key(conversation_id: str, message_id: str) -> str:
    return f"card:{conversation_id}:{message_id}"


def connector_of(context: TurnContext) -> ConnectorClientBase:
    connector = context.turn_state.get("ConnectorClient")
    if not isinstance(connector, ConnectorClientBase):
        raise RuntimeError("the turn has no connector client")
    return connector


@contextlib.asynccontextmanager
async def typing(context: TurnContext) -> AsyncIterator[None]:
    """Typing at once, renewed every few seconds (Teams drops it after a few) until the block ends."""

    async def send() -> None:
        try:
            await context.send_activity(Activity(type=ActivityTypes.typing))
        except Exception as exc:  # best effort: a lost typing indicator must not lose the answer
            log.debug("typing indicator failed: %s", type(exc).__name__)

    async def renew() -> None:
        while True:
            await asyncio.sleep(TYPING_EVERY_SECONDS)
            await send()

    await send()
    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TeamsAgent(ActivityHandler):
    def __init__(
        self,
        core: Core,
        *,
        http: Callable[[], aiohttp.ClientSession],
        downloads: DownloadBudget,
        file_hosts: FileHosts,
    ) -> None:
        self.core = core
        self.chats = PrivateChats(core)
        self._http = http
        self.downloads = downloads
        self.file_hosts = file_hosts

    # -- messages -----------------------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        message = read_message(turn_context.activity)
        if message is None:
            return
        has_files = bool(message.files or message.unreadable_files)
        command = parse_command(message.text, with_files=has_files)
        if command is Command.LINK:
            await self._send_link(turn_context, message)
            return
        async with typing(turn_context):
            reply, notes = await self._ask(message, fetch=command is None)
        if reply is None:  # only unreadable files: say why rather than answer nothing
            await turn_context.send_activity(text_activity("\n".join(f"{n.name}: {n.error}" for n in notes)))
            return
        if isinstance(reply, Answer):
            await self._send_answer(turn_context, message, reply, notes)
        else:
            await self._send_notice(turn_context, message, reply)

    async def _ask(self, message: TeamsMessage, *, fetch: bool) -> tuple[Reply | None, tuple[FailedAttachment, ...]]:
        """The core's reply (None: nothing to ask), with the files read under the download budget; their bytes
        (and the room reserved for them) are let go as soon as the core has answered."""
        async with self.downloads.turn(message.identity.key) as allowance:
            files: tuple[ChatFile, ...] = ()
            notes: tuple[FailedAttachment, ...] = message.unreadable_files
            if fetch and message.files:
                files, fetched_notes = await fetch_files(self._http(), message.files, self.file_hosts, allowance)
                notes += fetched_notes
            if not message.text and not files:
                return None, notes
            reply = await self.core.handle(
                IncomingMessage(
                    identity=message.identity,
                    text=message.text,  # may be empty when files came alone: the core asks about the files
                    channel=message.channel,
                    thread=message.thread,
                    message_id=message.message_id,
                    files=files,
                )
            )
            return reply, notes

    async def _send_answer(
        self, context: TurnContext, message: TeamsMessage, answer: Answer, notes: tuple[FailedAttachment, ...]
    ) -> None:
        """In place; or, with QBOT_CHANNEL_REPLY_MODE=ephemeral, channel and group answers go to the personal
        chat (Teams has no messages only one member sees), so documents of the asker stay with the asker."""
        cards = answer_cards(answer, notes)
        if message.scope is not Scope.PERSONAL and self.core.settings.channel_reply_mode == "ephemeral":
            if not await self._send_privately(context, message, [card_activity(card) for card in cards]):
                return
        else:
            for card in cards:
                await context.send_activity(card_activity(card))
        # Teams' click carries no card: keep the rated one to redraw it (without buttons) after a rating.
        try:
            await self.core.remember(
                PLATFORM,
                card_key(answer.conversation_id, answer.message_id),
                {"card": without_actions(cards[-1])},
                CARD_MEMORY_SECONDS,
            )
        except Exception as exc:  # the answer is out; only the redraw after a rating is lost
            log.warning("could not keep the answer card for its rating: %s", type(exc).__name__)

    async def _send_notice(self, context: TurnContext, message: TeamsMessage, notice: Notice) -> None:
        if notice.kind in (NoticeKind.NOT_LINKED, NoticeKind.LINK):
            await self._send_link(context, message, intro=notice.text if notice.kind is NoticeKind.NOT_LINKED else None)
        elif notice.private and message.scope is not Scope.PERSONAL:
            await self._send_privately(context, message, [text_activity(notice.text)])
        else:
            await context.send_activity(text_activity(notice.text))

    async def _send_privately(self, context: TurnContext, message: TeamsMessage, activities: list[Activity]) -> bool:
        """Into the asker's personal chat, with a pointer where they asked (or how to open that chat)."""
        connector = connector_of(context)
        address = await self.chats.open(connector, context.activity, message)
        delivered = address is not None
        for activity in activities:
            if not delivered or address is None:
                break
            delivered = await self.chats.send(connector, address, activity)
        await context.send_activity(text_activity(ANSWERED_PRIVATELY if delivered else OPEN_A_CHAT))
        return delivered

    async def _send_link(self, context: TurnContext, message: TeamsMessage, *, intro: str | None = None) -> None:
        """A fresh one-time link as a sign-in card in the personal chat; never where others can see it."""
        connector = connector_of(context)
        email = await profile_email(connector, message.roster_id, message.user.id)
        if email is None:  # no link anybody could open: the core refuses those
            await context.send_activity(text_activity(ProfileEmailUnknown.user_message))
            return
        address = await self.chats.open(connector, context.activity, message)
        if address is None:
            await context.send_activity(text_activity(OPEN_A_CHAT))
            return
        link = await self.core.create_link(message.identity, email)
        if not link.url:
            await context.send_activity(text_activity(link.text))
            return
        text = f"{intro}\n\n{link.text}" if intro else link.text
        if not await self.chats.send(connector, address, card_activity(sign_in_card(text, link.url))):
            await context.send_activity(text_activity(OPEN_A_CHAT))
        elif message.scope is not Scope.PERSONAL:
            await context.send_activity(text_activity(LINK_SENT))

    # -- 👍/👎 -----------------------------------------------------------------------------------------

    async def on_adaptive_card_invoke(  # type: ignore[override]
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        feedback = parse_feedback(invoke_value.action.verb, invoke_value.action.data)
        if feedback is None:
            return _message_response("This button no longer does anything.")
        try:
            await self.core.feedback(
                identity_of(turn_context.activity), feedback.conversation_id, feedback.message_id, feedback.usefulness
            )
        except QBotError as exc:  # not the asker, not linked, Q unavailable: say so to the one who clicked
            return _message_response(exc.user_message)
        record = await self.core.recall(PLATFORM, card_key(feedback.conversation_id, feedback.message_id))
        if not record or not isinstance(record.get("card"), dict):
            return _message_response(THANKS)
        card = thanked(record["card"])
        card_message_id = turn_context.activity.reply_to_id
        if card_message_id:  # everyone in the chat sees the buttons go
            update = card_activity(card)
            update.id = card_message_id
            try:
                await turn_context.update_activity(update)
            except Exception as exc:
                log.warning("could not update the rated card: %s", type(exc).__name__)
        return AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=card)

    # -- arrival ------------------------------------------------------------------------------------

    async def on_members_added_activity(  # type: ignore[override]
        self, members_added: list[ChannelAccount], turn_context: TurnContext
    ) -> None:
        """Installed in someone's personal scope: introduce the bot (channels are not greeted)."""
        bot = turn_context.activity.recipient
        if scope_of(turn_context.activity) is Scope.PERSONAL and any(m.id == bot.id for m in members_added if bot):
            await turn_context.send_activity(text_activity(HELP_TEXT))


def _message_response(text: str) -> AdaptiveCardInvokeResponse:
    """Shown to the clicking user only; the card stays as it is."""
    return AdaptiveCardInvokeResponse(status_code=200, type="application/vnd.microsoft.activity.message", value=text)
