"""The asker's Teams profile email (for the core's email-match rule), from the Bot Framework member lookup.

`GET v3/conversations/{id}/members/{userId}`: in a channel the conversation is the team; elsewhere the chat.
It yields `email` or, failing that, `userPrincipalName` (an email-shaped sign-in name in Entra tenants).
"""

from __future__ import annotations

import logging
from typing import Any

from microsoft_agents.hosting.core.connector import ConnectorClientBase
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient

log = logging.getLogger(__name__)


async def profile_email(connector: ConnectorClientBase, roster_id: str, user_id: str) -> str | None:
    """The member's email, or None when Teams won't say (the caller tells the user so)."""
    candidates: list[Any]
    try:
        if isinstance(connector, TeamsConnectorClient):
            member = await connector.get_conversation_member(roster_id, user_id)
            candidates = [member.email, member.user_principal_name]
        else:
            account = await connector.conversations.get_conversation_member(roster_id, user_id)
            extra = account.model_extra or {}
            candidates = [extra.get("email"), extra.get("userPrincipalName")]
    except Exception as exc:  # the SDK raises HTTP, validation and value errors alike
        log.warning("Teams member lookup failed: %s", type(exc).__name__)
        return None
    for candidate in candidates:
        if isinstance(candidate, str) and "@" in candidate.strip():
            return candidate.strip()
    return None
