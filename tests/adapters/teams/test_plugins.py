"""Plugin actions in Teams: a proposed action is an Adaptive Card form (Q's fields as inputs); Run arrives as an
`adaptiveCard/action` invoke with the inputs' values and reaches Q as actionExecution from the asker's
credentials; someone else's Run, Cancel and a missing required value send nothing. Authorizing a plugin in the
browser answers the question it held up in the chat it was asked in."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx

from adapters.teams.plugins import CANCEL_VERB, RAN, RUN_VERB, field_input_id
from bot.plugins import NOT_YOUR_ACTION, NOTHING_RUN, REVIEW_GONE
from sandbox.botframework import Call, FakeBotFramework
from tests.adapters.teams.conftest import ALICE, BOB, TeamsBot, teams_env

TICKET = "qplugin jira create a ticket: the VPN drops every hour"
MESSAGE = "application/vnd.microsoft.activity.message"


def _form(teams: TeamsBot, activity: dict[str, Any]) -> Call:
    """Ask; the bot's message that holds the action's form (it follows the answer)."""
    calls = teams.ask(activity, count=2)
    return next(c for c in calls if any(a.get("verb") == RUN_VERB for card in c.cards for a in card.get("actions", [])))


def _press(teams: TeamsBot, user: Any, form: Call, verb: str, **inputs: Any) -> dict[str, Any]:
    action = next(a for a in form.cards[-1]["actions"] if a["verb"] == verb)
    invoke = teams.press(user, form, {"verb": verb, "data": {**action["data"], **inputs}})
    response = teams.post(invoke)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _inputs(form: Call, **changes: Any) -> dict[str, Any]:
    """The form's inputs as shown (their ids and values), with `changes` by field position."""
    values = {i["id"]: i.get("value") for i in form.cards[-1]["body"] if str(i.get("type")).startswith("Input.")}
    return {**values, **{field_input_id(int(position[1:])): value for position, value in changes.items()}}


def test_run_sends_the_edited_values_as_the_asker(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    form = _form(teams, teams.message(ALICE, TICKET))
    inputs = [i for i in form.cards[-1]["body"] if str(i.get("type")).startswith("Input.")]
    assert [(i["label"], i["type"]) for i in inputs] == [
        ("Summary", "Input.Text"), ("Project", "Input.ChoiceSet"), ("Priority", "Input.Number"),
        ("Labels", "Input.ChoiceSet"), ("Notify watchers", "Input.Toggle"), ("Description", "Input.Text"),
    ]
    assert inputs[0]["isRequired"] is True and inputs[0]["value"] == "create a ticket: the VPN drops every hour"
    assert inputs[3]["isMultiSelect"] is True and inputs[4]["value"] == "true"

    body = _press(teams, ALICE, form, RUN_VERB, **_inputs(form, f0="VPN drops hourly", f1="1", f3="0,3", f4="false"))

    assert body["type"] == "application/vnd.microsoft.card.adaptive" and body["value"]["body"][0]["text"] == RAN
    (executed,) = teams.sandbox.q.plugin_actions
    assert executed.email == ALICE.email
    assert executed.payload == {
        "fields.summary": "VPN drops hourly", "fields.project": "ENG", "fields.priority": 3,
        "fields.labels": ["access", "urgent"], "fields.notifyWatchers": False,
    }
    result = teams.bf.wait_for(lambda calls: next((c for c in calls if "Created Jira ticket" in str(c.cards)), None))
    assert result.conversation_id == ALICE.personal_chat
    again = _press(teams, ALICE, form, RUN_VERB, **_inputs(form))
    assert again["type"] == MESSAGE and again["value"].startswith(REVIEW_GONE.split(",")[0])
    assert len(teams.sandbox.q.plugin_actions) == 1


def test_someone_elses_run_and_a_missing_required_value_send_nothing(
    make_teams: Callable[..., TeamsBot], bot_framework: FakeBotFramework
) -> None:
    teams = make_teams(**teams_env(bot_framework))
    teams.linked(ALICE)
    teams.linked(BOB)
    form = _form(teams, teams.message(ALICE, TICKET))
    bob = _press(teams, BOB, form, RUN_VERB, **_inputs(form))
    assert (bob["type"], bob["value"]) == (MESSAGE, NOT_YOUR_ACTION)
    missing = _press(teams, ALICE, form, RUN_VERB, **_inputs(form, f0=""))
    assert missing["type"] == MESSAGE and "Summary is required" in missing["value"]
    assert teams.sandbox.q.plugin_actions == []
    assert teams.sandbox.q.stats.operations["ChatSync"] == 1


def test_cancel_sends_nothing(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    form = _form(teams, teams.message(ALICE, TICKET))
    cancelled = _press(teams, ALICE, form, CANCEL_VERB)
    assert cancelled["value"]["body"][0]["text"] == NOTHING_RUN and "actions" not in cancelled["value"]
    late = _press(teams, ALICE, form, RUN_VERB, **_inputs(form))
    assert late["type"] == MESSAGE and late["value"].startswith(REVIEW_GONE.split(",")[0])
    assert teams.sandbox.q.plugin_actions == [] and teams.sandbox.q.stats.operations["ChatSync"] == 1


def test_authorizing_a_plugin_answers_the_question_where_it_was_asked(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    calls = teams.ask(teams.message(ALICE, "qplugin salesforce which opportunities close this quarter?"), count=2)
    start = next(a["url"] for c in calls for card in c.cards for a in card.get("actions", [])
                 if a.get("type") == "Action.OpenUrl")
    assert start.startswith(teams.url + "/auth/plugin/start?c=")
    before = len(teams.bf.calls)
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        consent = browser.get(start).headers["location"]
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(consent).query))
        approved = browser.post(consent.partition("?")[0], data={
            "state": query["state"], "redirect_uri": query["redirect_uri"], "decision": "approve"})
        page = browser.get(approved.headers["location"])
    assert page.status_code == 200 and "salesforce is authorized" in page.text
    answer = teams.bf.wait_for(lambda all_calls: next(
        (c for c in all_calls[before:] if "From Salesforce, as alice@example.com" in str(c.cards)), None))
    assert answer.conversation_id == ALICE.personal_chat
    assert "which opportunities close this quarter?" in str(answer.cards)
