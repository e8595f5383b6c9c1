"""Plugin actions in Teams: a proposed action is an Adaptive Card form under the answer (to the asker only, as the
core made the answer private): one input per field of Q's review, in Q's order, with Run and Cancel
(Action.Execute, verbs `qbot.plugin.run` / `qbot.plugin.cancel`, data: the review id; Teams adds the inputs'
values). A plugin that needs consent gets an "Authorize <plugin>" card opening the core's one-time start URL.

The core decides (only the asker, once, values checked against the review): a refusal is shown to the clicker
only and the form stays for fixing; after Run or Cancel the form is redrawn without its inputs and buttons, and
Q's result is posted in the conversation (to the clicker only where answers are private).
"""

from __future__ import annotations

import logging
from typing import Any

from microsoft_agents.activity import (
    Activity,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    Attachment,
    ChannelAccount,
)
from microsoft_agents.hosting.core import TurnContext

from adapters.teams.activities import identity_of
from adapters.teams.cards import CARD_CONTENT_TYPE, CARD_VERSION, Card, answer_cards
from bot.core import Core
from bot.model import ActionField, ActionReview, Answer, FieldType, Notice, PlacedReply
from bot.plugins import NOTHING_RUN

log = logging.getLogger(__name__)

RUN_VERB = "qbot.plugin.run"
CANCEL_VERB = "qbot.plugin.cancel"
PLUGIN_VERBS = frozenset({RUN_VERB, CANCEL_VERB})
RAN = "Sent to Amazon Q: the result follows."
MAX_FIELDS = 60


def _text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _card(body: list[dict[str, Any]], fallback: str, actions: list[dict[str, Any]] | None = None) -> Card:
    card: Card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                  "version": CARD_VERSION, "body": body, "fallbackText": fallback, "msteams": {"width": "Full"}}
    return {**card, "actions": actions} if actions else card


def _activity(card: Card) -> Activity:
    return Activity(type=ActivityTypes.message, attachments=[Attachment(content_type=CARD_CONTENT_TYPE, content=card)])


def field_input_id(index: int) -> str:
    return f"qbot_field_{index}"


def _input(field: ActionField, index: int) -> dict[str, Any]:
    """One field as an Adaptive Card input, showing Q's current value."""
    common: dict[str, Any] = {"id": field_input_id(index), "label": field.label[:200], "isRequired": field.required}
    if field.required:
        common["errorMessage"] = f"{field.label[:200]} is required."
    if field.choices:
        current = field.value if isinstance(field.value, list) else [field.value]
        chosen = [c.token for c in field.choices if c.value in current]
        element: dict[str, Any] = {
            "type": "Input.ChoiceSet", "style": "compact", "isMultiSelect": field.type is FieldType.ARRAY,
            "choices": [{"title": c.label[:200], "value": c.token} for c in field.choices],
        }
        if chosen:
            element["value"] = ",".join(chosen) if field.type is FieldType.ARRAY else chosen[0]
        return {**element, **common}
    if field.type is FieldType.BOOLEAN:
        common.pop("isRequired")  # unticked is an answer: "no"
        common.pop("errorMessage", None)
        return {"type": "Input.Toggle", "title": "Yes", "valueOn": "true", "valueOff": "false",
                "value": "true" if field.value is True else "false", **common}
    if field.type is FieldType.NUMBER:
        element = {"type": "Input.Number"}
        if isinstance(field.value, int | float) and not isinstance(field.value, bool):
            element["value"] = field.value
        return {**element, **common}
    value = field.value
    if field.type is FieldType.ARRAY:
        value = "\n".join(str(item) for item in value) if isinstance(value, list) else value
    element = {"type": "Input.Text", "isMultiline": field.type is FieldType.ARRAY or len(str(value or "")) > 80,
               "maxLength": 4000}
    if field.description:
        element["placeholder"] = field.description[:200]
    if isinstance(value, str) and value:
        element["value"] = value
    return {**element, **common}


