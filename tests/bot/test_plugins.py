"""Plugins in the core (bot.plugins through Core), against a whole bot with real Redis and the sandbox's Q and its
plugins: the commands, a review kept for its asker and run once with the checked values, cancel, a thread that
moved on, and a plugin consent finished once by its callback, answering the question it held up."""

from __future__ import annotations

import dataclasses
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from bot.channel_policy import ChannelPolicies, ChannelPolicy, ChannelPolicyError
from bot.model import (
    ActionField,
    ActionReview,
    Answer,
    ChatIdentity,
    FieldChoice,
    FieldType,
    IncomingMessage,
    Notice,
    NoticeKind,
    PlacedReply,
)
from bot.plugins import (
    AUTH_GONE,
    AUTH_MISMATCH,
    NOT_YOUR_ACTION,
    NOTHING_RUN,
    PLUGIN_USAGE,
    REVIEW_GONE,
    REVIEW_PREFIX,
    REVIEW_SECONDS,
    THREAD_MOVED_ON,
    ActionRefused,
    checked_values,
)
from sandbox.world import APP_ID, Sandbox
from tests.conftest import LoopThread
from tests.e2e.conftest import RunningBot, start_bot
from tests.e2e.test_chain import link

ALICE = ChatIdentity("test", "T1", "U-ALICE")
BOB = ChatIdentity("test", "T1", "U-BOB")
TICKET = "qplugin jira create a ticket: the printer on floor 3 jams"

REVIEW = ActionReview("p", "JIRA", (
    ActionField("summary", "Summary", FieldType.STRING, required=True),
    ActionField("priority", "Priority", FieldType.NUMBER),
    ActionField("project", "Project", FieldType.STRING, required=True,
                choices=(FieldChoice("0", "IT", "IT Help Desk"), FieldChoice("1", 7, "Seven"))),
    ActionField("labels", "Labels", FieldType.ARRAY, choices=(FieldChoice("0", "a", "A"), FieldChoice("1", "b", "B"))),
    ActionField("tags", "Tags", FieldType.ARRAY),
    ActionField("notify", "Notify", FieldType.BOOLEAN),
), ".")


@pytest.fixture
def make_bot(
    servers: LoopThread, sandbox: Sandbox, bot_socket: socket.socket, redis_url: str
) -> Iterator[Callable[..., RunningBot]]:
    """One whole bot (on the socket the sandbox IdP knows), with extra QBOT_* settings."""
    started: list[RunningBot] = []

    def make(**env: str) -> RunningBot:
        started.append(start_bot(servers, sandbox, bot_socket, redis_url, **env))
        return started[-1]

    yield make
    for running in started:
        servers.run(running._served.stop())  # type: ignore[attr-defined]


@pytest.fixture
def bot(make_bot: Callable[..., RunningBot]) -> RunningBot:
    return make_bot()


def problems_of(submitted: dict[str, Any]) -> str:
    with pytest.raises(ActionRefused) as refused:
        checked_values(REVIEW, submitted)
    return refused.value.user_message


def test_checked_values_turn_form_values_into_q_values() -> None:
    assert checked_values(REVIEW, {
        "summary": "  Jam  ", "priority": "2", "project": "1", "labels": ["1", "0"], "tags": "x, y\nz",
        "notify": False,
    }) == {"summary": "Jam", "priority": 2, "project": 7, "labels": ["b", "a"], "tags": ["x", "y", "z"],
           "notify": False}
    assert checked_values(REVIEW, {"summary": "s", "project": "0", "priority": "2.5", "notify": "yes",
                                   "labels": [], "tags": ""}) == {
        "summary": "s", "project": "IT", "priority": 2.5, "notify": True}


