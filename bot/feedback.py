"""What a rating may say, the same on every platform: 👍 is one click; 👎 asks why, from Q Business's own
reasons (`messageUsefulness.reason`), with an optional comment.

Checked once, here, before anything is sent: the reason must be one of Q's values and fit the rating (a 👎
is not "HELPFUL"); the comment is at most `MAX_COMMENT_CHARS` characters of printable text, as Q's model
requires (pattern `\\P{C}*`): runs of white space, line breaks included, become one space, other control
and format characters are dropped, and an empty comment is none.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bot.errors import QBotError
from bot.model import FeedbackReason, Usefulness

MAX_COMMENT_CHARS = 1000  # Q's MessageUsefulnessComment: 0-1000 characters

# What a 👎 offers, in this order, with the words users see on every platform.
WHY_NOT_USEFUL: tuple[tuple[FeedbackReason, str], ...] = (
    (FeedbackReason.NOT_HELPFUL, "Not helpful"),
    (FeedbackReason.NOT_FACTUALLY_CORRECT, "Not factually correct"),
    (FeedbackReason.NOT_COMPLETE, "Incomplete"),
    (FeedbackReason.NOT_CONCISE, "Too long or not concise"),
    (FeedbackReason.INCORRECT_OR_MISSING_SOURCES, "Wrong or missing sources"),
    (FeedbackReason.NOT_BASED_ON_DOCUMENTS, "Not based on our documents"),
    (FeedbackReason.HARMFUL_OR_UNSAFE, "Harmful or unsafe"),
    (FeedbackReason.OTHER, "Something else"),
)
WHY_USEFUL = frozenset(
    {FeedbackReason.HELPFUL, FeedbackReason.FACTUALLY_CORRECT, FeedbackReason.COMPLETE, FeedbackReason.RELEVANT_SOURCES}
)


class InvalidFeedback(QBotError):
    user_message = "That feedback can't be sent."


@dataclass(frozen=True)
class Rating:
    """A checked rating, as PutFeedback will carry it."""

    usefulness: Usefulness
    reason: FeedbackReason | None = None
    comment: str | None = None

    @property
    def reason_label(self) -> str:
        """The metrics label: Q's reason value, or "none"."""
        return self.reason.value if self.reason else "none"


def rating(usefulness: Usefulness, reason: str | None = None, comment: str | None = None) -> Rating:
    """The rating these values make, or InvalidFeedback saying (in the user's words) what is wrong."""
    chosen = _reason(usefulness, reason)
    if comment is not None and not isinstance(comment, str):
        raise InvalidFeedback("The comment must be text.")
    cleaned = _printable(comment or "")
    if len(cleaned) > MAX_COMMENT_CHARS:
        raise InvalidFeedback(
            f"Your comment is too long ({len(cleaned)} characters); the limit is {MAX_COMMENT_CHARS}."
        )
    return Rating(usefulness, chosen, cleaned or None)


def _reason(usefulness: Usefulness, reason: str | None) -> FeedbackReason | None:
    if reason is None:
        return None
    try:
        chosen = FeedbackReason(reason)
    except ValueError:
        raise InvalidFeedback("That reason isn't one of the choices; pick one from the list.") from None
    fits = chosen is FeedbackReason.OTHER or (chosen in WHY_USEFUL) == (usefulness is Usefulness.USEFUL)
    if not fits:
        raise InvalidFeedback("That reason doesn't fit the rating; pick one from the list.")
    return chosen


def _printable(text: str) -> str:
    """Q's `\\P{C}*`: runs of white space (line breaks too) become one space; other control, format and
    unassigned characters go."""
    kept = (" " if ch.isspace() else "" if unicodedata.category(ch).startswith("C") else ch for ch in text)
    return " ".join("".join(kept).split())