def review_card(review: ActionReview) -> Card:
    """The review as a form: Run sends the inputs (Teams checks the required ones first), Cancel sends none."""
    kind = review.plugin_type.replace("_", " ").title() or "plugin"
    intro = f"Amazon Q will run this {kind} action as you when you press Run. Check and edit the fields first."
    body: list[dict[str, Any]] = [_text_block(intro, weight="Bolder")]
    for index, field in enumerate(review.fields[:MAX_FIELDS]):
        body.append(_input(field, index))
        if field.description and field.choices:  # a text input shows it as its placeholder
            body.append(_text_block(field.description[:500], isSubtle=True, size="Small", spacing="None"))
    data = {"r": review.review_id}
    actions = [
        {"type": "Action.Execute", "title": "Run", "verb": RUN_VERB, "data": data, "associatedInputs": "auto",
         "style": "positive"},
        {"type": "Action.Execute", "title": "Cancel", "verb": CANCEL_VERB, "data": data, "associatedInputs": "none"},
    ]
    return _card(body, intro, actions)


def plugin_cards(answer: Answer) -> list[Card]:
    """What the answer asks of its asker, as cards to send after it: the action's form, a plugin's consent."""
    cards: list[Card] = []
    if answer.action_review is not None and answer.action_review.review_id:
        cards.append(review_card(answer.action_review))
    auth = answer.plugin_auth
    if auth is not None and auth.start_url:
        name = auth.plugin or "the plugin"
        text = f"Authorize {name} to answer this: you'll be asked to allow it, then the answer comes here."
        cards.append(_card([_text_block(text)], text, [
            {"type": "Action.OpenUrl", "title": f"Authorize {name}"[:60], "url": auth.start_url},
        ]))
    return cards


def form_values(review: ActionReview, data: dict[str, Any]) -> dict[str, Any]:
    """The invoke's input values as the core's form values (a multi-select arrives as "0,2")."""
    values: dict[str, Any] = {}
    for index, field in enumerate(review.fields):
        raw = data.get(field_input_id(index))
        if field.choices and field.type is FieldType.ARRAY and isinstance(raw, str):
            raw = [token for token in raw.split(",") if token]
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = str(raw)
        values[field.key] = raw
    return values


def _closed(text: str) -> Card:
    return _card([_text_block(text)], text)


class PluginCards:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def invoke(self, context: TurnContext, verb: str, data: dict[str, Any]) -> AdaptiveCardInvokeResponse:
        """Run or Cancel on a form: the clicked card redrawn, or a word to the clicker alone."""
        identity = identity_of(context.activity)
        review_id = str(data.get("r") or "")
        if verb == CANCEL_VERB:
            cancelled = await self.core.cancel_action(identity, review_id)
            if cancelled.text == NOTHING_RUN:
                return _card_response(_closed(NOTHING_RUN))
            return _message_response(cancelled.text)
        review = await self.core.action_review(identity, review_id)
        values = form_values(review, data) if isinstance(review, ActionReview) else {}
        outcome = await self.core.submit_action(identity, review_id, values)
        if isinstance(outcome, Notice):  # not theirs, gone, or values that do not fit: the form stays as it was
            return _message_response(outcome.text)
        await self._post(context, outcome)
        return _card_response(_closed(RAN))

    @staticmethod
    async def _post(context: TurnContext, placed: PlacedReply) -> None:
        """Q's result into the conversation the form is in: to the clicker alone where it is private."""
        reply = placed.reply
        if isinstance(reply, Answer):
            activities = [_activity(card) for card in [*answer_cards(reply), *plugin_cards(reply)]]
        else:
            activities = [Activity(type=ActivityTypes.message, text=reply.text)]
        clicker = context.activity.from_property
        targeted = reply.private and placed.shared and clicker is not None
        for activity in activities:
            if targeted and clicker is not None:
                activity = activity.with_targeted_recipient(ChannelAccount(id=clicker.id, name=clicker.name))
            try:
                await context.send_activity(activity)
            except Exception as exc:
                log.warning("could not post a plugin action's result in Teams: %s", type(exc).__name__)
                return


def _card_response(card: Card) -> AdaptiveCardInvokeResponse:
    return AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=card)


def _message_response(text: str) -> AdaptiveCardInvokeResponse:
    return AdaptiveCardInvokeResponse(status_code=200, type="application/vnd.microsoft.activity.message", value=text)

