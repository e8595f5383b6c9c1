"""Slack in SAML mode: /qlink -> the SAML sign-in -> confirmed in a DM -> a mention answered as the user; when the
sign-in's credentials end, the next question gets a private "sign in again" with a fresh link."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sandbox.serving import url_of
from sandbox.slack import FakeSlack
from sandbox.world import Sandbox, SandboxPorts
from tests.adapters.slack.conftest import CHANNEL, SlackBot, link_url, start_slack_bot
from tests.conftest import LoopThread
from tests.saml_signin import Browser, linked_identities

AURORA = "What is Project Aurora?"


@pytest.fixture
def saml_slack(
    servers: LoopThread, bot_socket: socket.socket, redis_url: str, fake_slack: FakeSlack
) -> Iterator[SlackBot]:
    world = Sandbox(ports=SandboxPorts(idp=0, sts=0, q=0), bot_public_url=url_of(bot_socket), saml=True)
    servers.run(world.start())
    bot, served = start_slack_bot(servers, world, bot_socket, redis_url, fake_slack)
    yield bot
    bot.http.close()
    servers.run(served.stop())
    servers.run(world.stop())


def test_a_slack_user_links_through_saml_and_is_answered_as_themselves(saml_slack: SlackBot) -> None:
    [response] = saml_slack.responses(saml_slack.command("U_ALICE", "/qlink"))
    browser = Browser()
    try:
        page = browser.sign_in(link_url(response), "alice")
    finally:
        browser.close()
    assert page.status_code == 200 and "Linked as alice@example.com" in page.text
    [confirmation] = saml_slack.fake.wait_for(
        lambda: [c for c in saml_slack.fake.calls_to("chat.postMessage") if c.args["channel"] == "DU_ALICE"]
    )
    assert "linked as alice@example.com" in confirmation.args["text"]

    answer = saml_slack.answer_in(CHANNEL, saml_slack.mention("U_ALICE", AURORA))
    assert "Aurora" in answer["text"]
    assert saml_slack.sandbox.q.stats.chat_calls["alice@example.com"] == 1
    assert saml_slack.sandbox.sts.stats.saml_calls["alice@example.com"] == 1


def test_an_ended_saml_sign_in_gets_a_one_click_link_and_the_question_is_then_answered(saml_slack: SlackBot) -> None:
    [response] = saml_slack.responses(saml_slack.command("U_ALICE", "/qlink"))
    browser = Browser()
    try:
        browser.sign_in(link_url(response), "alice")
        identity = next(iter(saml_slack.run(linked_identities(saml_slack.graph.redis))))
        saml_slack.run(saml_slack.graph.core.accounts.vault.delete_credentials(identity))  # as when they end

        asked = saml_slack.mention("U_ALICE", AURORA)
        [notice] = saml_slack.fake.wait_for(
            lambda: [c for c in saml_slack.fake.calls_to("chat.postEphemeral")
                     if "sign-in has expired" in c.args["text"]]
        )
        assert notice.args["user"] == "U_ALICE" and "answer your question" in notice.args["text"]
        assert not saml_slack.sandbox.q.stats.chat_calls
        page = browser.sign_in(link_url(notice.args), "alice")  # the link itself: one click at the IdP
    finally:
        browser.close()
    assert "Linked as alice@example.com" in page.text
    answer = saml_slack.answer_in(CHANNEL, asked)  # in the thread it was asked in, nobody asking again
    assert "Aurora" in answer["text"]
    assert saml_slack.sandbox.q.stats.chat_calls["alice@example.com"] == 1
    assert saml_slack.run(saml_slack.graph.core.take_pending_question(identity)) is None  # answered once
