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
import dataclasses
import logging
from collections.abc import Callable

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

from adapters.ports import Memory
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
from adapters.teams.files import FileHosts, download
from adapters.teams.private_chat import PrivateChats
from adapters.teams.roster import profile_email
from bot.attachments import FileRoom
from bot.commands import HELP_TEXT
from bot.core import Core
from bot.model import Answer, ChatFile, FailedAttachment, IncomingMessage, Notice, NoticeKind, OfferedFile, ProfileEmail

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


def message_of(message: TeamsMessage) -> IncomingMessage:
    """The neutral message; attachments become offered files (`ref`: the position among readable ones)."""
    offered = tuple(OfferedFile(offer.name, None, None, str(n)) for n, offer in enumerate(message.files))
    offered += tuple(OfferedFile(note.name, None, note.error) for note in message.unreadable_files)
    return IncomingMessage(
        identity=message.identity,
        text=message.text,  # may be empty when files came alone: the core asks about the files
        channel=message.channel,
        thread=message.thread,
        message_id=message.message_id,
        shared=message.scope is not Scope.PERSONAL,
        offered=offered,
    )


def notice_text(notice: Notice) -> str:
    lines = [notice.text, *(f"{note.name}: {note.error}" for note in notice.failed_attachments)]
    return "\n".join(lines)


class TeamsTurn:
    """The core's turn port for one Teams message: typing as progress (renewed every few seconds, since Teams
    drops it, until the turn ends), the roster's email, downloads of the files attached in personal chat."""

    signs_in_itself = False

    def __init__(
        self,
        context: TurnContext,
        message: TeamsMessage,
        http: Callable[[], aiohttp.ClientSession],
        file_hosts: FileHosts,
    ) -> None:
        self._context = context
        self._message = message
        self._http = http
        self._file_hosts = file_hosts
        self._typing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TeamsTurn:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._typing is not None:
            self._typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing

    async def show_progress(self, *, private: bool) -> None:
        if self._typing is None:
            await self._type()
            self._typing = asyncio.create_task(self._keep_typing())

    async def _type(self) -> None:
        try:
            await self._context.send_activity(Activity(type=ActivityTypes.typing))
        except Exception as exc:  # best effort: a lost typing indicator must not lose the answer
            log.debug("typing indicator failed: %s", type(exc).__name__)

    async def _keep_typing(self) -> None:
        while True:
            await asyncio.sleep(TYPING_EVERY_SECONDS)
            await self._type()

    async def profile_email(self) -> ProfileEmail:
        message = self._message
        email = await profile_email(connector_of(self._context), message.roster_id, message.user.id)
        return ProfileEmail(email)

    async def download(self, file: OfferedFile, room: FileRoom) -> ChatFile | FailedAttachment:
        if not file.ref.isdigit() or int(file.ref) >= len(self._message.files):
            return FailedAttachment(file.name, "not read: Teams did not hand it over.")
        return await download(self._http(), self._message.files[int(file.ref)], self._file_hosts, room)


class TeamsAgent(ActivityHandler):
    def __init__(
        self,
        core: Core,
        *,
        memory: Memory,
        http: Callable[[], aiohttp.ClientSession],
        file_hosts: FileHosts,
    ) -> None:
        self.core = core
        self.memory = memory
        self.chats = PrivateChats(memory)
        self._http = http
        self.file_hosts = file_hosts

    # -- messages -----------------------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        message = read_message(turn_context.activity)
        if message is None:
            return
        async with TeamsTurn(turn_context, message, self._http, self.file_hosts) as turn:
            reply = await self.core.handle(message_of(message), turn)
        if reply is None:
            return
        if isinstance(reply, Answer):
            await self._send_answer(turn_context, message, reply)
        else:
            await self._send_notice(turn_context, message, reply)

    async def _send_answer(self, context: TurnContext, message: TeamsMessage, answer: Answer) -> None:
        """In place; or, when the core made it private, to the personal chat (Teams has no messages only one
        member of a channel or group chat sees), so documents of the asker stay with the asker."""
        cards = answer_cards(answer)
        if answer.private and message.scope is not Scope.PERSONAL:
            if not await self._send_privately(context, message, [card_activity(card) for card in cards]):
                return
        else:
            for card in cards:
                await context.send_activity(card_activity(card))
        # Teams' click carries no card: keep the rated one to redraw it (without buttons) after a rating.
        try:
            await self.memory.put(
                PLATFORM,
                card_key(answer.conversation_id, answer.message_id),
                {"card": without_actions(cards[-1])},
                CARD_MEMORY_SECONDS,
            )
        except Exception as exc:  # the answer is out; only the redraw after a rating is lost
            log.warning("could not keep the answer card for its rating: %s", type(exc).__name__)

    async def _send_notice(self, context: TurnContext, message: TeamsMessage, notice: Notice) -> None:
        if notice.kind is NoticeKind.NOT_LINKED:  # the prompt comes with a link to act on at once
            await self._offer_link(context, message, intro=notice.text)
        elif notice.kind is NoticeKind.LINK and notice.url:
            await self._send_link(context, message, notice)
        elif notice.private and message.scope is not Scope.PERSONAL:
            await self._send_privately(context, message, [text_activity(notice_text(notice))])
        else:
            await context.send_activity(text_activity(notice_text(notice)))

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

    async def _offer_link(self, context: TurnContext, message: TeamsMessage, *, intro: str) -> None:
        """Run qlink for an unlinked asker, so the prompt arrives as a sign-in card they can use."""
        qlink = dataclasses.replace(message_of(message), text="qlink", offered=(), delivery_ids=())
        async with TeamsTurn(context, message, self._http, self.file_hosts) as turn:
            link = await self.core.handle(qlink, turn)
        if isinstance(link, Notice) and link.kind is NoticeKind.LINK and link.url:
            await self._send_link(context, message, link, intro=intro)
        elif isinstance(link, Notice):
            await context.send_activity(text_activity(f"{intro}\n\n{notice_text(link)}"))

    async def _send_link(
        self, context: TurnContext, message: TeamsMessage, link: Notice, *, intro: str | None = None
    ) -> None:
        """A one-time link as a sign-in card in the personal chat; never where others can see it."""
        connector = connector_of(context)
        address = await self.chats.open(connector, context.activity, message)
        if address is None or link.url is None:
            await context.send_activity(text_activity(OPEN_A_CHAT))
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
        rated = await self.core.feedback(
            identity_of(turn_context.activity), feedback.conversation_id, feedback.message_id, feedback.usefulness
        )
        if rated.kind is not NoticeKind.INFO:  # not the asker, not linked, Q unavailable: say so to the clicker
            return _message_response(rated.text)
        record = await self.memory.get(PLATFORM, card_key(feedback.conversation_id, feedback.message_id))
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
