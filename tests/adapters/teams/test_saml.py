"""Teams in SAML mode (the Entra ID case this mode exists for): qlink in personal chat -> the SAML sign-in ->
confirmed proactively -> a question answered as the user; an ended sign-in gets a private sign-in card again."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sandbox.botframework import FakeBotFramework
from sandbox.serving import url_of
from sandbox.world import Sandbox, SandboxPorts
from tests.adapters.teams.conftest import ALICE, TeamsBot, sign_in_url, teams_env
from tests.conftest import LoopThread
from tests.e2e.conftest import start_bot
from tests.saml_signin import Browser, linked_identities

AURORA = "What is Project Aurora?"


@pytest.fixture
def saml_teams(
    servers: LoopThread, bot_socket: socket.socket, redis_url: str, bot_framework: FakeBotFramework
) -> Iterator[TeamsBot]:
    world = Sandbox(ports=SandboxPorts(idp=0, sts=0, q=0), bot_public_url=url_of(bot_socket), saml=True)
    servers.run(world.start())
    running = start_bot(servers, world, bot_socket, redis_url, **teams_env(bot_framework))
    teams = TeamsBot(running.url, running, bot_framework, world)
    yield teams
    teams.http.close()
    servers.run(running._served.stop())  # type: ignore[attr-defined]
    servers.run(world.stop())


def sign_in_card_url(teams: TeamsBot, before: int) -> str:
    card = teams.bf.wait_for(lambda calls: next((c for c in calls[before:] if c.cards and sign_in_url(c)), None))
    assert card.conversation_id == ALICE.personal_chat
    return sign_in_url(card)


def test_a_teams_user_links_through_saml_and_is_answered_as_themselves(saml_teams: TeamsBot) -> None:
    before = len(saml_teams.bf.calls)
    assert saml_teams.post(saml_teams.message(ALICE, "qlink")).status_code == 202
    browser = Browser()
    try:
        page = browser.sign_in(sign_in_card_url(saml_teams, before), ALICE.username)
    finally:
        browser.close()
    assert page.status_code == 200 and "Linked as alice@example.com" in page.text
    saml_teams.bf.wait_for(
        lambda calls: next((c for c in calls if "linked as alice@example.com" in c.text.lower()), None)
    )
    answer = saml_teams.answer(saml_teams.message(ALICE, AURORA))
    assert "Aurora" in "\n".join(b.get("text", "") for b in answer.cards[-1].get("body", []))
    assert saml_teams.sandbox.sts.stats.saml_calls["alice@example.com"] == 1


def test_an_ended_saml_sign_in_gets_a_sign_in_card_and_the_question_is_then_answered(saml_teams: TeamsBot) -> None:
    before = len(saml_teams.bf.calls)
    assert saml_teams.post(saml_teams.message(ALICE, "qlink")).status_code == 202
    browser = Browser()
    try:
        browser.sign_in(sign_in_card_url(saml_teams, before), ALICE.username)
        accounts = saml_teams.bot.graph.core.accounts
        identity = next(iter(saml_teams.bot.run(linked_identities(saml_teams.bot.graph.redis))))
        saml_teams.bot.run(accounts.vault.delete_credentials(identity))  # as when they end

        before = len(saml_teams.bf.calls)
        question = saml_teams.message(ALICE, AURORA)
        assert saml_teams.post(question).status_code == 202
        again = browser.sign_in(sign_in_card_url(saml_teams, before), ALICE.username)  # one click
    finally:
        browser.close()
    assert "Linked as alice@example.com" in again.text
    prompt = next(c for c in saml_teams.bf.calls[before:] if sign_in_url(c))
    assert "sign-in has expired" in str(prompt.cards) + prompt.text
    answer = saml_teams.bf.wait_for(  # nobody asked again: the kept question is answered, in reply to itself
        lambda calls: next(
            (c for c in calls[before:] if c.kind == "reply" and c.activity_id == question["id"] and c.cards), None
        )
    )
    assert "Aurora" in "\n".join(b.get("text", "") for b in answer.cards[-1].get("body", []))
    assert saml_teams.sandbox.q.stats.chat_calls["alice@example.com"] == 1
