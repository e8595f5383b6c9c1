"""What a rating may say: Q's own reasons (kept equal to botocore's model), fitting the rating, and a comment
Q's model accepts (at most 1000 printable characters)."""

from __future__ import annotations

import botocore.session
import pytest

from bot.feedback import MAX_COMMENT_CHARS, WHY_NOT_USEFUL, WHY_USEFUL, InvalidFeedback, Rating, rating
from bot.model import FeedbackReason, Usefulness


def _shape(name: str) -> dict[str, object]:
    model = botocore.session.get_session().get_service_model("qbusiness")
    return dict(model.shape_for(name).metadata)


def test_the_reasons_and_the_comment_limit_are_q_business_s() -> None:
    assert sorted(r.value for r in FeedbackReason) == sorted(_shape("MessageUsefulnessReason")["enum"])  # type: ignore[arg-type]
    assert MAX_COMMENT_CHARS == _shape("MessageUsefulnessComment")["max"]
    # 👎 offers every reason that is not praise, OTHER last; praise is for 👍 only
    offered = [reason for reason, _label in WHY_NOT_USEFUL]
    assert set(offered) == set(FeedbackReason) - WHY_USEFUL and offered[-1] is FeedbackReason.OTHER
    assert all(label and len(label) <= 75 for _reason, label in WHY_NOT_USEFUL)  # fits a Slack option


def test_a_rating_is_checked_and_its_comment_made_printable() -> None:
    assert rating(Usefulness.USEFUL) == Rating(Usefulness.USEFUL)
    assert rating(Usefulness.NOT_USEFUL, "NOT_COMPLETE", "  Missing\nthe\tdates\u200b.  ") == Rating(
        Usefulness.NOT_USEFUL, FeedbackReason.NOT_COMPLETE, "Missing the dates."
    )
    assert rating(Usefulness.NOT_USEFUL, "OTHER", " \n ").comment is None
    assert rating(Usefulness.USEFUL, "OTHER").reason is FeedbackReason.OTHER
    assert rating(Usefulness.USEFUL, "HELPFUL").reason_label == "HELPFUL"
    assert rating(Usefulness.NOT_USEFUL, None, "x" * MAX_COMMENT_CHARS).comment == "x" * MAX_COMMENT_CHARS


@pytest.mark.parametrize(
    ("usefulness", "reason", "comment", "says"),
    [
        (Usefulness.NOT_USEFUL, "MEH", None, "isn't one of the choices"),
        (Usefulness.NOT_USEFUL, "not_complete", None, "isn't one of the choices"),
        (Usefulness.NOT_USEFUL, "HELPFUL", None, "doesn't fit"),
        (Usefulness.USEFUL, "NOT_COMPLETE", None, "doesn't fit"),
        (Usefulness.NOT_USEFUL, "OTHER", "x" * (MAX_COMMENT_CHARS + 1), "too long (1001 characters)"),
        (Usefulness.NOT_USEFUL, "OTHER", 42, "must be text"),
    ],
)
def test_a_bad_reason_or_comment_is_refused_in_words(
    usefulness: Usefulness, reason: str, comment: object, says: str
) -> None:
    with pytest.raises(InvalidFeedback) as refused:
        rating(usefulness, reason, comment)  # type: ignore[arg-type]
    assert says in refused.value.user_message