@pytest.mark.parametrize(("submitted", "problem"), [
    ({"project": "0"}, "Summary is required"),
    ({"summary": "   ", "project": "0"}, "Summary is required"),
    ({"summary": "s"}, "Project is required"),
    ({"summary": "s", "project": "2"}, "Project must be one of IT Help Desk, Seven"),
    ({"summary": "s", "project": ["0", "1"]}, "Project takes one value"),
    ({"summary": "s", "project": "0", "labels": ["0", "9"]}, "Labels must be one of A, B"),
    ({"summary": "s", "project": "0", "priority": "high"}, "Priority must be a number"),
    ({"summary": "s", "project": "0", "priority": "nan"}, "Priority must be a number"),
    ({"summary": "s", "project": "0", "priority": True}, "Priority must be a number"),
    ({"summary": "s", "project": "0", "notify": "maybe"}, "Notify must be yes or no"),
    ({"summary": "s", "project": "0", "tags": [1]}, "Tags must be a list of text"),
    ({"summary": 5, "project": "0"}, "Summary must be text"),
    ({"summary": "x" * 4001, "project": "0"}, "Summary is longer than 4000 characters"),
    ({"summary": "s", "project": "0", "assignee": "bob"}, "The form has a field this action does not have"),
])
def test_values_that_do_not_fit_the_review_are_refused_by_name(submitted: dict[str, Any], problem: str) -> None:
    message = problems_of(submitted)
    assert message.startswith("Nothing was run: ") and problem in message


def ask(bot: RunningBot, identity: ChatIdentity, text: str, *, thread: str = "t1", shared: bool = False) -> Any:
    message = IncomingMessage(identity, text, channel="c1", thread=thread, message_id=f"m-{text}-{thread}",
                              shared=shared)
    return bot.run(bot.core.handle(message))


def reviewed(bot: RunningBot, **kwargs: Any) -> Answer:
    answer = ask(bot, ALICE, TICKET, **kwargs)
    assert isinstance(answer, Answer) and answer.action_review is not None, answer
    return answer


def alices_values(review: ActionReview, **changes: Any) -> dict[str, Any]:
    """The form as shown (Q's current values; a choice by its token), with `changes`."""
    values: dict[str, Any] = {}
    for field in review.fields:
        value = field.value
        if field.choices:
            tokens = [c.token for c in field.choices if c.value in (value if isinstance(value, list) else [value])]
            value = tokens if field.type is FieldType.ARRAY else (tokens[0] if tokens else None)
        values[field.key] = value
    return {**values, **changes}


def test_qplugins_lists_the_applications_plugins_and_qplugin_needs_a_known_name(bot: RunningBot) -> None:
    assert ask(bot, ALICE, "qplugins").kind is NoticeKind.NOT_LINKED
    link(bot, ALICE, "alice")
    listed = ask(bot, ALICE, "qplugins")
    assert isinstance(listed, Notice) and listed.private
    assert "• jira (Jira)" in listed.text and "• salesforce (Salesforce)" in listed.text
    unknown = ask(bot, ALICE, "qplugin zendesk open a ticket")
    assert unknown.kind is NoticeKind.ERROR and "no plugin called 'zendesk' here (plugins: jira, salesforce)" in (
        unknown.text)
    assert ask(bot, ALICE, "qplugin jira").text == PLUGIN_USAGE
    assert bot.sandbox.q.stats.operations["ChatSync"] == 0


def test_a_review_runs_once_as_its_asker_with_the_checked_values(make_bot: Callable[..., RunningBot]) -> None:
    bot = make_bot(QBOT_CHANNEL_REPLY_MODE="thread")
    link(bot, ALICE, "alice")
    link(bot, BOB, "bob")
    answer = reviewed(bot, shared=True)  # in a channel that answers in the thread, a review is still private
    review = answer.action_review
    assert review is not None and review.review_id and answer.private
    assert [f.label for f in review.fields] == [
        "Summary", "Project", "Priority", "Labels", "Notify watchers", "Description"]
    assert review.fields[0].value == "create a ticket: the printer on floor 3 jams"
    assert [c.label for c in review.fields[1].choices] == ["IT Help Desk", "Engineering", "People Team"]
    q = bot.sandbox.q

    refused = bot.run(bot.core.submit_action(BOB, review.review_id, alices_values(review)))
    assert (refused.kind, refused.text) == (NoticeKind.REFUSED, NOT_YOUR_ACTION)
    assert bot.run(bot.core.action_review(BOB, review.review_id)).text == NOT_YOUR_ACTION
    missing = bot.run(bot.core.submit_action(ALICE, review.review_id, alices_values(review, **{"fields.summary": ""})))
    assert missing.kind is NoticeKind.REFUSED and "Summary is required" in missing.text
    assert q.plugin_actions == []

    values = alices_values(review, **{"fields.summary": "Printer jams", "fields.project": "1"})
    placed = bot.run(bot.core.submit_action(ALICE, review.review_id, values))
    assert isinstance(placed, PlacedReply) and (placed.channel, placed.thread, placed.shared) == ("c1", "t1", True)
    assert isinstance(placed.reply, Answer) and placed.reply.text == "Created Jira ticket ENG-101: Printer jams"
    assert not placed.reply.private  # the channel answers in the thread: so does the action's result
    (executed,) = q.plugin_actions
    assert executed.email == "alice@example.com" and executed.payload["fields.summary"] == "Printer jams"
    assert executed.payload["fields.project"] == "ENG" and "fields.description" not in executed.payload

    again = bot.run(bot.core.submit_action(ALICE, review.review_id, values))
    assert again.text == REVIEW_GONE and len(q.plugin_actions) == 1
    follow_up = ask(bot, ALICE, "What is Project Aurora?", shared=True)  # the thread continues after the action
    assert isinstance(follow_up, Answer) and follow_up.conversation_id == answer.conversation_id


