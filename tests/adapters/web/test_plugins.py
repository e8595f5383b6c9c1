"""Plugin actions in the web console: an answer proposing one carries its form (Q's fields), /web/api/plugin/run
sends the edited values as the asker (the stand-in records them), someone else's run, a missing required value
and a cancel send nothing; in a real Chromium the form is built, edited and run by clicking."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
from playwright.sync_api import Browser, expect

from bot.plugins import NOT_YOUR_ACTION, NOTHING_RUN, REVIEW_GONE
from tests.adapters.web.conftest import WebBot, signed_in_page

TICKET = "qplugin jira create a ticket: my badge does not open the garage"


def _signed_in(bot: WebBot, username: str) -> tuple[httpx.Client, dict[str, Any]]:
    http = bot.browser()
    return http, bot.sign_in(http, username)


def _reviewed(bot: WebBot, http: httpx.Client, me: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = bot.post(
        http, "/web/api/ask", {"text": TICKET, "thread": "t1", "message_id": "m1"}, csrf=me["csrf"]
    ).json()
    assert answer["type"] == "answer" and answer["action_review"], answer
    return answer


def _values(review: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**{field["key"]: field["value"] for field in review["fields"]}, **changes}


def test_the_form_runs_with_the_edited_values_as_the_asker(web_bot: WebBot) -> None:
    http, me = _signed_in(web_bot, "alice")
    review = _reviewed(web_bot, http, me)["action_review"]
    fields = {field["label"]: field for field in review["fields"]}
    assert [f["label"] for f in review["fields"]] == [
        "Summary", "Project", "Priority", "Labels", "Notify watchers", "Description"]
    assert fields["Summary"]["required"] and fields["Summary"]["value"] == TICKET.removeprefix("qplugin jira ")
    assert fields["Project"]["value"] == ["0"] and fields["Project"]["choices"][1] == {
        "value": "1", "label": "Engineering"}
    assert (fields["Priority"]["type"], fields["Priority"]["value"]) == ("NUMBER", 3)
    assert (fields["Notify watchers"]["type"], fields["Notify watchers"]["value"]) == ("BOOLEAN", True)

    values = _values(review, **{"fields.summary": "Badge fails at garage", "fields.project": "2",
                                "fields.labels": ["0"], "fields.priority": "2"})
    ran = web_bot.post(http, "/web/api/plugin/run", {"review_id": review["review_id"], "values": values},
                       csrf=me["csrf"])
    assert ran.status_code == 200 and ran.json()["text"] == "Created Jira ticket HR-101: Badge fails at garage"
    (executed,) = web_bot.sandbox.q.plugin_actions
    assert executed.email == "alice@example.com"
    assert executed.payload == {"fields.summary": "Badge fails at garage", "fields.project": "HR",
                                "fields.priority": 2, "fields.labels": ["access"], "fields.notifyWatchers": True}
    again = web_bot.post(http, "/web/api/plugin/run", {"review_id": review["review_id"], "values": values},
                         csrf=me["csrf"])
    assert again.status_code == 409 and again.json()["error"] == REVIEW_GONE


def test_someone_elses_run_a_missing_value_and_cancel_send_nothing(web_bot: WebBot) -> None:
    http, me = _signed_in(web_bot, "alice")
    review = _reviewed(web_bot, http, me)["action_review"]
    bob, bob_me = _signed_in(web_bot, "bob")
    run = {"review_id": review["review_id"], "values": _values(review)}
    refused = web_bot.post(bob, "/web/api/plugin/run", run, csrf=bob_me["csrf"])
    assert refused.status_code == 403 and refused.json()["error"] == NOT_YOUR_ACTION
    missing = web_bot.post(http, "/web/api/plugin/run", {**run, "values": _values(review, **{"fields.summary": ""})},
                           csrf=me["csrf"])
    assert missing.status_code == 400 and "Summary is required" in missing.json()["error"]
    malformed = web_bot.post(http, "/web/api/plugin/run", {**run, "values": {"fields.summary": {"x": 1}}},
                             csrf=me["csrf"])
    assert malformed.status_code == 400 and "must be text, a number, true or false" in malformed.json()["error"]
    forged = web_bot.post(http, "/web/api/plugin/run", run, csrf=None)  # no CSRF token: refused before anything
    assert forged.status_code == 403
    cancelled = web_bot.post(http, "/web/api/plugin/cancel", {"review_id": review["review_id"]}, csrf=me["csrf"])
    assert cancelled.status_code == 200 and cancelled.json() == {"type": "info", "text": NOTHING_RUN}
    assert web_bot.post(http, "/web/api/plugin/run", run, csrf=me["csrf"]).status_code == 409
    assert web_bot.sandbox.q.plugin_actions == [] and web_bot.sandbox.q.stats.operations["ChatSync"] == 1


def test_in_a_browser_the_form_is_edited_and_run(web_bot: WebBot, chromium: Browser) -> None:
    page, problems = signed_in_page(chromium, web_bot)
    page.get_by_test_id("input").fill(TICKET)
    page.get_by_test_id("send").click()

    form = page.get_by_test_id("plugin-form")
    expect(form.get_by_test_id("plugin-field")).to_have_count(6)
    summary = form.get_by_label("Summary *")
    expect(summary).to_have_value("create a ticket: my badge does not open the garage")
    summary.fill("")
    form.get_by_test_id("plugin-run").click()  # the browser itself refuses an empty required field
    assert web_bot.sandbox.q.plugin_actions == []
    summary.fill("Garage badge broken")
    form.get_by_label("Project *").select_option(label="Engineering")
    form.get_by_label("Notify watchers").uncheck()
    form.get_by_test_id("plugin-run").click()
    expect(page.get_by_test_id("plugin-done")).to_have_text("Sent to Amazon Q.")
    expect(page.get_by_test_id("answer-text").last).to_contain_text("Created Jira ticket ENG-101: Garage badge broken")
    (executed,) = web_bot.sandbox.q.plugin_actions
    assert executed.payload["fields.notifyWatchers"] is False and executed.payload["fields.project"] == "ENG"
    assert problems == []
    page.context.close()


def test_authorizing_a_plugin_from_the_console_then_asking_again_answers(web_bot: WebBot) -> None:
    http, me = _signed_in(web_bot, "alice")
    ask = {"text": "qplugin salesforce my open opportunities?", "thread": "t1", "message_id": "m1"}
    challenged = web_bot.post(http, "/web/api/ask", ask, csrf=me["csrf"]).json()
    auth = challenged["plugin_auth"]
    assert auth["plugin"] == "salesforce" and auth["url"].startswith(web_bot.url + "/auth/plugin/start?c=")
    consent = http.get(auth["url"]).headers["location"]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(consent).query))
    approved = http.post(consent.partition("?")[0], data={
        "state": query["state"], "redirect_uri": query["redirect_uri"], "decision": "approve"})
    page = http.get(approved.headers["location"])
    assert page.status_code == 200 and "salesforce is authorized. Go back and ask your question again." in page.text
    again = web_bot.post(http, "/web/api/ask", {**ask, "message_id": "m2"}, csrf=me["csrf"]).json()
    assert again["text"].startswith("From Salesforce, as alice@example.com") and again["plugin_auth"] is None
