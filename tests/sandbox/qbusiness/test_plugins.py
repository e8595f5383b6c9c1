"""The Q stand-in's plugins through boto3: ListPlugins, an action review run with actionExecution (checked like Q
checks it), and a plugin behind OAuth whose consent page hands the client a code for authChallengeResponse."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from sandbox.qbusiness.plugins import JIRA, SALESFORCE, plugin_id
from tests.sandbox.qbusiness.endpoint import APP_ID, QEndpoint, ask, refusal

ALICE = "alice@example.com"
BOB = "bob@example.com"
JIRA_ID = plugin_id(APP_ID, JIRA)
SALESFORCE_ID = plugin_id(APP_ID, SALESFORCE)
CALLBACK = "http://127.0.0.1:3978/auth/plugin/callback"


def in_plugin(plugin: str) -> dict[str, Any]:
    return {"chatMode": "PLUGIN_MODE", "chatModeConfiguration": {"pluginConfiguration": {"pluginId": plugin}}}


def review_of(client: Any, question: str = "Create a ticket: my laptop will not boot") -> dict[str, Any]:
    return ask(client, question, **in_plugin(JIRA_ID))


def execution(reviewed: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The review's current values, with `changes` (None drops a field), as actionExecution sends them."""
    review = reviewed["actionReview"]
    values = {key: spec.get("value") for key, spec in review["payload"].items()}
    values.update(changes)
    return {
        "pluginId": review["pluginId"],
        "payloadFieldNameSeparator": review["payloadFieldNameSeparator"],
        "payload": {key: {"value": value} for key, value in values.items() if value is not None},
    }


def run(client: Any, reviewed: dict[str, Any], action: dict[str, Any], **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client.chat_sync(
        applicationId=APP_ID, conversationId=reviewed["conversationId"],
        parentMessageId=reviewed["systemMessageId"], actionExecution=action, **extra,
    )
    return answer


def refused(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return refusal(lambda: call(*args, **kwargs))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def consent(url: str, decision: str = "approve") -> dict[str, str]:
    """Open the consent page, approve (or deny) it: the query the browser is sent back to the client with."""
    with urllib.request.urlopen(url) as page:
        assert b"Allow Amazon Q Business to use Salesforce?" in page.read()
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    form = urllib.parse.urlencode(
        {"state": query["state"], "redirect_uri": query["redirect_uri"], "decision": decision}
    ).encode()
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirected:
        opener.open(urllib.request.Request(url.partition("?")[0], data=form))
    assert redirected.value.code == 302
    location = redirected.value.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def test_list_plugins_names_both(qb: QEndpoint) -> None:
    plugins = qb.user(ALICE).list_plugins(applicationId=APP_ID)["plugins"]
    assert {(p["pluginId"], p["displayName"], p["type"], p["state"], p["buildStatus"]) for p in plugins} == {
        (JIRA_ID, "jira", "JIRA", "ENABLED", "READY"),
        (SALESFORCE_ID, "salesforce", "SALESFORCE", "ENABLED", "READY"),
    }
    assert refusal(qb.admin().list_plugins, applicationId=APP_ID)["Error"]["Code"] == "AccessDeniedException"


def test_an_action_review_has_every_field_type_and_runs_with_the_edited_values(qb: QEndpoint) -> None:
    alice = qb.user(ALICE)
    reviewed = review_of(alice)
    review = reviewed["actionReview"]
    assert (review["pluginId"], review["pluginType"], review["payloadFieldNameSeparator"]) == (JIRA_ID, "JIRA", ".")
    fields = sorted(review["payload"].items(), key=lambda item: item[1]["displayOrder"])
    assert [(key, spec["type"], spec["required"]) for key, spec in fields] == [
        ("fields.summary", "STRING", True), ("fields.project", "STRING", True), ("fields.priority", "NUMBER", False),
        ("fields.labels", "ARRAY", False), ("fields.notifyWatchers", "BOOLEAN", False),
        ("fields.description", "STRING", False),
    ]
    assert review["payload"]["fields.summary"]["value"] == "Create a ticket: my laptop will not boot"
    assert {"value": "ENG", "displayValue": "Engineering"} in review["payload"]["fields.project"]["allowedValues"]
    assert qb.q.plugin_actions == []

    done = run(alice, reviewed, execution(reviewed, **{"fields.project": "ENG", "fields.labels": ["hardware"]}))

    assert done["systemMessage"] == "Created Jira ticket ENG-101: Create a ticket: my laptop will not boot"
    assert done["conversationId"] == reviewed["conversationId"]
    (executed,) = qb.q.plugin_actions
    assert (executed.email, executed.plugin_id, executed.conversation_id) == (
        ALICE, JIRA_ID, reviewed["conversationId"]
    )
    assert executed.payload["fields.project"] == "ENG" and executed.payload["fields.labels"] == ["hardware"]
    assert executed.payload["fields.priority"] == 3 and executed.payload["fields.notifyWatchers"] is True
    again = refused(run, alice, reviewed, execution(reviewed))  # the review was used (and is no longer the parent)
    assert again["Error"]["Code"] == "ValidationException"
    assert len(qb.q.plugin_actions) == 1


def test_asking_for_a_ticket_reviews_one_without_plugin_mode(qb: QEndpoint) -> None:
    reviewed = ask(qb.user(ALICE), "Please open a ticket for a new monitor")
    assert reviewed["actionReview"]["pluginId"] == JIRA_ID
    assert "authChallengeRequest" not in reviewed and "actionReview" not in ask(qb.user(ALICE), "What is Aurora?")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"fields.summary": None}, "fields.summary is required"),
        ({"fields.summary": ""}, "fields.summary is required"),
        ({"fields.project": "SALES"}, "fields.project must be one of IT, ENG, HR"),
        ({"fields.labels": ["billing"]}, "fields.labels must be one of access, hardware, software, urgent"),
        ({"fields.priority": "high"}, "fields.priority must be a number"),
        ({"fields.notifyWatchers": "yes"}, "fields.notifyWatchers must be a boolean"),
        ({"fields.labels": "hardware"}, "fields.labels must be an array"),
        ({"fields.assignee": "bob"}, "fields.assignee is not a field of the reviewed action"),
    ],
)
def test_a_payload_unlike_its_review_is_refused_and_not_run(
    qb: QEndpoint, changes: dict[str, Any], problem: str
) -> None:
    alice = qb.user(ALICE)
    reviewed = review_of(alice)
    error = refused(run, alice, reviewed, execution(reviewed, **changes))["Error"]
    assert error["Code"] == "ValidationException" and problem in error["Message"]
    assert qb.q.plugin_actions == []
    run(alice, reviewed, execution(reviewed))  # the review still waits: a corrected payload runs
    assert len(qb.q.plugin_actions) == 1


