"""The console's feedback API: 👍 is one click; 👎 may say why (Q's reason, an optional comment), checked
before anything is sent (400), and only the asker's rating counts (403)."""

from __future__ import annotations

from typing import Any

from bot.feedback import WHY_NOT_USEFUL
from tests.adapters.web.conftest import WebBot

AURORA = "What is Project Aurora?"


def _answer(web_bot: WebBot, http: Any, me: dict[str, Any]) -> dict[str, Any]:
    body = {"text": AURORA, "thread": "t1", "message_id": "m1"}
    answer: dict[str, Any] = web_bot.post(http, "/web/api/ask", body, csrf=me["csrf"]).json()
    assert answer["type"] == "answer", answer
    return answer


def test_thumbs_down_with_a_reason_and_comment_reaches_put_feedback(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    assert me["feedback_reasons"] == [{"value": r.value, "label": label} for r, label in WHY_NOT_USEFUL]
    answer = _answer(web_bot, http, me)
    rate = {"conversation_id": answer["conversation_id"], "message_id": answer["message_id"], "useful": False,
            "reason": "NOT_CONCISE", "comment": "  Far too\nlong.  "}
    rated = web_bot.post(http, "/web/api/feedback", rate, csrf=me["csrf"])
    assert rated.status_code == 200 and rated.json() == {"ok": True}
    [record] = web_bot.sandbox.q.stats.feedback
    assert (record.email, record.rating, record.reason, record.comment) == (
        "alice@example.com", "NOT_USEFUL", "NOT_CONCISE", "Far too long."
    )
    labels = {"platform": "web", "usefulness": "NOT_USEFUL", "reason": "NOT_CONCISE"}
    assert web_bot.graph.metrics.registry.get_sample_value("qbot_feedback_total", labels) == 1


def test_thumbs_up_needs_no_reason(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    answer = _answer(web_bot, http, me)
    rate = {"conversation_id": answer["conversation_id"], "message_id": answer["message_id"], "useful": True,
            "reason": None}
    assert web_bot.post(http, "/web/api/feedback", rate, csrf=me["csrf"]).status_code == 200
    [record] = web_bot.sandbox.q.stats.feedback
    assert (record.rating, record.reason, record.comment) == ("USEFUL", None, None)


def test_bad_reasons_and_comments_are_refused_and_someone_else_s_answer_is_not_theirs_to_rate(
    web_bot: WebBot,
) -> None:
    alice, bob = web_bot.browser(), web_bot.browser()
    alice_me, bob_me = web_bot.sign_in(alice, "alice"), web_bot.sign_in(bob, "bob")
    answer = _answer(web_bot, alice, alice_me)
    ids = {"conversation_id": answer["conversation_id"], "message_id": answer["message_id"], "useful": False}
    for extra, says in (
        ({"reason": "MEH"}, "isn't one of the choices"),
        ({"reason": "not_concise"}, "isn't one of the choices"),
        ({"reason": "HELPFUL"}, "doesn't fit the rating"),
        ({"reason": 5}, "'reason' must be a string"),
        ({"reason": "OTHER", "comment": "x" * 1001}, "too long (1001 characters); the limit is 1000"),
        ({"reason": "OTHER", "comment": ["x"]}, "'comment' must be a string"),
    ):
        refused = web_bot.post(alice, "/web/api/feedback", {**ids, **extra}, csrf=alice_me["csrf"])
        assert refused.status_code == 400 and says in refused.json()["error"], (extra, refused.text)
    not_bobs = web_bot.post(bob, "/web/api/feedback", {**ids, "reason": "NOT_HELPFUL"}, csrf=bob_me["csrf"])
    assert not_bobs.status_code == 403 and not_bobs.json()["error"] == "Only the person who asked can rate this answer."
    assert web_bot.sandbox.q.stats.feedback == []
