"""The email of a Slack user's profile (`users.info`, scope `users:read.email`), for the core's email rule."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.model import ProfileEmail

log = logging.getLogger(__name__)

_SCOPE_ERRORS = {"missing_scope", "not_allowed_token_type", "no_permission"}


async def profile_email(client: AsyncWebClient, user: str) -> ProfileEmail:
    """The profile's email, or why it could not be read in words a user can pass on to an administrator."""
    try:
        response = await client.users_info(user=user)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "unknown_error")
        log.warning("users.info for a link failed: %s", error)
        if error in _SCOPE_ERRORS:
            return ProfileEmail(None, "the Slack app lacks the users:read.email scope")
        return ProfileEmail(None, f"Slack answered {error}")
    except Exception as exc:  # Slack unreachable: a connection error or a timeout
        log.warning("users.info for a link failed: %s", type(exc).__name__)
        return ProfileEmail(None, "Slack did not answer")
    profile = (response.get("user") or {}).get("profile") or {}
    email = profile.get("email")
    if isinstance(email, str) and email.strip():
        return ProfileEmail(email.strip())
    return ProfileEmail(None, "your Slack profile shows no email address (the app needs users:read.email)")
