"""`POST /web/api/plugin/run` and `POST /web/api/plugin/cancel`: a proposed plugin action's form, sent or dropped.

The page builds the form from the answer's `action_review` (adapters/web/render.py) and sends the review id with
the values as typed (text, a yes/no, a list, a choice's token). This checks only their shape (a JSON object of
strings, numbers, booleans, lists of strings or null, within bounds); the core checks them against the review and
decides the rest (only the asker, once). A refusal is a 4xx with the core's words and nothing sent.
"""

from __future__ import annotations

from typing import Any

from adapters.web.guards import Refused, id_field
from adapters.web.render import render_reply
from bot.core import Core
from bot.model import ChatIdentity, Notice, NoticeKind
from bot.plugins import NOT_YOUR_ACTION

MAX_FIELDS = 100
MAX_ITEMS = 100


def form_values(body: dict[str, Any]) -> dict[str, Any]:
    values = body.get("values")
    if not isinstance(values, dict) or len(values) > MAX_FIELDS:
        raise Refused(400, f"'values' is required: an object of at most {MAX_FIELDS} fields.")
    for key, value in values.items():
        listed = isinstance(value, list) and len(value) <= MAX_ITEMS and all(isinstance(v, str) for v in value)
        if not (value is None or isinstance(value, str | bool | int | float) or listed):
            raise Refused(400, f"The value of {key!r} must be text, a number, true or false, a list of text, or "
                          "null.")
    return values


def _refused(notice: Notice) -> Refused:
    if notice.kind is NoticeKind.NOT_LINKED:
        return Refused(401, notice.text, kind="not_linked")
    if notice.kind is NoticeKind.ERROR:
        return Refused(503, notice.text)
    if notice.kind is NoticeKind.REFUSED:
        return Refused(403 if notice.text == NOT_YOUR_ACTION else 400, notice.text)
    return Refused(409, notice.text)  # already run, cancelled or expired; the thread moved on


async def run_action(core: Core, identity: ChatIdentity, body: dict[str, Any]) -> dict[str, Any]:
    """Q's reply to the action, as the page renders answers."""
    outcome = await core.submit_action(identity, id_field(body, "review_id"), form_values(body))
    if isinstance(outcome, Notice):
        raise _refused(outcome)
    return render_reply(outcome.reply)


async def cancel_action(core: Core, identity: ChatIdentity, body: dict[str, Any]) -> dict[str, Any]:
    notice = await core.cancel_action(identity, id_field(body, "review_id"))
    if notice.kind is not NoticeKind.INFO:
        raise _refused(notice)
    return {"type": "info", "text": notice.text}
