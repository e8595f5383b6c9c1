"""👍 is one click; 👎 asks why in a modal (views.open with the click's trigger_id), and its submission
(view_submission) is the rating: Q's reason and the comment reach PutFeedback; only the asker's counts."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import httpx

from adapters.slack.feedback import COMMENT_BLOCK, COMMENT_INPUT, REASON_BLOCK, REASON_INPUT, WHY_VIEW
from bot.feedback import WHY_NOT_USEFUL
from sandbox.slack import BOT_TOKEN
from tests.adapters.slack.conftest import SlackBot

AURORA = "What is Project Aurora?"


def _answer(slack: SlackBot) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Alice asks in her DM: the answer as Slack holds it (for clicks to carry), and its 👍/👎 buttons."""
    ts = slack.dm("U_ALICE", AURORA)
    answer = slack.answer_in("DU_ALICE", ts)
    buttons = next(b for b in answer["blocks"] if b.get("block_id") == "qbot_feedback")["elements"]
    message = {"type": "message", "ts": answer["ts"], "text": answer["text"], "blocks": answer["blocks"]}
    return message, buttons


def _thumbs_down(slack: SlackBot, user: str, message: dict[str, Any] | None, button: dict[str, Any],
                 **click: Any) -> tuple[str, str]:
    """`user` clicks 👎: returns the click's response_url hook and the id of the modal it opened."""
    opened = len(slack.fake.calls_to("views.open"))
    hook = slack.click(user, button, message=message, channel="DU_ALICE",
                       message_ts=message["ts"] if message else "", **click)
    call = slack.fake.wait_calls("views.open", opened + 1)[-1]
    assert call.args["trigger_id"] == f"trig-{hook}"
    view_id = next(v for v, view in slack.fake.views.items() if view["private_metadata"] ==
                   call.args["view"]["private_metadata"])
    return hook, view_id


