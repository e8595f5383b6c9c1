"""👍/👎 on an answer card: Action.Execute arrives as an `adaptiveCard/action` invoke; only the asker rates."""

from __future__ import annotations

from tests.adapters.teams.conftest import ALICE, BOB, CHANNEL, TeamsBot

AURORA = "What is Project Aurora?"


def test_asker_rates_an_answer_and_the_card_says_thanks_for_everyone(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    teams.linked(BOB)
    answer = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True))
    data = answer.cards[-1]["actions"][0]["data"]

    # someone else's click is refused, to them only: no feedback recorded, the card untouched
    refused = teams.post(teams.click(BOB, answer, useful=False))
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
