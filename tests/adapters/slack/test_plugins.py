"""Plugin actions and plugin sign-in in Slack, against the sandbox's Q and its plugins: "Review and run" opens a
modal built from Q's actionReview, its submission reaches Q as actionExecution with the edited values and the
asker's credentials; someone else's submit, Cancel and a missing required value send nothing. "Authorize
salesforce" opens the sandbox's consent page; its return answers the question in the thread."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import httpx

from adapters.slack.plugins import ACTION_VIEW, FIELD_INPUT, field_block_id
from adapters.slack.render import PLUGIN_BLOCK, PLUGIN_CANCEL_BUTTON, PLUGIN_REVIEW_BUTTON
from bot.plugins import NOT_YOUR_ACTION, NOTHING_RUN, REVIEW_GONE
from tests.adapters.slack.conftest import CHANNEL, SlackBot

TICKET = "qplugin jira create a ticket: my laptop will not boot"
ALICE_DM = "DU_ALICE"
SUMMARY, PROJECT, PRIORITY, LABELS, NOTIFY, DESCRIPTION = (field_block_id(i) for i in range(6))


def _reviewed(slack: SlackBot, text: str = TICKET) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Alice asks for a ticket in her DM: the thread, the answer as Slack holds it, its plugin buttons by id."""
    ts = slack.dm("U_ALICE", text)
    answer = slack.answer_in(ALICE_DM, ts)
    block = next(b for b in answer["blocks"] if b.get("block_id") == PLUGIN_BLOCK)
    return ts, answer, {button["action_id"]: button for button in block["elements"]}


def _open(slack: SlackBot, user: str, button: dict[str, Any]) -> tuple[str, str | None]:
    """`user` clicks "Review and run": the click's response_url hook and the modal it opened (None: none)."""
    opened = len(slack.fake.calls_to("views.open"))
    hook = slack.click(user, button, message=None, channel=ALICE_DM)
    if user != "U_ALICE":
        return hook, None
    call = slack.fake.wait_calls("views.open", opened + 1)[-1]
    metadata = call.args["view"]["private_metadata"]
    return hook, next(v for v, view in slack.fake.views.items() if view["private_metadata"] == metadata)