def test_a_review_is_sealed_and_expires(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    reviewed(bot)
    redis = bot.graph.redis
    (key,) = bot.run(redis.keys(REVIEW_PREFIX + "*"))
    assert b"printer" not in bot.run(redis.get(key))
    assert 0 < bot.run(redis.ttl(key)) <= REVIEW_SECONDS


def test_cancel_runs_nothing_and_only_the_asker_may(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    review = reviewed(bot).action_review
    assert review is not None
    assert bot.run(bot.core.cancel_action(BOB, review.review_id)).text == NOT_YOUR_ACTION
    assert bot.run(bot.core.cancel_action(ALICE, review.review_id)).text == NOTHING_RUN
    assert bot.run(bot.core.submit_action(ALICE, review.review_id, alices_values(review))).text == REVIEW_GONE
    assert bot.sandbox.q.plugin_actions == [] and bot.sandbox.q.stats.operations["ChatSync"] == 1


def test_an_action_of_a_thread_that_moved_on_is_not_run(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    review = reviewed(bot).action_review
    assert review is not None
    ask(bot, ALICE, "What is Project Aurora?")
    chats = bot.sandbox.q.stats.operations["ChatSync"]
    assert bot.run(bot.core.submit_action(ALICE, review.review_id, alices_values(review))).text == THREAD_MOVED_ON
    assert bot.sandbox.q.plugin_actions == [] and bot.sandbox.q.stats.operations["ChatSync"] == chats


def consent_code(start_url: str) -> tuple[str, dict[str, str]]:
    """The browser's part: the bot's start URL -> the sandbox's consent page, approved -> the callback's query."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        consent = browser.get(start_url).headers["location"]
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(consent).query))
        approved = browser.post(consent.partition("?")[0], data={
            "state": query["state"], "redirect_uri": query["redirect_uri"], "decision": "approve"})
    callback = approved.headers["location"]
    return callback, dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))


def test_a_plugin_consent_is_finished_once_and_answers_in_the_thread(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    delivered: list[PlacedReply] = []

    async def listener(placed: PlacedReply) -> None:
        delivered.append(placed)

    bot.core.plugins.on_reply("test", listener)
    challenged = ask(bot, ALICE, "qplugin salesforce which deals close soon?", thread="t9")
    assert isinstance(challenged, Answer) and challenged.plugin_auth is not None and challenged.private
    auth = challenged.plugin_auth
    assert auth.plugin == "salesforce" and auth.start_url.startswith(bot.url + "/auth/plugin/start?c=")
    challenge = urllib.parse.parse_qs(urllib.parse.urlsplit(auth.start_url).query)["c"][0]
    _callback, returned = consent_code(auth.start_url)

    forged = ask(bot, ALICE, "qplugin salesforce and my accounts?", thread="t10").plugin_auth
    other = urllib.parse.parse_qs(urllib.parse.urlsplit(forged.start_url).query)["c"][0]
    mismatch = bot.run(bot.core.plugins.authorized(other, returned))  # a code for another consent
    assert (mismatch.authorized, mismatch.text) == (False, AUTH_MISMATCH)

    done = bot.run(bot.core.plugins.authorized(challenge, returned))
    assert done.authorized and done.text.startswith("salesforce is authorized")
    (placed,) = delivered
    assert (placed.identity, placed.channel, placed.thread) == (ALICE, "c1", "t9")
    assert isinstance(placed.reply, Answer) and placed.reply.text.startswith("From Salesforce, as alice@example.com")
    assert "which deals close soon?" in placed.reply.text
    assert bot.run(bot.core.plugins.authorized(challenge, returned)).text == AUTH_GONE
    assert len(delivered) == 1
    salesforce = next(p.plugin_id for p in bot.sandbox.q.plugins.of(APP_ID) if p.name == "salesforce")
    assert bot.sandbox.q.plugins.authorized == {(APP_ID, "alice@example.com", salesforce)}


# -- PLUGIN_MODE as a channel's policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "problem"), [
    ({"chat_mode": "PLUGIN_MODE"}, "PLUGIN_MODE needs the plugin to ask"),
    ({"plugin": "jira"}, "a plugin goes only with chat mode PLUGIN_MODE"),
    ({"chat_mode": "RETRIEVAL_MODE", "plugin": "jira"}, "a plugin goes only with chat mode PLUGIN_MODE"),
    ({"chat_mode": "PLUGIN_MODE", "plugin": "ji ra"}, "'ji ra' is not a plugin name"),
    ({"chat_mode": "PLUGIN_MODE", "plugin": "-jira"}, "'-jira' is not a plugin name"),
])
def test_a_plugin_mode_policy_names_one_plugin(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ChannelPolicyError) as refused:
        ChannelPolicy(**fields)
    assert problem in str(refused.value)
    policy = ChannelPolicy(chat_mode="PLUGIN_MODE", plugin="jira")
    assert ChannelPolicy.from_json(policy.to_json()) == policy


def test_a_channel_in_plugin_mode_asks_its_plugin(bot: RunningBot) -> None:
    alice = ChatIdentity("slack", "T1", "U-ALICE")
    link(bot, alice, "alice")
    policies = ChannelPolicies(bot.graph.redis)
    bot.run(policies.set("slack", "C0TICKETS", ChannelPolicy(chat_mode="PLUGIN_MODE", plugin="jira")))
    asked = IncomingMessage(alice, "my monitor flickers", channel="C0TICKETS", thread="t1", message_id="m1",
                            shared=True)
    answer = bot.run(bot.core.handle(asked))
    assert isinstance(answer, Answer) and answer.action_review is not None  # no "ticket" in it: the policy's plugin
    assert answer.action_review.fields[0].value == "my monitor flickers"
    bot.run(policies.set("slack", "C0TICKETS", ChannelPolicy(chat_mode="PLUGIN_MODE", plugin="zendesk")))
    unknown = bot.run(bot.core.handle(dataclasses.replace(asked, message_id="m2", thread="t2")))
    assert unknown.kind is NoticeKind.ERROR and "no plugin called 'zendesk'" in unknown.text
    assert bot.sandbox.q.stats.operations["ChatSync"] == 1


def test_a_consent_finished_after_more_questions_in_its_thread_still_answers(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    bot.core.plugins.on_reply("test", _ignore)
    challenged = ask(bot, ALICE, "qplugin salesforce my biggest deal?", thread="t5")
    assert challenged.plugin_auth is not None
    ask(bot, ALICE, "What is Project Aurora?", thread="t5")  # the thread moves on while the consent is open
    challenge = urllib.parse.parse_qs(urllib.parse.urlsplit(challenged.plugin_auth.start_url).query)["c"][0]
    _callback, returned = consent_code(challenged.plugin_auth.start_url)
    done = bot.run(bot.core.plugins.authorized(challenge, returned))
    assert done.authorized, done.text
    conversation = bot.run(bot.core.accounts.conversations.get(ALICE, "c1", "t5"))
    latest = bot.sandbox.q.conversations.find(APP_ID, "alice@example.com", conversation.conversation_id)
    assert latest is not None and latest.messages[-1].body.startswith("From Salesforce")


async def _ignore(_placed: PlacedReply) -> None:
    return None