def test_an_action_runs_only_on_its_own_review(qb: QEndpoint) -> None:
    alice = qb.user(ALICE)
    reviewed = review_of(alice)
    other = ask(alice, "What is Project Aurora?")
    wrong_plugin = dict(execution(reviewed), pluginId=SALESFORCE_ID)
    unknown_plugin = dict(execution(reviewed), pluginId="0c1d7a52-3f4e-4b8a-9d61-2e5f8c9b0a17")
    for action, where in (
        (wrong_plugin, reviewed), (unknown_plugin, reviewed), (execution(reviewed), other),
        (dict(execution(reviewed), payloadFieldNameSeparator="/"), reviewed),
    ):
        assert refused(run, alice, where, action)["Error"]["Code"] == "ValidationException", action
    bob = refused(run, qb.user(BOB), reviewed, execution(reviewed))  # not his conversation: it does not exist
    assert bob["Error"]["Code"] == "ResourceNotFoundException"
    no_conversation = refusal(alice.chat_sync, applicationId=APP_ID, actionExecution=execution(reviewed))
    assert no_conversation["Error"]["Code"] == "ValidationException"
    assert qb.q.plugin_actions == []


def test_salesforce_asks_for_consent_then_answers_the_question_it_held_up(qb: QEndpoint) -> None:
    alice = qb.user(ALICE)
    challenged = ask(alice, "Which opportunities close this quarter?", **in_plugin(SALESFORCE_ID))
    url = challenged["authChallengeRequest"]["authorizationUrl"]
    assert url.startswith(qb.url + "/plugins/oauth/authorize?")
    returned = consent(url)

    def respond(client: Any, response_map: dict[str, str], where: dict[str, Any] = challenged) -> dict[str, Any]:
        answer: dict[str, Any] = client.chat_sync(
            applicationId=APP_ID, conversationId=where["conversationId"], parentMessageId=where["systemMessageId"],
            authChallengeResponse={"responseMap": response_map},
        )
        return answer

    assert refused(respond, alice, {**returned, "code": "forged"})["Error"]["Code"] == "ValidationException"
    assert refused(respond, qb.user(BOB), returned)["Error"]["Code"] == "ResourceNotFoundException"
    answered = respond(alice, returned)
    assert answered["systemMessage"].startswith(f"From Salesforce, as {ALICE}: 3 open opportunities")
    assert "Which opportunities close this quarter?" in answered["systemMessage"]
    assert refused(respond, alice, returned, answered)["Error"]["Code"] == "ValidationException"  # code used
    later = ask(alice, "And the accounts?", **in_plugin(SALESFORCE_ID))
    assert "authChallengeRequest" not in later and later["systemMessage"].startswith("From Salesforce")
    assert "authChallengeRequest" in ask(qb.user(BOB), "Accounts?", **in_plugin(SALESFORCE_ID))  # per user


def test_a_denied_or_unknown_consent_gives_no_code(qb: QEndpoint) -> None:
    challenged = ask(qb.user(ALICE), "My accounts?", **in_plugin(SALESFORCE_ID))
    url = challenged["authChallengeRequest"]["authorizationUrl"]
    assert consent(url, decision="deny").get("error") == "access_denied"
    with pytest.raises(urllib.error.HTTPError) as unknown:
        urllib.request.urlopen(url.replace("state=", "state=x"))
    assert unknown.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as elsewhere:
        urllib.request.urlopen(url.replace(urllib.parse.quote(CALLBACK, safe=""), "https%3A%2F%2Fevil.example"))
    assert elsewhere.value.code == 400