def _post(slack: SlackBot, payload: dict[str, Any]) -> httpx.Response:
    response = slack.post(urllib.parse.urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
    assert response.status_code == 200
    return response


def _values(**changes: Any) -> dict[str, dict[str, Any]]:
    """What the user leaves or types in the modal: the review's values, with `changes` by block id."""
    values: dict[str, Any] = {
        SUMMARY: "my laptop will not boot", PROJECT: "0", PRIORITY: "3", LABELS: [], NOTIFY: ["true"],
        DESCRIPTION: None, **changes,
    }
    return {block: {FIELD_INPUT: value} for block, value in values.items()}


def test_review_edit_and_run_reaches_q_as_the_asker(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    ts, answer, buttons = _reviewed(slack)
    assert "Review the ticket below" in answer["text"]
    assert "qbot_share" not in json.dumps(answer["blocks"])  # a review is not for sharing
    _hook, view_id = _open(slack, "U_ALICE", buttons[PLUGIN_REVIEW_BUTTON])
    assert view_id is not None
    modal = slack.fake.views[view_id]
    assert modal["callback_id"] == ACTION_VIEW and modal["notify_on_close"] is True
    inputs = {b["block_id"]: b for b in modal["blocks"] if b["type"] == "input"}
    assert [(b["label"]["text"], b["element"]["type"], b["optional"]) for b in inputs.values()] == [
        ("Summary", "plain_text_input", False), ("Project", "static_select", False),
        ("Priority", "number_input", True), ("Labels", "multi_static_select", True),
        ("Notify watchers", "checkboxes", True), ("Description", "plain_text_input", True),
    ]
    assert inputs[SUMMARY]["element"]["initial_value"] == "create a ticket: my laptop will not boot"
    assert inputs[PROJECT]["element"]["initial_option"]["text"]["text"] == "IT Help Desk"
    assert inputs[PRIORITY]["element"]["initial_value"] == "3"
    assert inputs[NOTIFY]["element"]["initial_options"][0]["value"] == "true"
    assert inputs[SUMMARY]["hint"]["text"] == "A one-line title for the ticket."
    project_options = {o["text"]["text"]: o["value"] for o in inputs[PROJECT]["element"]["options"]}

    edited = _values(**{SUMMARY: "Laptop dead after update", PROJECT: project_options["Engineering"],
                        PRIORITY: "1", LABELS: ["1"], NOTIFY: []})
    response = _post(slack, slack.fake.submission(view_id, "U_ALICE", edited))
    assert not response.text  # acknowledged: Slack closes the modal

    q = slack.sandbox.q
    executed = slack.fake.wait_for(lambda: q.plugin_actions or None)
    assert [(e.email, e.plugin_id) for e in executed] == [("alice@example.com", executed[0].plugin_id)]
    assert executed[0].payload == {
        "fields.summary": "Laptop dead after update", "fields.project": "ENG", "fields.priority": 1,
        "fields.labels": ["hardware"], "fields.notifyWatchers": False,
    }
    result = slack.fake.wait_for(lambda: next((c.args for c in slack.fake.calls_to("chat.postMessage")
                                                if "Created Jira ticket" in str(c.args.get("text"))), None))
    assert result["channel"] == ALICE_DM and result["thread_ts"] == ts
    assert "ENG-101: Laptop dead after update" in result["text"]
    reopened = slack.click("U_ALICE", buttons[PLUGIN_REVIEW_BUTTON], message=None, channel=ALICE_DM)
    assert REVIEW_GONE.split(",")[0] in slack.responses(reopened)[0]["text"]  # run once: its form is gone
    assert len(q.plugin_actions) == 1


def test_only_the_asker_may_open_or_run_the_action(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    slack.linked("U_BOB", "bob")
    _ts, _answer, buttons = _reviewed(slack)
    opened = len(slack.fake.calls_to("views.open"))
    hook, _none = _open(slack, "U_BOB", buttons[PLUGIN_REVIEW_BUTTON])
    assert NOT_YOUR_ACTION in slack.responses(hook)[0]["text"]
    assert len(slack.fake.calls_to("views.open")) == opened  # Bob sees no form

    _hook, view_id = _open(slack, "U_ALICE", buttons[PLUGIN_REVIEW_BUTTON])
    assert view_id is not None
    bob = slack.fake.submission(view_id, "U_BOB", _values())  # Alice's review id, submitted by Bob
    assert not _post(slack, bob).text
    told = slack.fake.wait_for(lambda: next((c.args for c in slack.fake.calls_to("chat.postMessage")
                                              if NOT_YOUR_ACTION in str(c.args.get("text"))), None))
    assert told["channel"] == "DU_BOB"  # the submitter is told, in their own DM
    assert slack.sandbox.q.plugin_actions == []
    _post(slack, slack.fake.submission(view_id, "U_ALICE", _values()))  # the review still waits for Alice
    assert slack.fake.wait_for(lambda: slack.sandbox.q.plugin_actions or None)[0].email == "alice@example.com"


def test_cancel_runs_nothing_and_ends_the_review(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    _ts, _answer, buttons = _reviewed(slack)
    _hook, view_id = _open(slack, "U_ALICE", buttons[PLUGIN_REVIEW_BUTTON])
    assert view_id is not None
    hook = slack.click("U_ALICE", buttons[PLUGIN_CANCEL_BUTTON], message=None, channel=ALICE_DM)
    assert slack.responses(hook)[0]["text"] == NOTHING_RUN
    calls = len(slack.fake.calls_to("response"))
    _post(slack, slack.fake.submission(view_id, "U_ALICE", _values()))  # the form, still open, is submitted
    gone = slack.fake.wait_calls("response", calls + 1)[-1].args
    assert REVIEW_GONE.split(",")[0] in gone["text"]
    assert slack.sandbox.q.plugin_actions == []
    assert slack.sandbox.q.stats.operations["ChatSync"] == 1  # the question; nothing since


def test_closing_the_modal_cancels(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    _ts, _answer, buttons = _reviewed(slack)
    hook, view_id = _open(slack, "U_ALICE", buttons[PLUGIN_REVIEW_BUTTON])
    assert view_id is not None
    closed = {**slack.fake.submission(view_id, "U_ALICE", _values()), "type": "view_closed", "is_cleared": False}
    assert not _post(slack, closed).text
    assert slack.responses(hook)[0]["text"] == NOTHING_RUN
    reopened = slack.click("U_ALICE", buttons[PLUGIN_REVIEW_BUTTON], message=None, channel=ALICE_DM)
    assert REVIEW_GONE.split(",")[0] in slack.responses(reopened)[0]["text"]
    assert slack.sandbox.q.plugin_actions == []


def test_a_missing_required_value_or_a_foreign_choice_keeps_the_modal_open_and_sends_nothing(
    slack: SlackBot,
) -> None:
    slack.linked("U_ALICE", "alice")
    _ts, _answer, buttons = _reviewed(slack)
    _hook, view_id = _open(slack, "U_ALICE", buttons[PLUGIN_REVIEW_BUTTON])
    assert view_id is not None
    payload = slack.fake.submission(view_id, "U_ALICE", _values())
    state = payload["view"]["state"]["values"]
    state[SUMMARY][FIELD_INPUT]["value"] = None  # a client that lets a required field through empty
    state[PROJECT][FIELD_INPUT]["selected_option"] = {"text": {"type": "plain_text", "text": "x"}, "value": "9"}
    state[PRIORITY][FIELD_INPUT]["value"] = "soon"
    response = _post(slack, payload)
    assert response.json() == {"response_action": "errors", "errors": {
        SUMMARY: "Summary is required.",
        PROJECT: "Project must be one of IT Help Desk, Engineering, People Team.",
        PRIORITY: "Priority must be a number.",
    }}
    assert slack.sandbox.q.plugin_actions == []
    assert slack.sandbox.q.stats.operations["ChatSync"] == 1


def test_plugin_sign_in_answers_the_question_in_its_thread(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    ts = slack.dm("U_ALICE", "qplugin salesforce which opportunities close this quarter?")
    answer = slack.answer_in(ALICE_DM, ts)
    assert "Salesforce needs your authorization first." in answer["text"]
    block = next(b for b in answer["blocks"] if b.get("block_id") == PLUGIN_BLOCK)
    (button,) = block["elements"]
    assert button["text"]["text"] == "Authorize salesforce"
    start = button["url"]
    assert start.startswith(slack.url + "/auth/plugin/start?c=")

    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        to_consent = browser.get(start)
        assert to_consent.status_code == 302
        consent_url = to_consent.headers["location"]
        assert consent_url.startswith(slack.sandbox.q_url + "/plugins/oauth/authorize?")
        assert "Allow Amazon Q Business to use Salesforce?" in browser.get(consent_url).text
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(consent_url).query))
        approved = browser.post(consent_url.partition("?")[0], data={
            "state": query["state"], "redirect_uri": query["redirect_uri"], "decision": "approve"})
        callback = approved.headers["location"]
        assert callback.startswith(slack.url + "/auth/plugin/callback?code=")
        with httpx.Client(follow_redirects=False, timeout=10) as stranger:  # the code alone finishes nothing
            assert stranger.get(callback).status_code == 400
        page = browser.get(callback)
        assert page.status_code == 200 and "salesforce is authorized" in page.text
        replay = browser.get(callback)  # the cookie is gone with its use
        assert replay.status_code == 400

    posted = slack.fake.wait_for(lambda: next((c.args for c in slack.fake.calls_to("chat.postMessage")
                                                if "From Salesforce" in str(c.args.get("text"))), None))
    assert posted["channel"] == ALICE_DM and posted["thread_ts"] == ts
    assert "as alice@example.com" in posted["text"] and "which opportunities close this quarter?" in posted["text"]
    assert any(email == "alice@example.com" for _app, email, _plugin in slack.sandbox.q.plugins.authorized)


def test_in_a_channel_the_review_is_the_askers_alone_and_the_result_lands_in_the_thread(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    ts = slack.mention("U_ALICE", "qplugin jira create a ticket: projector in room 4 is broken")
    review = slack.fake.wait_for(lambda: next((c.args for c in slack.fake.calls_to("chat.postEphemeral")
                                                if "Review the ticket" in str(c.args.get("text"))), None))
    assert review["user"] == "U_ALICE" and review["channel"] == CHANNEL and review["thread_ts"] == ts
    placeholder = next(c.args for c in slack.fake.calls_to("chat.postMessage") if c.args.get("thread_ts") == ts)
    slack.fake.wait_for(lambda: any(c.args.get("channel") == CHANNEL for c in slack.fake.calls_to("chat.delete"))
                        or None)  # no "Thinking…" left behind for everyone
    assert "Thinking" in placeholder["text"]
    assert not any("Review the ticket" in str(m.get("text")) for m in slack.fake.messages.values())
    buttons = {b["action_id"]: b for block in review["blocks"] if block.get("block_id") == PLUGIN_BLOCK
               for b in block["elements"]}
    opened = len(slack.fake.calls_to("views.open"))
    slack.click("U_ALICE", buttons[PLUGIN_REVIEW_BUTTON], message=None, channel=CHANNEL, ephemeral=True)
    view = slack.fake.wait_calls("views.open", opened + 1)[-1].args["view"]
    view_id = next(v for v, shown in slack.fake.views.items() if shown["private_metadata"] == view["private_metadata"])
    _post(slack, slack.fake.submission(view_id, "U_ALICE", _values(**{SUMMARY: "Projector broken"})))
    result = slack.fake.wait_for(lambda: next((c.args for c in slack.fake.calls_to("chat.postMessage")
                                                if "Created Jira ticket" in str(c.args.get("text"))), None))
    assert result["channel"] == CHANNEL and result["thread_ts"] == ts  # the channel answers in the thread
    assert "IT-101: Projector broken" in result["text"]