def _submit(slack: SlackBot, payload: dict[str, Any]) -> httpx.Response:
    response = slack.post(urllib.parse.urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
    assert response.status_code == 200 and not response.text  # acknowledged: Slack closes the modal
    return response


def _why(reason: str, comment: str | None = None) -> dict[str, dict[str, Any]]:
    return {REASON_BLOCK: {REASON_INPUT: reason}, COMMENT_BLOCK: {COMMENT_INPUT: comment}}


def test_thumbs_down_asks_why_and_the_reason_and_comment_reach_put_feedback(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    message, buttons = _answer(slack)
    updates = len(slack.fake.calls_to("chat.update"))
    _hook, view_id = _thumbs_down(slack, "U_ALICE", message, buttons[1])
    modal = slack.fake.views[view_id]
    assert modal["callback_id"] == WHY_VIEW
    reasons = next(b for b in modal["blocks"] if b["block_id"] == REASON_BLOCK)["element"]["options"]
    assert [(o["value"], o["text"]["text"]) for o in reasons] == [(r.value, label) for r, label in WHY_NOT_USEFUL]
    assert slack.sandbox.q.stats.feedback == []  # the click alone sends nothing: closing the modal is no rating

    _submit(slack, slack.fake.submission(view_id, "U_ALICE", _why("NOT_COMPLETE", "No launch date.\nAdd it?")))
    thanked = slack.fake.wait_calls("chat.update", updates + 1)[-1]
    assert thanked.args["ts"] == message["ts"] and thanked.args["channel"] == "DU_ALICE"
    assert not any(b.get("block_id") == "qbot_feedback" for b in thanked.args["blocks"])
    assert ":thumbsdown: Thanks for the feedback" in json.dumps(thanked.args["blocks"])
    [record] = slack.sandbox.q.stats.feedback
    assert (record.email, record.rating, record.reason, record.comment) == (
        "alice@example.com", "NOT_USEFUL", "NOT_COMPLETE", "No launch date. Add it?"
    )
    labels = {"platform": "slack", "usefulness": "NOT_USEFUL", "reason": "NOT_COMPLETE"}
    assert slack.graph.metrics.registry.get_sample_value("qbot_feedback_total", labels) == 1


def test_thumbs_up_stays_one_click(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    message, buttons = _answer(slack)
    slack.click("U_ALICE", buttons[0], message=message, channel="DU_ALICE", message_ts=message["ts"])
    record = slack.fake.wait_for(lambda: slack.sandbox.q.stats.feedback)[0]
    assert (record.rating, record.reason, record.comment) == ("USEFUL", None, None)
    assert slack.fake.calls_to("views.open") == []


def test_why_on_an_ephemeral_answer_thanks_through_the_click_s_response_url(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    _message, buttons = _answer(slack)
    hook, view_id = _thumbs_down(slack, "U_ALICE", None, buttons[1], ephemeral=True)  # Slack sends no copy
    _submit(slack, slack.fake.submission(view_id, "U_ALICE", _why("OTHER")))
    [thanks] = slack.responses(hook)
    assert "Thanks for the feedback" in thanks["text"] and thanks["response_type"] == "ephemeral"
    [record] = slack.sandbox.q.stats.feedback
    assert (record.reason, record.comment) == ("OTHER", None)


def test_only_the_asker_s_why_counts_a_forged_reason_sends_nothing_and_a_redelivery_counts_once(
    slack: SlackBot,
) -> None:
    slack.linked("U_ALICE", "alice")
    message, buttons = _answer(slack)

    hook, view_id = _thumbs_down(slack, "U_BOB", message, buttons[1])
    _submit(slack, slack.fake.submission(view_id, "U_BOB", _why("NOT_HELPFUL", "not mine to rate")))
    [refusal] = slack.responses(hook)
    assert "Only the person who asked" in refusal["text"] and refusal["response_type"] == "ephemeral"

    hook, view_id = _thumbs_down(slack, "U_ALICE", message, buttons[1])
    forged = slack.fake.submission(view_id, "U_ALICE", _why("NOT_HELPFUL"))
    forged["view"]["state"]["values"][REASON_BLOCK][REASON_INPUT]["selected_option"]["value"] = "HELPFUL"
    _submit(slack, forged)
    [refusal] = slack.responses(hook)
    assert "doesn't fit the rating" in refusal["text"]
    hook, view_id = _thumbs_down(slack, "U_ALICE", message, buttons[1])
    forged = slack.fake.submission(view_id, "U_ALICE", _why("NOT_HELPFUL"))
    forged["view"]["state"]["values"][REASON_BLOCK][REASON_INPUT]["selected_option"] = None
    _submit(slack, forged)
    [refusal] = slack.responses(hook)
    assert "isn't one of the choices" in refusal["text"]
    assert slack.sandbox.q.stats.feedback == []

    hook, view_id = _thumbs_down(slack, "U_ALICE", message, buttons[1])
    submitted = slack.fake.submission(view_id, "U_ALICE", _why("NOT_CONCISE"))
    _submit(slack, submitted)
    _submit(slack, submitted)  # Socket Mode may deliver twice
    slack.fake.wait_for(lambda: slack.sandbox.q.stats.feedback)
    slack.fake.wait_calls("chat.update", 2)  # the answer, then its thanks: the second delivery did nothing
    assert [r.reason for r in slack.sandbox.q.stats.feedback] == ["NOT_CONCISE"]


def test_the_fake_opens_a_modal_once_per_trigger_and_checks_the_view(slack: SlackBot) -> None:
    api = slack.fake.api_url()
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Why"}, "blocks": [
        {"type": "section", "text": {"type": "plain_text", "text": "hi"}}]}

    def views_open(**args: Any) -> dict[str, Any]:
        body: dict[str, Any] = httpx.post(api + "views.open", json=args, headers=headers).json()
        return body

    assert views_open(view=view)["error"] == "invalid_arguments"  # no trigger_id
    assert views_open(trigger_id="t1", view={**view, "title": {"type": "plain_text", "text": "x" * 25}})[
        "error"] == "invalid_arguments"
    assert views_open(trigger_id="t1", view=view)["ok"] is True
    assert views_open(trigger_id="t1", view=view)["error"] == "exchanged_trigger_id"
