"""👍/👎 on an answer card: Action.Execute arrives as an `adaptiveCard/action` invoke; only the asker rates.
👍 is one click; 👎 answers with the card asking why (Q's reasons, a comment), whose Send is the rating."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.teams.cards import NEVER_MIND_VERB, WHY_VERB
from bot.feedback import WHY_NOT_USEFUL
from sandbox.botframework import Call, FakeBotFramework
from tests.adapters.teams.conftest import ALICE, BOB, CHANNEL, TeamsBot, teams_env

AURORA = "What is Project Aurora?"


def test_asker_rates_an_answer_and_the_card_says_thanks_for_everyone(
    make_teams: Callable[..., TeamsBot], bot_framework: FakeBotFramework
) -> None:
    """In a channel that answers in the thread, everyone sees the card: after the asker's rating, its buttons go
    for everyone."""
    teams = make_teams(**teams_env(bot_framework, QBOT_CHANNEL_REPLY_MODE="thread"))
    teams.linked(ALICE)
    teams.linked(BOB)
    answer = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True))
    data = answer.cards[-1]["actions"][0]["data"]

    # someone else's click is refused, to them only: no feedback recorded, the card untouched
    refused = teams.post(teams.click(BOB, answer, useful=True))
    assert refused.status_code == 200
    body = refused.json()
    assert body["type"] == "application/vnd.microsoft.activity.message"
    assert body["value"] == "Only the person who asked can rate this answer."
    assert teams.sandbox.q.stats.feedback == []
    assert not [c for c in teams.bf.calls if c.kind == "update"]

    rated = teams.post(teams.click(ALICE, answer, useful=True))
    assert rated.status_code == 200
    body = rated.json()
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    card = body["value"]
    assert "actions" not in card and card["body"][-1]["text"] == "Thanks for the feedback."
    assert card["body"][0]["text"] == answer.cards[-1]["body"][0]["text"]  # the answer itself stays

    (record,) = teams.sandbox.q.stats.feedback
    assert record.email == ALICE.email and record.conversation_id == data["conversation_id"]
    assert record.message_id == data["message_id"] and record.usefulness["usefulness"] == "USEFUL"

    update = next(c for c in teams.bf.calls if c.kind == "update")
    assert update.activity_id == answer.response_id and update.conversation_id.startswith(CHANNEL)
    assert update.cards[0] == card


def test_malformed_and_foreign_card_actions_change_nothing(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    answer = teams.answer(teams.message(ALICE, AURORA))
    click = teams.click(ALICE, answer, useful=False)
    click["value"]["action"]["verb"] = "something.else"
    assert teams.post(click).json()["type"] == "application/vnd.microsoft.activity.message"
    click["value"]["action"] = {"type": "Action.Execute", "verb": "qbot.feedback", "data": {"useful": "yes"}}
    assert teams.post(click).json()["type"] == "application/vnd.microsoft.activity.message"
    click["value"] = {"nonsense": True}
    malformed = teams.post(click)
    assert malformed.status_code == 400 and malformed.json()["value"]["code"] == "BadRequest"
    assert teams.sandbox.q.stats.feedback == []


def _form(teams: TeamsBot, answer: Call, user: Any = ALICE) -> dict[str, Any]:
    """`user` clicks 👎: the card Teams shows them instead, asking why."""
    response = teams.post(teams.click(user, answer, useful=False))
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "application/vnd.microsoft.card.adaptive", body
    card: dict[str, Any] = body["value"]
    return card


def _press(teams: TeamsBot, user: Any, answer: Call, action: dict[str, Any], **inputs: Any) -> dict[str, Any]:
    """`user` presses `action` of a form, with these input values merged into its data (as Teams does)."""
    click = teams.click(user, answer, useful=False)
    click["value"]["action"] = {"type": "Action.Execute", "verb": action["verb"], "data": {**action["data"], **inputs}}
    response = teams.post(click)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_thumbs_down_asks_why_on_the_card_and_the_reason_and_comment_reach_put_feedback(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    answer = teams.answer(teams.message(ALICE, AURORA))
    form = _form(teams, answer)
    assert form["body"][0] == answer.cards[-1]["body"][0]  # the answer stays in view
    choices = next(b for b in form["body"] if b["type"] == "Input.ChoiceSet")
    assert choices["isRequired"] and choices["id"] == "reason"
    assert [(c["value"], c["title"]) for c in choices["choices"]] == [(r.value, label) for r, label in WHY_NOT_USEFUL]
    comment = next(b for b in form["body"] if b["type"] == "Input.Text")
    assert comment["id"] == "comment" and comment["maxLength"] == 1000
    send, cancel = form["actions"]
    assert (send["verb"], cancel["verb"]) == (WHY_VERB, NEVER_MIND_VERB)
    assert teams.sandbox.q.stats.feedback == [] and not [c for c in teams.bf.calls if c.kind == "update"]

    body = _press(teams, ALICE, answer, send, reason="NOT_FACTUALLY_CORRECT", comment="It is 2027,\r\nnot 2026.")
    card = body["value"]
    assert "actions" not in card and card["body"][-1]["text"] == "Thanks for the feedback."
    assert not any(b["type"].startswith("Input.") for b in card["body"])
    (record,) = teams.sandbox.q.stats.feedback
    assert (record.email, record.rating, record.reason, record.comment) == (
        ALICE.email, "NOT_USEFUL", "NOT_FACTUALLY_CORRECT", "It is 2027, not 2026."
    )
    update = next(c for c in teams.bf.calls if c.kind == "update")  # everyone sees the buttons go
    assert update.activity_id == answer.response_id and update.cards[0] == card
    labels = {"platform": "teams", "usefulness": "NOT_USEFUL", "reason": "NOT_FACTUALLY_CORRECT"}
    assert teams.bot.graph.metrics.registry.get_sample_value("qbot_feedback_total", labels) == 1


def test_cancel_gives_the_card_its_buttons_back_and_sends_nothing(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    answer = teams.answer(teams.message(ALICE, AURORA))
    cancel = _form(teams, answer)["actions"][1]
    back = _press(teams, ALICE, answer, cancel)["value"]
    assert back["actions"] == answer.cards[-1]["actions"] and back["body"] == answer.cards[-1]["body"]
    assert teams.sandbox.q.stats.feedback == []


def test_only_the_asker_s_why_counts_and_a_bad_reason_sends_nothing(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    teams.linked(BOB)
    answer = teams.answer(teams.message(ALICE, AURORA))
    send = _form(teams, answer, BOB)["actions"][0]  # anyone may open the form; the core decides on Send
    refused = _press(teams, BOB, answer, send, reason="NOT_HELPFUL", comment="not mine to rate")
    assert refused["type"] == "application/vnd.microsoft.activity.message"
    assert refused["value"] == "Only the person who asked can rate this answer."
    for inputs, says in (({"reason": "HELPFUL"}, "doesn't fit"), ({"reason": "MEH"}, "isn't one of the choices"),
                         ({}, "isn't one of the choices"), ({"reason": "OTHER", "comment": "x" * 1001}, "too long")):
        bad = _press(teams, ALICE, answer, send, **inputs)
        assert bad["type"] == "application/vnd.microsoft.activity.message" and says in bad["value"], (inputs, bad)
    assert teams.sandbox.q.stats.feedback == []
    assert not [c for c in teams.bf.calls if c.kind == "update"]
