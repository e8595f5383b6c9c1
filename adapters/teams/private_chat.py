"""The user's personal (1:1) chat with the bot: where one-time links go, and private answers and notices
from a channel or group chat where Teams refuses a targeted message there.

In personal scope that is the current chat; from a channel or group chat the bot creates the 1:1 conversation
through the turn's connector (user as the member, tenant in channelData), which Teams allows once the app is
installed for the user. The address is kept (adapter memory) for a day, so the link confirmation ("Linked as
…"), which arrives from the browser outside any Teams turn, can find the chat.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from microsoft_agents.activity import (
    Activity,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
)
from microsoft_agents.hosting.core.connector import ConnectorClientBase

from adapters.ports import Memory
from adapters.teams.activities import PLATFORM, Scope, TeamsMessage
from bot.model import ChatIdentity

log = logging.getLogger(__name__)

ADDRESS_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Address:
    service_url: str
    conversation_id: str
    bot_id: str
    bot_name: str
    user_id: str
    tenant_id: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Address | None:
        try:
            return cls(**{name: str(data[name]) for name in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            return None


def _key(identity: ChatIdentity) -> str:
    return f"personal-chat:{identity.key}"


class PrivateChats:
    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    async def open(self, connector: ConnectorClientBase, activity: Activity, message: TeamsMessage) -> Address | None:
        """The address of the asker's personal chat with the bot, created if need be; None if Teams refuses."""
        bot = activity.recipient
        if bot is None or not bot.id or not activity.service_url or activity.conversation is None:
            return None
        if message.scope is Scope.PERSONAL:
            conversation_id = activity.conversation.id
        else:
            parameters = ConversationParameters.model_validate(
                {
                    "isGroup": False,
                    "bot": {"id": bot.id, "name": bot.name},
                    "members": [{"id": message.user.id}],
                    "channelData": {"tenant": {"id": message.tenant_id}},
                    **({"tenantId": message.tenant_id} if message.tenant_id else {}),
                }
            )
            try:
                created = await connector.conversations.create_conversation(parameters)
            except Exception as exc:  # Teams refuses when the app isn't installed for the user, among others
                log.warning("could not create a personal chat with %s: %s", message.identity.key, type(exc).__name__)
                return None
            if not created.id:
                return None
            conversation_id = created.id
        address = Address(
            service_url=activity.service_url,
            conversation_id=conversation_id,
            bot_id=bot.id,
            bot_name=bot.name or "",
            user_id=message.user.id,
            tenant_id=message.tenant_id,
        )
        await self.memory.put(PLATFORM, _key(message.identity), asdict(address), ADDRESS_SECONDS)
        return address

    async def recall(self, identity: ChatIdentity) -> Address | None:
        record = await self.memory.get(PLATFORM, _key(identity))
        return Address.from_dict(record) if record else None

    @staticmethod
    async def send(connector: ConnectorClientBase, address: Address, activity: Activity) -> bool:
        """Post `activity` into the personal chat; False (logged) if Teams refuses it."""
        activity.conversation = ConversationAccount.model_validate(
            {"id": address.conversation_id, "conversationType": "personal", "tenantId": address.tenant_id or None}
        )
        activity.from_property = ChannelAccount(id=address.bot_id, name=address.bot_name)
        activity.recipient = ChannelAccount(id=address.user_id)
        activity.service_url = address.service_url
        try:
            await connector.conversations.send_to_conversation(address.conversation_id, activity)
        except Exception as exc:
            log.warning("could not post into a personal chat: %s", type(exc).__name__)
            return False
        return True
