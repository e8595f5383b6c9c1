"""👍/👎 under an answer: the core records the rating (PutFeedback) if the clicker is the asker.

👍 is one click. 👎 opens a modal (views.open with the click's trigger_id) asking why, from the core's list of
Q's reasons, with an optional comment; its submission is the rating. The modal's `private_metadata` carries
the answer's ids and a key to what the click knew (where the answer is, its blocks, the click's
`response_url`), which waits in the adapter memory, sealed, for `WAIT_SECONDS`: closing the modal sends
nothing. The core decides who may rate (the owner of the Q conversation); anyone else gets a private note and
nothing changes. After a rating the buttons become "Thanks for the feedback" in place: `chat.update` for a
message in a thread or DM, the click's `response_url` for an ephemeral answer (which `chat.update` can't reach).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.ports import Memory
from adapters.slack.blocks import SlackMessage
from adapters.slack.commands import identity_of
from adapters.slack.events import PLATFORM
from adapters.slack.mrkdwn import commands_as_slash
from adapters.slack.render import FEEDBACK_UP, THANKS, parse_feedback_value, text_message, thanked
from adapters.slack.replies import SlackReplies
from bot.core import Core
from bot.feedback import MAX_COMMENT_CHARS, WHY_NOT_USEFUL
from bot.model import NoticeKind, Usefulness

log = logging.getLogger(__name__)

WHY_VIEW = "qbot_feedback_why"  # the modal's callback_id
REASON_BLOCK, REASON_INPUT = "qbot_reason", "reason"
COMMENT_BLOCK, COMMENT_INPUT = "qbot_comment", "comment"
WAIT_SECONDS = 30 * 60  # a click's response_url works for 30 minutes


def why_modal(conversation_id: str, message_id: str, key: str) -> dict[str, Any]:
    """The 👎 modal: a reason (required) and a comment (optional, at most Q's 1000 characters)."""
    options = [
        {"text": {"type": "plain_text", "text": label}, "value": reason.value} for reason, label in WHY_NOT_USEFUL
    ]
    return {
        "type": "modal",
        "callback_id": WHY_VIEW,
        "private_metadata": json.dumps({"c": conversation_id, "m": message_id, "k": key}, separators=(",", ":")),
        "title": {"type": "plain_text", "text": "Not helpful"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": "What was wrong with the answer?"},
                "element": {"type": "radio_buttons", "action_id": REASON_INPUT, "options": options},
            },
            {
                "type": "input",
                "block_id": COMMENT_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Anything to add?"},
                "element": {
                    "type": "plain_text_input", "action_id": COMMENT_INPUT, "multiline": True,
                    "max_length": MAX_COMMENT_CHARS,
                },
            },
        ],
    }


def _answer_of(view: dict[str, Any]) -> tuple[str, str, str] | None:
    """(conversation id, message id, memory key) from the modal's private_metadata."""
    try:
        meta = json.loads(str(view.get("private_metadata") or ""))
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    ids = meta.get("c"), meta.get("m"), meta.get("k")
    if all(isinstance(part, str) and part for part in ids):
        return str(ids[0]), str(ids[1]), str(ids[2])
    return None


def _submitted(view: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    values = ((view.get("state") or {}).get("values") or {}).get(block) or {}
    value = values.get(action)
    return value if isinstance(value, dict) else {}


class Feedback:
    def __init__(self, core: Core, client: AsyncWebClient, replies: SlackReplies, memory: Memory) -> None:
        self.core = core
        self.client = client
        self.replies = replies
        self.memory = memory

    async def rate(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A 👍 is the rating; a 👎 asks why first."""
        response_url = str(body.get("response_url") or "")
        ids = parse_feedback_value(str(action.get("value") or ""))
        if ids is None:
            log.warning("a feedback click carried no answer ids")
            return
        if action.get("action_id") != FEEDBACK_UP:
            await self._ask_why(body, *ids)
            return
        rated = await self.core.feedback(identity_of(body), *ids, Usefulness.USEFUL)
        if rated.kind is not NoticeKind.INFO:
            await self.replies.respond(response_url, text_message(commands_as_slash(rated.text)))
            return
        await self._thank(_place_of(body), useful=True)

    async def _ask_why(self, body: dict[str, Any], conversation_id: str, message_id: str) -> None:
        key = secrets.token_urlsafe(18)
        await self.memory.put(PLATFORM, f"why:{key}", _place_of(body), WAIT_SECONDS)
        await self.client.views_open(
            trigger_id=str(body.get("trigger_id") or ""), view=why_modal(conversation_id, message_id, key)
        )

    async def explain(self, body: dict[str, Any], view: dict[str, Any]) -> None:
        """The 👎 modal was submitted: rate with its reason and comment, then thank (or say why not) privately."""
        answer = _answer_of(view)
        if answer is None:
            log.warning("a feedback modal came back without its answer ids")
            return
        conversation_id, message_id, key = answer
        reason = _submitted(view, REASON_BLOCK, REASON_INPUT).get("selected_option") or {}
        comment = _submitted(view, COMMENT_BLOCK, COMMENT_INPUT).get("value")
        identity = identity_of(body)
        rated = await self.core.feedback(
            identity, conversation_id, message_id, Usefulness.NOT_USEFUL,
            reason=str(reason.get("value") or ""),  # the modal requires one: none is refused, not sent bare
            comment=comment if isinstance(comment, str) else None,
        )
        place = await self.memory.get(PLATFORM, f"why:{key}") or {}
        if rated.kind is NoticeKind.INFO:
            await self._thank(place, useful=False, user=identity.user)
        else:
            await self._tell(place, identity.user, text_message(commands_as_slash(rated.text)))

    async def _thank(self, place: dict[str, Any], *, useful: bool, user: str = "") -> None:
        blocks = place.get("blocks")
        response_url = str(place.get("response_url") or "")
        if isinstance(blocks, list) and blocks:
            redrawn = SlackMessage(str(place.get("text") or THANKS), thanked(blocks, useful))
            if place.get("ephemeral"):
                await self.replies.respond(response_url, redrawn, replace_original=True)
            else:
                await self.client.chat_update(channel=str(place.get("channel")), ts=str(place.get("ts")),
                                              **redrawn.payload())
            return
        # Slack sent no copy of the message (ephemeral answers): say thanks without touching the answer.
        await self._tell(place, user, text_message(THANKS))

    async def _tell(self, place: dict[str, Any], user: str, message: SlackMessage) -> None:
        """Privately: through the click's response_url, or (once it is gone) in the user's DM."""
        response_url = str(place.get("response_url") or "")
        if response_url:
            await self.replies.respond(response_url, message)
        elif user:
            await self.replies.dm(user, message)


def _place_of(body: dict[str, Any]) -> dict[str, Any]:
    """Where the rated answer is, and its blocks to redraw, as the click tells it."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    blocks = message.get("blocks")
    return {
        "response_url": str(body.get("response_url") or ""),
        "ephemeral": bool(container.get("is_ephemeral")),
        "channel": str(container.get("channel_id") or (body.get("channel") or {}).get("id") or ""),
        "ts": str(container.get("message_ts") or message.get("ts") or ""),
        "text": str(message.get("text") or ""),
        "blocks": blocks if isinstance(blocks, list) else [],
    }
