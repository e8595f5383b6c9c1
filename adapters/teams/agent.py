"""One Teams turn: a message, a 👍/👎 click or the bot's arrival, translated for the core and rendered back.

Deciding what to answer is the core's job (`Core.handle`); this class only reads the activity, shows typing
while the core works, and renders the reply where it belongs in Teams:
- answers (Adaptive Cards) in place: the reply chain in channels, the chat elsewhere;
- private answers and notices (the core decides: asked in a channel or group chat that answers privately) in
  place as a targeted message, which only the asker sees; where Teams refuses those (a tenant or conversation
  without them), in the asker's personal chat with a pointer in the thread. The thread never gets their text;
- "Share in thread" on a private answer: the core hands the asker's answer back with where it was asked, and
  it is posted there for everyone, naming who shared it; anyone else's click is refused to them alone;
- one-time links only in the user's personal chat, as a sign-in card; a short pointer where they asked;
- everything else in place, as text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from microsoft_agents.activity import (
    Activity,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    AdaptiveCardInvokeValue,
    Attachment,
    ChannelAccount,
    ConversationAccount,
    ResourceResponse,
    StreamInfo,
)
from microsoft_agents.hosting.core import ActivityHandler, TurnContext
from microsoft_agents.hosting.core.app.streaming import StreamingResponse
from microsoft_agents.hosting.core.connector import ConnectorClientBase

from adapters.ports import Memory
from adapters.teams.activities import (
    PLATFORM,
    Scope,
    TeamsMessage,
    identity_of,
    read_message,
    scope_of,
    tenant_of,
)
from adapters.teams.cards import (
    CARD_CONTENT_TYPE,
    SHARED,
    THANKS,
    Card,
    Feedback,
    Share,
    answer_cards,
    parse_feedback,
    parse_never_mind,
    parse_share,
    parse_why,
    shared,
    sign_in_card,
    thanked,
    why_form,
    with_buttons,
    without_actions,
)
from adapters.teams.files import FileHosts, download
from adapters.teams.plugins import PLUGIN_VERBS, PluginCards, plugin_cards
from adapters.teams.private_chat import PrivateChats
from adapters.teams.roster import profile_email
from bot.attachments import FileRoom
from bot.commands import HELP_TEXT
from bot.core import Core
from bot.model import (
    Answer,
    ChatFile,
    FailedAttachment,
    IncomingMessage,
    Notice,
    NoticeKind,
    OfferedFile,
    ProfileEmail,
    Usefulness,
)
from bot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

TYPING_EVERY_SECONDS = 3.0
INFORMING = "Searching your documents…"  # Teams' informative update in personal chat (at most 1000 characters)
CARD_MEMORY_SECONDS = 24 * 3600  # a rating after a day still counts; only the card is no longer redrawn
NOTHING_SENT = "Nothing was sent."
LINK_SENT = "I sent you a sign-in link in our private chat. Sign in there once, then ask me again here."
ANSWERED_PRIVATELY = "I answered you in our private chat."
OPEN_A_CHAT = (
    "I couldn't message you privately. Open a chat with me (select my name, then Chat, or find me under "
    "Apps), type qlink there, and sign in once."
)
NOT_SHARED = "I couldn't post your answer in the thread. Ask me again there to share it."
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


def _log_refused_update(drained: asyncio.Task[None]) -> None:
    if not drained.cancelled() and drained.exception() is not None:  # the reply goes out as a plain message
        log.info("Teams refused the informative update: %s", type(drained.exception()).__name__)


def _stream_info(activity: Activity) -> StreamInfo | None:
    return next((e for e in activity.entities or () if isinstance(e, StreamInfo)), None)


def notice_text(notice: Notice) -> str:
    lines = [notice.text, *(f"{note.name}: {note.error}" for note in notice.failed_attachments)]
    return "\n".join(lines)


class TeamsTurn:
    """The core's turn port for one Teams message: progress, the roster's email, downloads of the files attached
    in personal chat.

    Progress in personal chat is Teams' informative update ("Searching your documents…", a progress bar above the
    compose box), sent by the Agents SDK's StreamingResponse; the stream it opens is ended by the first message
    of the reply itself (its `streaminfo` entity of type final), so the answer card replaces the progress bar.
    The SDK's own `end_stream` would put a text of its own ("end stream response") above the card, so the reply
    carries the final entity instead. Teams streams only in 1:1 chats: elsewhere, and where the stream is
    refused, progress is typing, renewed every few seconds (Teams drops it) until the turn ends.
    """

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
        self._stream: StreamingResponse | None = None  # the SDK's, once an informative update was queued
        self._stream_id: str | None = None  # Teams' id of the open stream, from its answer to the update
        self._stream_ended = False
        self._informed = asyncio.Event()  # Teams answered the informative update (accepted or refused)

    async def __aenter__(self) -> TeamsTurn:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._typing is not None:
            await cancel_and_wait(self._typing)
        if self._stream is not None:  # Teams answers the update before the reply can end its stream
            await self._update_answered(self._stream)

    async def _update_answered(self, stream: StreamingResponse) -> None:
        """Until Teams has answered the informative update (so the stream's id is known), but not through the
        pause the SDK takes after each streaming send (a second in Teams): a quick answer is not held up."""
        informed = asyncio.create_task(self._informed.wait())
        drained = asyncio.create_task(stream.wait_for_queue())  # ends early if the SDK never sent the update
        drained.add_done_callback(_log_refused_update)
        await asyncio.wait({informed, drained}, return_when=asyncio.FIRST_COMPLETED)
        informed.cancel()

    async def show_progress(self, *, private: bool) -> None:
        if self._typing is not None or self._stream is not None:
            return
        if self._message.scope is Scope.PERSONAL and self._inform():
            return
        await self._type()
        self._typing = asyncio.create_task(self._keep_typing())

    def _inform(self) -> bool:
        """Queue the informative update (False where the SDK knows the conversation cannot stream)."""
        stream = self._context.streaming_response
        if not isinstance(stream, StreamingResponse) or not stream.is_streaming_channel:
            return False
        self._context.on_send_activities(self._through_stream)
        stream.queue_informative_update(INFORMING)
        self._stream = stream
        return True

    async def _through_stream(
        self, context: TurnContext, activities: list[Activity], send: Callable[[], Awaitable[list[ResourceResponse]]]
    ) -> list[ResourceResponse]:
        """Learns the stream's id from Teams' answer to the informative update, and ends the stream with the first
        message sent after it; if Teams refuses that ending (the stream timed out, the user stopped it), the
        message is sent again as a plain one (only when Teams answered with a refusal, so nothing was shown): the
        reply is never lost to its progress bar."""
        if self._stream_id is None:
            try:
                responses = await send()
            finally:
                self._informed.set()
            if responses and responses[0].id and _stream_info(activities[0]) is not None:
                self._stream_id = responses[0].id
            return responses
        first = next((a for a in activities if a.type == ActivityTypes.message), None)
        if first is None or self._stream_ended:
            return await send()
        self._stream_ended = True  # one final only, whatever Teams answers
        plain = list(first.entities or [])
        first.entities = [*plain, StreamInfo(stream_type="final", stream_id=self._stream_id)]
        try:
            return await send()
        except aiohttp.ClientResponseError as exc:
            if not 400 <= exc.status < 500:  # Teams may have shown it: not sent twice
                raise
            log.info("Teams refused the reply as the end of its stream (%s); sending it plainly", exc.status)
            first.entities = plain
            return await send()

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

    def address(self) -> str:
        """The activity itself: replayed through the adapter, it answers a kept question in its own thread."""
        return self._context.activity.model_dump_json(by_alias=True, exclude_none=True)

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
        self.plugin_cards = PluginCards(core)  # a plugin action's form: Run, Cancel
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

    async def deliver(self, context: TurnContext, reply: Answer | Notice) -> None:
        """A reply out of turn (the answer a plugin's authorization held up), in the turn of the activity that
        asked: placed as that message's own reply would have been."""
        message = read_message(context.activity)
        if message is None:
            return
        if isinstance(reply, Answer):
            await self._send_answer(context, message, reply)
        else:
            await self._send_notice(context, message, reply)

    async def _send_answer(self, context: TurnContext, message: TeamsMessage, answer: Answer) -> None:
        """In place; or, when the core made it private, to the asker only (targeted, else the personal chat),
        so documents of the asker stay with the asker until they share them."""
        cards = answer_cards(answer)
        activities = [card_activity(card) for card in [*cards, *plugin_cards(answer)]]  # + an action's form
        # Kept before it is shown: a 👎 clicked the moment the card appears finds it (and asks why).
        await self._remember_card(answer, cards[-1])
        if answer.private and message.scope is not Scope.PERSONAL:
            await self._send_privately(context, message, activities)
        else:
            for activity in activities:
                await context.send_activity(activity)

    async def _remember_card(self, answer: Answer, card: Card) -> None:
        """Teams' click carries no card: keep the last one to redraw it (without buttons) after a click."""
        try:
            await self.memory.put(
                PLATFORM,
                card_key(answer.conversation_id, answer.message_id),
                {"card": without_actions(card)},
                CARD_MEMORY_SECONDS,
            )
        except Exception as exc:  # the answer is out; only the redraw after a click is lost
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

    async def _send_privately(self, context: TurnContext, message: TeamsMessage, activities: list[Activity]) -> None:
        """To the asker only: in place as targeted messages; where Teams refuses them, into the asker's
        personal chat, with a pointer where they asked (or how to open that chat)."""
        if await self._send_targeted(context, message, activities):
            return
        connector = connector_of(context)
        address = await self.chats.open(connector, context.activity, message)
        delivered = address is not None
        for activity in activities:
            if not delivered or address is None:
                break
            delivered = await self.chats.send(connector, address, activity)
        await context.send_activity(text_activity(ANSWERED_PRIVATELY if delivered else OPEN_A_CHAT))

    @staticmethod
    async def _send_targeted(context: TurnContext, message: TeamsMessage, activities: list[Activity]) -> bool:
        """In the thread, shown to the asker alone (Teams tags it "Only you can see this message"); False when
        Teams refuses (targeted messages off for the tenant or the conversation): nothing was shown to others."""
        asker = ChannelAccount(id=message.user.id, name=message.user.name)
        for activity in activities:  # copies: on refusal the originals go to the personal chat untargeted
            targeted = activity.model_copy(deep=True).with_targeted_recipient(asker)
            try:
                await context.send_activity(targeted)
            except Exception as exc:
                log.info("targeted message refused, answering in the personal chat: %s", type(exc).__name__)
                return False
        return True

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
        if invoke_value.action.verb in PLUGIN_VERBS:
            data = invoke_value.action.data if isinstance(invoke_value.action.data, dict) else {}
            return await self.plugin_cards.invoke(turn_context, invoke_value.action.verb, data)
        share = parse_share(invoke_value.action.verb, invoke_value.action.data)
        if share is not None:
            return await self._share(turn_context, share)
        verb, data = invoke_value.action.verb, invoke_value.action.data
        why = parse_why(verb, data)
        if why is not None:  # the 👎 form, sent: its reason and comment go with the rating
            rating = Feedback(why.conversation_id, why.message_id, Usefulness.NOT_USEFUL)
            return await self._rate(turn_context, rating, reason=why.reason, comment=why.comment)
        never_mind = parse_never_mind(verb, data)
        if never_mind is not None:  # the 👎 form, cancelled: the card as it was, nothing sent
            card = await self._remembered_card(never_mind)
            return _card_response(with_buttons(card, never_mind)) if card else _message_response(NOTHING_SENT)
        feedback = parse_feedback(verb, data)
        if feedback is None:
            return _message_response("This button no longer does anything.")
        if feedback.usefulness is Usefulness.NOT_USEFUL:
            card = await self._remembered_card(feedback)
            if card is not None:  # 👎 asks why first, on the card, to the clicker only
                return _card_response(why_form(card, feedback))
            # A card too old to be remembered cannot hold the form: the 👎 counts without a reason.
        return await self._rate(turn_context, feedback)

    async def _remembered_card(self, feedback: Feedback) -> Card | None:
        record = await self.memory.get(PLATFORM, card_key(feedback.conversation_id, feedback.message_id))
        card = record.get("card") if record else None
        return card if isinstance(card, dict) else None

    async def _rate(
        self, turn_context: TurnContext, feedback: Feedback, *, reason: str | None = None, comment: str | None = None
    ) -> AdaptiveCardInvokeResponse:
        """The rating (with why, from the 👎 form); the rated card loses its buttons for everyone in the chat."""
        rated = await self.core.feedback(
            identity_of(turn_context.activity), feedback.conversation_id, feedback.message_id, feedback.usefulness,
            reason=reason, comment=comment,
        )
        if rated.kind is not NoticeKind.INFO:  # not the asker, a bad reason, not linked, Q unavailable: say so
            return _message_response(rated.text)
        remembered = await self._remembered_card(feedback)
        if remembered is None:
            return _message_response(THANKS)
        card = thanked(remembered, feedback)
        card_message_id = turn_context.activity.reply_to_id
        # Everyone in the chat sees the buttons go; a private (targeted) card is the clicker's alone, and the
        # connector cannot edit targeted messages: the invoke response below redraws it for them.
        if card_message_id and not feedback.shareable:
            update = card_activity(card)
            update.id = card_message_id
            try:
                await turn_context.update_activity(update)
            except Exception as exc:
                log.warning("could not update the rated card: %s", type(exc).__name__)
        return AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=card)

    # -- Share in thread -----------------------------------------------------------------------------

    async def _share(self, context: TurnContext, share: Share) -> AdaptiveCardInvokeResponse:
        """Post the clicker's private answer in the thread it was asked in (the core says whose it is and where
        that is: the card's data only names the answer); redraw the clicked card without its buttons."""
        outcome = await self.core.share(identity_of(context.activity), share.conversation_id, share.message_id)
        if isinstance(outcome, Notice):  # not the asker's, already shared, too old: to the clicker only
            return _message_response(outcome.text)
        answer = outcome.answer
        sharer = context.activity.from_property
        cards = answer_cards(answer, shared_by=(sharer.name or "") if sharer else "")
        if not await self._post_in_thread(context, outcome.thread, cards):
            return _message_response(NOT_SHARED)
        private = await self.memory.get(PLATFORM, card_key(answer.conversation_id, answer.message_id))
        await self._remember_card(answer, cards[-1])  # the thread's card is the one rated from now on
        if not private or not isinstance(private.get("card"), dict):
            return _message_response(SHARED)
        return AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=shared(private["card"]))

    @staticmethod
    async def _post_in_thread(context: TurnContext, thread: str, cards: list[Card]) -> bool:
        """Into `thread` (a channel's reply chain `<channel>;messageid=<root>`, or a group chat), for everyone
        there: from the thread itself (a targeted answer) or from the asker's personal chat alike."""
        connector, clicked = connector_of(context), context.activity
        if clicked.recipient is None:
            return False
        for card in cards:
            post = card_activity(card)
            post.conversation = ConversationAccount(id=thread, tenant_id=tenant_of(clicked) or None)
            post.from_property = clicked.recipient
            post.service_url = clicked.service_url
            post.channel_id = clicked.channel_id
            try:
                await connector.conversations.send_to_conversation(thread, post)
            except Exception as exc:
                log.warning("could not post a shared answer in its thread: %s", type(exc).__name__)
                return False
        return True

    # -- arrival ------------------------------------------------------------------------------------

    async def on_members_added_activity(  # type: ignore[override]
        self, members_added: list[ChannelAccount], turn_context: TurnContext
    ) -> None:
        """Installed in someone's personal scope: introduce the bot (channels are not greeted)."""
        bot = turn_context.activity.recipient
        if scope_of(turn_context.activity) is Scope.PERSONAL and any(m.id == bot.id for m in members_added if bot):
            await turn_context.send_activity(text_activity(HELP_TEXT))


def _card_response(card: Card) -> AdaptiveCardInvokeResponse:
    """The clicked card, redrawn for the clicking user."""
    return AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=card)


def _message_response(text: str) -> AdaptiveCardInvokeResponse:
    """Shown to the clicking user only; the card stays as it is."""
    return AdaptiveCardInvokeResponse(status_code=200, type="application/vnd.microsoft.activity.message", value=text)
