"""Plugin actions in Slack: "Review and run" opens a modal built from the action's fields; its submission runs
the action (core.submit_action), Cancel or closing the modal runs nothing. Replies that arrive out of turn (the
answer a plugin authorization held up) are delivered here too.

The core decides everything (only the asker, once, values checked against the review); this module turns the
review into Block Kit inputs and their state back into values. A submission whose values do not fit is answered
with the modal's own field errors (`response_action: errors`), so nothing is sent and the user fixes it in place;
the core checks again anyway. The modal's `private_metadata` carries the review id and the click's
`response_url`, through which the clicker is told privately what happened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import Block, truncate
from adapters.slack.commands import identity_of
from adapters.slack.events import PLATFORM, Place
from adapters.slack.mrkdwn import commands_as_slash, escape
from adapters.slack.render import PLUGIN_CANCEL_BUTTON, PLUGIN_REVIEW_BUTTON, render_notice, text_message
from adapters.slack.replies import SlackReplies
from bot.core import Core
from bot.model import ActionField, ActionReview, FieldType, Notice, NoticeKind, PlacedReply
from bot.plugins import field_problems

log = logging.getLogger(__name__)

ACTION_VIEW = "qbot_plugin_action"  # the modal's callback_id
FIELD_INPUT = "value"
MAX_OPTIONS = 100  # a static select's options
TEXT_LIMIT = 3000  # a plain_text_input's longest value

Spawn = Callable[..., None]
Once = Callable[[str | None, Coroutine[Any, Any, None]], Coroutine[Any, Any, None]]


def field_block_id(index: int) -> str:
    return f"qbot_field_{index}"


def _plain(text: str, limit: int) -> dict[str, str]:
    return {"type": "plain_text", "text": truncate(text, limit) or " "}


def _element(field: ActionField) -> dict[str, Any]:
    """The Block Kit input for one field, showing Q's current value."""
    if field.choices:
        options = [{"text": _plain(c.label, 75), "value": c.token} for c in field.choices[:MAX_OPTIONS]]
        current = field.value if isinstance(field.value, list) else [field.value]
        initial = [o for o, c in zip(options, field.choices, strict=False) if c.value in current]
        if field.type is FieldType.ARRAY:
            element: dict[str, Any] = {"type": "multi_static_select", "options": options}
            if initial:
                element["initial_options"] = initial
        else:
            element = {"type": "static_select", "options": options}
            if initial:
                element["initial_option"] = initial[0]
        return element
    if field.type is FieldType.BOOLEAN:
        yes = {"text": _plain("Yes", 75), "value": "true"}
        return {"type": "checkboxes", "options": [yes], **({"initial_options": [yes]} if field.value is True else {})}
    if field.type is FieldType.NUMBER:
        element = {"type": "number_input", "is_decimal_allowed": True}
        if isinstance(field.value, int | float) and not isinstance(field.value, bool):
            element["initial_value"] = str(field.value)
        return element
    element = {"type": "plain_text_input", "max_length": TEXT_LIMIT}
    value = field.value
    if field.type is FieldType.ARRAY:
        element["multiline"] = True
        value = "\n".join(str(item) for item in value) if isinstance(value, list) else value
    if isinstance(value, str) and value:
        element["initial_value"] = value[:TEXT_LIMIT]
        element["multiline"] = element.get("multiline", False) or len(value) > 80
    return element


def action_modal(review: ActionReview, response_url: str) -> dict[str, Any]:
    """The review as a modal: one input per field in Q's display order, required ones required (a yes/no field
    is always answerable: unticked is "no")."""
    blocks: list[Block] = []
    kind = review.plugin_type.replace("_", " ").title() or "plugin"
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escape(
        f"Amazon Q will run this {kind} action as you when you press Run. Check and edit the fields first."
    )}})
    for index, field in enumerate(review.fields[:90]):
        hint = " ".join(part for part in (field.description, f"Format: {field.allowed_format}"
                                          if field.allowed_format else "",
                                          "One per line." if field.type is FieldType.ARRAY and not field.choices
                                          else "") if part)
        block: dict[str, Any] = {
            "type": "input", "block_id": field_block_id(index), "label": _plain(field.label, 2000),
            "optional": not field.required or field.type is FieldType.BOOLEAN,
            "element": {**_element(field), "action_id": FIELD_INPUT},
        }
        if hint:
            block["hint"] = _plain(hint, 2000)
        blocks.append(block)
    return {
        "type": "modal",
        "callback_id": ACTION_VIEW,
        "private_metadata": json.dumps({"r": review.review_id, "u": response_url}, separators=(",", ":")),
        "title": _plain("Review and run", 24),
        "submit": _plain("Run", 24),
        "close": _plain("Cancel", 24),
        "notify_on_close": True,
        "blocks": blocks,
    }


def submitted_values(review: ActionReview, view: dict[str, Any]) -> dict[str, Any]:
    """The modal's state as the core's form values (see bot.plugins.checked_values)."""
    state = (view.get("state") or {}).get("values") or {}
    values: dict[str, Any] = {}
    for index, field in enumerate(review.fields):
        entry = (state.get(field_block_id(index)) or {}).get(FIELD_INPUT) or {}
        kind = entry.get("type")
        if kind == "checkboxes":
            values[field.key] = bool(entry.get("selected_options"))
        elif kind == "multi_static_select":
            values[field.key] = [str(o.get("value")) for o in entry.get("selected_options") or []]
        elif kind == "static_select":
            values[field.key] = (entry.get("selected_option") or {}).get("value")
        elif field.type is FieldType.ARRAY and isinstance(entry.get("value"), str):
            values[field.key] = [line for line in entry["value"].splitlines()]
        else:
            values[field.key] = entry.get("value")
    return values


