"""Answers, sign-in prompts and feedback as Adaptive Cards, within Teams' message size limit.

An answer is one or more cards: Teams refuses a message over about 28 KB (text and attachments together), so
the answer's blocks (notes on files, the text in the Teams markdown subset, then a numbered Sources list) are
packed in order into cards of at most `MAX_CARD_BYTES`, each with `fallbackText` for clients that show no
cards. Only the last card carries the 👍/👎 buttons (Action.Execute, verb `qbot.feedback`, with the ids
of the Q turn); after a rating it is redrawn without them, saying thanks. A private answer's last card also
carries "Share in thread" (verb `qbot.share`, the same ids: the core knows whose answer it is and where it was
asked); a shared answer's first card names who shared it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters.teams.markdown import Segment, link_label, link_target, to_teams
from bot.feedback import MAX_COMMENT_CHARS, WHY_NOT_USEFUL
from bot.model import Answer, FailedAttachment, Source, Usefulness

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.5"  # Action.Execute needs 1.4; Teams renders 1.5
FEEDBACK_VERB = "qbot.feedback"
WHY_VERB = "qbot.feedback.reason"  # the 👎 form's Send: the reason and comment come in its data
NEVER_MIND_VERB = "qbot.feedback.cancel"  # the 👎 form's Cancel: the card as it was, nothing sent
SHARE_VERB = "qbot.share"
SHARED = "You shared this answer in the thread."
MAX_CARD_BYTES = 24_000  # the serialized card; the activity around it adds well under 1 KB
MAX_BLOCK_BYTES = 8_000  # one text block: its text appears twice in a card (body and fallbackText)
THANKS = "Thanks for the feedback."
EMPTY_ANSWER = "Amazon Q returned no text for this question."

Card = dict[str, Any]


@dataclass(frozen=True)
class Share:
    conversation_id: str
    message_id: str


@dataclass(frozen=True)
class Feedback:
    conversation_id: str
    message_id: str
    usefulness: Usefulness
    shareable: bool = False  # the card also offered "Share in thread" (a 👎 form's Cancel brings it back)


@dataclass(frozen=True)
class Why:
    """A 👎 form sent: why the answer was not useful, in the clicker's words (checked by the core)."""

    conversation_id: str
    message_id: str
    reason: str
    comment: str | None


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _split(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` bytes (as JSON), cut at paragraphs, then lines, then spaces, then anywhere."""
    if _size(text) <= limit:
        return [text]
    for separator in ("\n\n", "\n", " "):
        parts = text.split(separator)
        if len(parts) > 1:
            pieces: list[str] = []
            current = ""
            for part in parts:
                candidate = f"{current}{separator}{part}" if current else part
                if _size(candidate) <= limit:
                    current = candidate
                    continue
                if current:
                    pieces.append(current)
                current = part
            pieces.append(current)
            return [small for piece in pieces for small in _split(piece, limit)]
    cut = max(1, len(text) * limit // max(_size(text), 1))
    while cut > 1 and _size(text[:cut]) > limit:
        cut -= max(1, cut // 10)
    return [text[:cut], *_split(text[cut:], limit)]


def _source_line(source: Source) -> str:
    title = link_label(source.title or source.url or "Untitled")[:300]
    if source.url:  # checked where the Answer was built (bot.urls.safe_link): only escaped here
        return f"[{source.number}] [{title}]({link_target(source.url)})"
    return f"[{source.number}] {title}"


def _note_lines(failed: Sequence[FailedAttachment]) -> list[str]:
    return [f"⚠️ {link_label(f.name)[:200]}: {f.error[:500]}" for f in failed]


def _card(body: list[dict[str, Any]], fallback: str, actions: list[dict[str, Any]] | None = None) -> Card:
    card: Card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
        "fallbackText": fallback,
        "msteams": {"width": "Full"},
    }
    if actions:
        card["actions"] = actions
    return card


def feedback_actions(answer: Answer) -> list[dict[str, Any]]:
    def action(title: str, useful: bool, **more: Any) -> dict[str, Any]:
        return {
            "type": "Action.Execute",
            "title": title,
            "verb": FEEDBACK_VERB,
            "data": {
                "useful": useful,
                "conversation_id": answer.conversation_id,
                "message_id": answer.message_id,
                **more,
            },
        }

    # Both say whether the card also offered "Share in thread", so a rating (or a cancelled 👎) can keep it.
    more = {"shareable": True} if answer.private else {}
    return [action("👍 Helpful", True, **more), action("👎 Not helpful", False, **more)]


def share_action(answer: Answer) -> dict[str, Any]:
    return {
        "type": "Action.Execute",
        "title": "Share in thread",
        "verb": SHARE_VERB,
        "data": {"conversation_id": answer.conversation_id, "message_id": answer.message_id},
    }


def answer_cards(answer: Answer, *, shared_by: str = "") -> list[Card]:
    """The answer as cards in reading order; every card serializes to at most `MAX_CARD_BYTES`. A private
    answer offers "Share in thread"; a shared one opens with who shared it (`shared_by`, a display name)."""
    blocks: list[tuple[dict[str, Any], str]] = []
    if answer.shared_by is not None:
        line = f"Shared by {link_label(shared_by or 'the person who asked')[:200]}"
        blocks.append((_text_block(line, isSubtle=True, size="Small", weight="Bolder"), line))
    for line in _note_lines(answer.failed_attachments):
        blocks.append((_text_block(line, isSubtle=True, size="Small"), line))
    segments = to_teams(answer.text) or [Segment(EMPTY_ANSWER)]
    for segment in segments:
        style: dict[str, Any] = {"fontType": "Monospace"} if segment.code else {}
        for piece in _split(segment.text, MAX_BLOCK_BYTES):
            blocks.append((_text_block(piece, **style), piece))
    if answer.sources:
        blocks.append((_text_block("Sources", weight="Bolder", spacing="Medium"), "Sources:"))
        for source in answer.sources:
            line = _source_line(source)
            blocks.append((_text_block(line, spacing="None", size="Small"), line))
    shareable = answer.private and answer.action_review is None and answer.plugin_auth is None  # not a form
    actions = [share_action(answer)] if shareable else []
    return _pack(blocks, [*actions, *feedback_actions(answer)])


def _pack(blocks: list[tuple[dict[str, Any], str]], actions: list[dict[str, Any]]) -> list[Card]:
    cards: list[Card] = []
    body: list[dict[str, Any]] = []
    fallback: list[str] = []
    for block, text in blocks:
        trial = _card([*body, block], "\n\n".join([*fallback, text]), actions)
        if body and _size(trial) > MAX_CARD_BYTES:
            cards.append(_card(body, "\n\n".join(fallback)))
            body, fallback = [], []
        body.append(block)
        fallback.append(text)
    cards.append(_card(body, "\n\n".join(fallback), actions))
    return cards


def without_actions(card: Card) -> Card:
    stripped = copy.deepcopy(card)
    stripped.pop("actions", None)
    return stripped


def thanked(card: Card, feedback: Feedback | None = None) -> Card:
    """The rated card: as it was, minus the rating buttons, plus a thank-you line; a private answer (whose
    rating says it was shareable) can still be shared after it was rated."""
    done = _closed(card, THANKS)
    if feedback is not None and feedback.shareable:
        answer = Answer("", (), feedback.conversation_id, feedback.message_id, private=True)
        done["actions"] = [share_action(answer)]
    return done


def shared(card: Card) -> Card:
    """The private card after "Share in thread": as it was, minus the buttons, saying where the answer went."""
    return _closed(card, SHARED)


def _closed(card: Card, line: str) -> Card:
    """The card without its buttons, with `line` said at its end."""
    done = without_actions(card)
    done["body"] = [*done.get("body", []), _text_block(line, isSubtle=True, spacing="Medium")]
    done["fallbackText"] = f"{done.get('fallbackText', '')}\n\n{line}".strip()
    return done


def parse_share(verb: str | None, data: Any) -> Share | None:
    """The answer a "Share in thread" click names, or None when the action isn't that or is malformed."""
    ids = _answer_ids(verb, SHARE_VERB, data)
    return Share(*ids) if ids else None


def parse_feedback(verb: str | None, data: Any) -> Feedback | None:
    """The rating a 👍/👎 click carries, or None when the action isn't one of ours or is malformed."""
    if verb != FEEDBACK_VERB or not isinstance(data, dict):
        return None
    conversation_id, message_id, useful = data.get("conversation_id"), data.get("message_id"), data.get("useful")
    if not (isinstance(useful, bool) and _an_id(conversation_id) and _an_id(message_id)):
        return None
    usefulness = Usefulness.USEFUL if useful else Usefulness.NOT_USEFUL
    return Feedback(str(conversation_id), str(message_id), usefulness, shareable=data.get("shareable") is True)


def why_form(card: Card, feedback: Feedback) -> Card:
    """The rated card as it was, asking why: Q's reasons (one required) and an optional comment, then Send
    (verb `WHY_VERB`, the inputs merged into its data) or Cancel. Only the clicker sees it (invoke response)."""
    ids = {"conversation_id": feedback.conversation_id, "message_id": feedback.message_id}
    form = without_actions(card)
    form["body"] = [
        *form.get("body", []),
        _text_block("What was wrong with the answer?", weight="Bolder", spacing="Medium", separator=True),
        {
            "type": "Input.ChoiceSet", "id": "reason", "style": "expanded", "isRequired": True,
            "errorMessage": "Pick a reason.",
            "choices": [{"title": label, "value": reason.value} for reason, label in WHY_NOT_USEFUL],
        },
        {
            "type": "Input.Text", "id": "comment", "isMultiline": True, "maxLength": MAX_COMMENT_CHARS,
            "placeholder": "Anything to add? (optional)",
        },
    ]
    form["actions"] = [
        {"type": "Action.Execute", "title": "Send", "verb": WHY_VERB, "data": ids, "associatedInputs": "auto"},
        {"type": "Action.Execute", "title": "Cancel", "verb": NEVER_MIND_VERB, "associatedInputs": "none",
         "data": {**ids, "shareable": feedback.shareable}},
    ]
    return form


def parse_why(verb: str | None, data: Any) -> Why | None:
    """What a 👎 form's Send carries, or None when the action isn't that or names no answer."""
    ids = _answer_ids(verb, WHY_VERB, data)
    if ids is None:
        return None
    reason, comment = data.get("reason"), data.get("comment")
    said = comment if isinstance(comment, str) and comment else None
    return Why(*ids, reason if isinstance(reason, str) else "", said)


def parse_never_mind(verb: str | None, data: Any) -> Feedback | None:
    """A 👎 form's Cancel: the answer whose card gets its buttons back, or None."""
    ids = _answer_ids(verb, NEVER_MIND_VERB, data)
    return Feedback(*ids, Usefulness.NOT_USEFUL, data.get("shareable") is True) if ids else None


def with_buttons(card: Card, feedback: Feedback) -> Card:
    """The card as the answer first had it: "Share in thread" (if it offered that) and 👍/👎."""
    answer = Answer("", (), feedback.conversation_id, feedback.message_id, private=feedback.shareable)
    restored = without_actions(card)
    restored["actions"] = [*([share_action(answer)] if feedback.shareable else []), *feedback_actions(answer)]
    return restored


def _an_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 256


def _answer_ids(verb: str | None, expected: str, data: Any) -> tuple[str, str] | None:
    """The answer's (conversation id, message id) an action of verb `expected` carries, or None."""
    if verb != expected or not isinstance(data, dict):
        return None
    conversation_id, message_id = data.get("conversation_id"), data.get("message_id")
    if not (_an_id(conversation_id) and _an_id(message_id)):
        return None
    return str(conversation_id), str(message_id)


def sign_in_card(text: str, url: str) -> Card:
    """The one-time link as a button; sent only into the user's personal chat with the bot."""
    return _card(
        [_text_block(text)],
        f"{text}\n\n{url}",
        [{"type": "Action.OpenUrl", "title": "Sign in", "url": url}],
    )
