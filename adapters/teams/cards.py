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
from bot.model import Answer, FailedAttachment, Source, Usefulness

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.5"  # Action.Execute needs 1.4; Teams renders 1.5
FEEDBACK_VERB = "qbot.feedback"
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
    def action(title: str, useful: bool) -> dict[str, Any]:
        return {
            "type": "Action.Execute",
            "title": title,
            "verb": FEEDBACK_VERB,
            "data": {
                "useful": useful,
                "conversation_id": answer.conversation_id,
                "message_id": answer.message_id,
            },
        }

    return [action("👍 Helpful", True), action("👎 Not helpful", False)]


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
    actions = [share_action(answer)] if answer.private else []
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


def thanked(card: Card) -> Card:
    """The rated card: as it was, minus the buttons, plus a thank-you line."""
    done = without_actions(card)
    done["body"] = [*done.get("body", []), _text_block(THANKS, isSubtle=True, spacing="Medium")]
    done["fallbackText"] = f"{done.get('fallbackText', '')}\n\n{THANKS}".strip()
    return done


def shared(card: Card) -> Card:
    """The private card after "Share in thread": as it was, minus the buttons, saying where the answer went."""
    done = without_actions(card)
    done["body"] = [*done.get("body", []), _text_block(SHARED, isSubtle=True, spacing="Medium")]
    done["fallbackText"] = f"{done.get('fallbackText', '')}\n\n{SHARED}".strip()
    return done


def parse_share(verb: str | None, data: Any) -> Share | None:
    """The answer a "Share in thread" click names, or None when the action isn't that or is malformed."""
    if verb != SHARE_VERB or not isinstance(data, dict):
        return None
    conversation_id, message_id = data.get("conversation_id"), data.get("message_id")
    if not (_an_id(conversation_id) and _an_id(message_id)):
        return None
    return Share(str(conversation_id), str(message_id))


def parse_feedback(verb: str | None, data: Any) -> Feedback | None:
    """The rating a 👍/👎 click carries, or None when the action isn't one of ours or is malformed."""
    if verb != FEEDBACK_VERB or not isinstance(data, dict):
        return None
    conversation_id, message_id, useful = data.get("conversation_id"), data.get("message_id"), data.get("useful")
    if not (isinstance(useful, bool) and _an_id(conversation_id) and _an_id(message_id)):
        return None
    return Feedback(str(conversation_id), str(message_id), Usefulness.USEFUL if useful else Usefulness.NOT_USEFUL)


def _an_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 256


def sign_in_card(text: str, url: str) -> Card:
    """The one-time link as a button; sent only into the user's personal chat with the bot."""
    return _card(
        [_text_block(text)],
        f"{text}\n\n{url}",
        [{"type": "Action.OpenUrl", "title": "Sign in", "url": url}],
    )