def _meta(view: dict[str, Any]) -> tuple[str, str]:
    """(review id, response_url) from the modal's private_metadata."""
    try:
        meta = json.loads(str(view.get("private_metadata") or ""))
    except ValueError:
        return "", ""
    if not isinstance(meta, dict):
        return "", ""
    return str(meta.get("r") or ""), str(meta.get("u") or "")


class PluginActions:
    def __init__(self, core: Core, client: AsyncWebClient, replies: SlackReplies) -> None:
        self.core = core
        self.client = client
        self.replies = replies

    def register(self, bolt: AsyncApp, spawn: Spawn, once: Once) -> None:
        """The listeners (before the adapter's catch-all); each acknowledges at once, as Slack wants."""

        async def review(ack: Callable[[], Awaitable[Any]], body: dict[str, Any], action: dict[str, Any]) -> None:
            await ack()
            # views.open needs the click's trigger_id within 3 seconds: this waits for no turn.
            spawn(once(_trigger(body), self.open(body, action)), "plugin review", body.get("response_url"),
                  queued=False)

        async def cancel(ack: Callable[[], Awaitable[Any]], body: dict[str, Any], action: dict[str, Any]) -> None:
            await ack()
            spawn(once(_trigger(body), self._cancel(body, str(action.get("value") or ""), _response_url(body))),
                  "plugin cancel", body.get("response_url"))

        async def submit(ack: Callable[..., Awaitable[Any]], body: dict[str, Any], view: dict[str, Any]) -> None:
            errors = await self.form_errors(body, view)
            if errors:
                await ack(response_action="errors", errors=errors)  # the modal stays open: nothing was sent
                return
            await ack()
            view_id = view.get("id")
            delivery = f"view:{view_id}:{identity_of(body).user}" if view_id else None  # a redelivery: same both
            spawn(once(delivery, self.submit(body, view)), "plugin action")

        async def closed(ack: Callable[[], Awaitable[Any]], body: dict[str, Any], view: dict[str, Any]) -> None:
            await ack()
            review_id, response_url = _meta(view)
            spawn(self._cancel(body, review_id, response_url), "plugin cancel")

        bolt.action(PLUGIN_REVIEW_BUTTON)(review)
        bolt.action(PLUGIN_CANCEL_BUTTON)(cancel)
        bolt.view(ACTION_VIEW)(submit)
        bolt.view_closed(ACTION_VIEW)(closed)
        self.core.plugins.on_reply(PLATFORM, self.deliver)

    async def open(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        """"Review and run": the form, to the asker only (anyone else is told privately, and sees no form)."""
        review = await self.core.action_review(identity_of(body), str(action.get("value") or ""))
        if isinstance(review, Notice):
            await self._tell(_response_url(body), review)
            return
        await self.client.views_open(
            trigger_id=str(body.get("trigger_id") or ""), view=action_modal(review, _response_url(body))
        )

    async def form_errors(self, body: dict[str, Any], view: dict[str, Any]) -> dict[str, str]:
        """The modal's field errors, by block id: values that do not fit the review (nothing is sent then)."""
        review_id, _url = _meta(view)
        review = await self.core.action_review(identity_of(body), review_id)
        if isinstance(review, Notice):
            return {}  # the submission is refused with a private word (core.submit_action says why)
        _values, problems = field_problems(review, submitted_values(review, view))
        blocks = {field.key: field_block_id(index) for index, field in enumerate(review.fields)}
        return {blocks[key]: f"{label} {problem}." for key, (label, problem) in problems.items() if key in blocks}

    async def submit(self, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Run the action as the submitter (the core refuses anyone but the asker); its result goes where the
        action was proposed, a refusal to the submitter privately."""
        review_id, response_url = _meta(view)
        identity = identity_of(body)
        review = await self.core.action_review(identity, review_id)
        values = submitted_values(review, view) if isinstance(review, ActionReview) else {}
        outcome = await self.core.submit_action(identity, review_id, values)
        if isinstance(outcome, Notice):
            # The modal's response_url is the asker's (only they get the form): anyone else hears it in their DM.
            refused = outcome.kind is NoticeKind.REFUSED
            await self._tell("" if refused else response_url, outcome, user=identity.user)
            return
        await self.deliver(outcome)

    async def _cancel(self, body: dict[str, Any], review_id: str, response_url: str) -> None:
        identity = identity_of(body)
        await self._tell(response_url, await self.core.cancel_action(identity, review_id), user=identity.user)

    async def deliver(self, placed: PlacedReply) -> None:
        """A reply for the thread an action was proposed (or a plugin authorization was asked) in."""
        place = Place(placed.channel, placed.thread, placed.identity.user, is_dm=not placed.shared)
        await self.replies.deliver(place, placed.reply)

    async def _tell(self, response_url: str, notice: Notice, *, user: str = "") -> None:
        """Privately: through the click's response_url, or (without one) in the user's DM."""
        if response_url:
            await self.replies.respond(response_url, render_notice(notice))
        elif user:
            await self.replies.dm(user, text_message(commands_as_slash(notice.text)))


def _response_url(body: dict[str, Any]) -> str:
    return str(body.get("response_url") or "")


def _trigger(body: dict[str, Any]) -> str | None:
    trigger = body.get("trigger_id")
    return f"action:{trigger}" if trigger else None
