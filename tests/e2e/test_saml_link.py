"""SAML mode end to end: qlink -> /auth/start -> the sandbox IdP's SAML sign-in -> POST /auth/saml/acs ->
AssumeRoleWithSAML at the sandbox STS -> questions answered as the user; and every hostile or broken response
refused with a page that says why, nothing stored, no credentials asked of STS."""

from __future__ import annotations

import dataclasses
import html
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from aiohttp import web
from lxml import etree

from adapters.web.signin import login_cookie_name, set_login_cookie
from bot.accounts import LoginStart
from bot.core import SIGN_IN_AGAIN
from bot.links import PendingLink
from bot.model import Answer, ChatIdentity, IncomingMessage, Notice, NoticeKind, OfferedFile
from sandbox.idp.pages import login_form
from sandbox.idp.saml_routes import posted_form
from sandbox.serving import url_of
from sandbox.world import Sandbox, SandboxPorts
from tests.conftest import LoopThread
from tests.e2e.conftest import RunningBot, start_bot
from tests.e2e.test_turn import PlatformTurn
from tests.saml_signin import Browser

ALICE = ChatIdentity("test", "T1", "U-ALICE")
AURORA = "What is Project Aurora?"


@pytest.fixture
def saml_bot(servers: LoopThread, bot_socket: socket.socket, redis_url: str) -> Iterator[RunningBot]:
    world = Sandbox(ports=SandboxPorts(idp=0, sts=0, q=0), bot_public_url=url_of(bot_socket), saml=True)
    servers.run(world.start())
    running = start_bot(servers, world, bot_socket, redis_url)
    yield running
    servers.run(running._served.stop())  # type: ignore[attr-defined]
    servers.run(world.stop())


def qlink(bot: RunningBot, identity: ChatIdentity = ALICE, profile_email: str = "alice@example.com") -> str:
    notice = bot.ask(identity, "qlink", profile_email=profile_email)
    assert isinstance(notice, Notice) and notice.kind is NoticeKind.LINK and notice.url
    return notice.url


def stored(bot: RunningBot, identity: ChatIdentity = ALICE) -> Any:
    return bot.run(bot.graph.core.accounts.vault.load(identity))


def test_a_saml_sign_in_links_and_questions_are_answered_as_the_user(saml_bot: RunningBot) -> None:
    browser = Browser()
    try:
        page = browser.sign_in(qlink(saml_bot))
    finally:
        browser.close()
    assert page.status_code == 200 and "Linked as alice@example.com" in page.text
    account = stored(saml_bot)
    assert account.email == "alice@example.com" and account.refresh_token == ""  # SAML has no refresh token
    assert account.issuer == saml_bot.sandbox.idp.saml.entity_id
    assert saml_bot.sandbox.sts.stats.saml_calls["alice@example.com"] == 1

    reply = saml_bot.ask(ALICE, AURORA)
    assert isinstance(reply, Answer) and any("aurora" in (s.title + s.snippet).lower() for s in reply.sources)
    status = saml_bot.ask(ALICE, "qstatus")
    assert isinstance(status, Notice) and "Signed in as alice@example.com; this sign-in lasts until" in status.text
    assert saml_bot.sandbox.sts.stats.saml_calls["alice@example.com"] == 1  # the sign-in's credentials served


def test_when_the_credentials_expire_the_user_is_asked_to_sign_in_again(saml_bot: RunningBot) -> None:
    browser = Browser()
    try:
        browser.sign_in(qlink(saml_bot))
        saml_bot.run(saml_bot.graph.core.accounts.vault.delete_credentials(ALICE))  # as when they expire
        reply = saml_bot.ask(ALICE, AURORA)
        assert isinstance(reply, Notice) and reply.kind is NoticeKind.NOT_LINKED and reply.private
        assert "sign-in has expired" in reply.text and "qlink" in reply.text
        status = saml_bot.ask(ALICE, "qstatus")
        assert isinstance(status, Notice) and "that sign-in has expired" in status.text

        again = browser.sign_in(qlink(saml_bot))  # one click at a real IdP, whose session is still open
        assert "Linked as alice@example.com" in again.text
        assert isinstance(saml_bot.ask(ALICE, AURORA), Answer)
    finally:
        browser.close()


def signed_in_then_expired(bot: RunningBot) -> None:
    """Alice signed in through SAML, and that sign-in's credentials have run out."""
    browser = Browser()
    try:
        browser.sign_in(qlink(bot))
    finally:
        browser.close()
    bot.run(bot.graph.core.accounts.vault.delete_credentials(ALICE))


def test_an_expired_sign_in_keeps_the_question_and_offers_a_one_click_link(saml_bot: RunningBot) -> None:
    signed_in_then_expired(saml_bot)
    reply = saml_bot.ask(ALICE, AURORA, profile_email="alice@example.com", message_id="m-aurora")
    assert isinstance(reply, Notice) and reply.kind is NoticeKind.LINK and reply.private and reply.url
    assert "sign-in has expired" in reply.text and "answer your question" in reply.text
    assert "files were not kept" not in reply.text
    pending = saml_bot.run(saml_bot.graph.core.take_pending_question(ALICE))
    assert pending is not None and pending.message.text == AURORA and pending.message.message_id == "m-aurora"
    assert pending.message.delivery_ids == ()  # answered anew, not ignored as a redelivery


def test_files_sent_with_the_expired_question_are_not_kept_and_the_user_is_told(saml_bot: RunningBot) -> None:
    signed_in_then_expired(saml_bot)
    message = IncomingMessage(ALICE, "Summarize", channel="c1", thread="t1", message_id="m-files",
                              profile_email="alice@example.com", offered=(OfferedFile("plan.txt", 10),))
    reply = saml_bot.run(saml_bot.graph.core.handle(message))
    assert isinstance(reply, Notice) and reply.kind is NoticeKind.LINK and "files were not kept" in reply.text
    pending = saml_bot.run(saml_bot.graph.core.take_pending_question(ALICE))
    assert pending is not None and pending.message.offered == () and pending.message.files == ()


def test_an_expired_sign_in_is_offered_its_link_by_the_messages_own_profile_email(saml_bot: RunningBot) -> None:
    """The email the platform sent with the message serves; the platform is asked only when there is none."""
    signed_in_then_expired(saml_bot)
    message = IncomingMessage(ALICE, AURORA, channel="c1", thread="t1", message_id="m-1",
                              profile_email="alice@example.com")
    reply = saml_bot.run(saml_bot.graph.core.handle(message, PlatformTurn(saml_bot.sandbox)))  # profile: no email
    assert isinstance(reply, Notice) and reply.kind is NoticeKind.LINK and reply.private and reply.url
    assert reply.text == (f"{SIGN_IN_AGAIN} Open this link within 10 minutes to sign in with your company account. "
                          "It works once and is only for you: don't share it.")
    hidden = dataclasses.replace(message, message_id="m-2", profile_email=None)
    told = saml_bot.run(saml_bot.graph.core.handle(hidden, PlatformTurn(saml_bot.sandbox)))
    assert isinstance(told, Notice) and told.kind is NoticeKind.NOT_LINKED and told.url is None
    assert "sign-in has expired" in told.text and "qlink" in told.text

    from_the_platform = dataclasses.replace(message, message_id="m-3", profile_email=None)
    platform = PlatformTurn(saml_bot.sandbox, email="alice@example.com")
    assert saml_bot.run(saml_bot.graph.core.handle(from_the_platform, platform)).kind is NoticeKind.LINK
    pending = saml_bot.run(saml_bot.graph.core.take_pending_question(ALICE))
    assert pending is not None and pending.message.message_id == "m-3"
    assert pending.message.profile_email == "alice@example.com"  # kept: the platform need not be asked again


@pytest.mark.parametrize(
    ("faults", "says"),
    [
        ({"sign_with_rogue_key": True}, "not signed by your company's sign-in service"),
        ({"unsigned_assertion": True, "unsigned_response": True}, "not signed by your company's sign-in service"),
        ({"wrap": "beside"}, "could not be verified"),
        ({"wrap": "around"}, "could not be verified"),
        ({"audience": "https://someone-else.example.com"}, "meant for another service"),
        ({"recipient": "https://someone-else.example.com/acs"}, "meant for another service"),
        ({"destination": "https://someone-else.example.com/acs"}, "meant for another service"),
        ({"expired": True}, "outside its validity window"),
        ({"in_response_to": "_another-login"}, "answers another sign-in attempt"),
        ({"omit_email_tag": True}, "PrincipalTag:Email"),
        ({"email_tag": "bob@example.com"}, "You signed in as bob@example.com, but your chat profile says alice@"),
        ({"doctype": True}, "could not be verified"),
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, dict) else None,
)
def test_a_broken_or_hostile_response_is_refused_and_nothing_is_stored(
    saml_bot: RunningBot, faults: dict[str, Any], says: str
) -> None:
    for name, value in faults.items():
        setattr(saml_bot.sandbox.idp.saml.faults, name, value)
    browser = Browser()
    try:
        page = browser.sign_in(qlink(saml_bot))
    finally:
        browser.close()
    assert page.status_code == 400 and says in html.unescape(page.text), page.text
    assert stored(saml_bot) is None
    assert not saml_bot.sandbox.sts.stats.saml_calls  # refused before STS was asked


def test_a_sign_in_as_someone_else_than_the_chat_profile_is_refused(saml_bot: RunningBot) -> None:
    browser = Browser()
    try:
        page = browser.sign_in(qlink(saml_bot, profile_email="alice@example.com"), username="bob")
    finally:
        browser.close()
    assert page.status_code == 400 and "You signed in as bob@example.com" in page.text
    assert stored(saml_bot) is None and not saml_bot.sandbox.sts.stats.saml_calls


def test_a_replayed_response_is_refused(saml_bot: RunningBot) -> None:
    """The same POST again, even with the login cookie put back: the assertion was spent."""
    browser = Browser()
    try:
        first = browser.sign_in(qlink(saml_bot))
        assert "Linked as" in first.text
        saml_bot.run(saml_bot.graph.core.accounts.vault.delete(ALICE))
        acs, fields = browser.acs_form
        replay = httpx.post(acs, data=fields, cookies=browser.cookies_at_acs)
    finally:
        browser.close()
    assert replay.status_code == 400 and "already used" in replay.text
    assert stored(saml_bot) is None
    assert saml_bot.sandbox.sts.stats.saml_calls["alice@example.com"] == 1


def test_a_response_without_its_login_cookie_is_refused(saml_bot: RunningBot) -> None:
    """Posted from another browser (or forwarded): the login state is sealed in the cookie of the one that began."""
    browser = Browser()
    try:
        browser.sign_in(qlink(saml_bot))
        saml_bot.run(saml_bot.graph.core.accounts.vault.delete(ALICE))
        acs, fields = browser.acs_form
        other = httpx.post(acs, data=fields)
    finally:
        browser.close()
    assert other.status_code == 400 and "started in another browser" in other.text
    assert stored(saml_bot) is None


def test_a_saml_sign_ins_credentials_serve_until_their_last_half_minute(saml_bot: RunningBot) -> None:
    """No refresh token to mint new ones: unlike OIDC links (renewed 5 minutes early), a SAML link's credentials
    answer until 30 s before they end, and then the user is asked to sign in again."""
    browser = Browser()
    try:
        browser.sign_in(qlink(saml_bot))
    finally:
        browser.close()
    vault = saml_bot.graph.core.accounts.vault
    issued = saml_bot.run(vault.load_credentials(ALICE))
    generation = stored(saml_bot).generation

    def expiring_in(seconds: float) -> None:
        shortened = dataclasses.replace(issued, expiration=datetime.now(UTC) + timedelta(seconds=seconds))
        assert saml_bot.run(vault.store_credentials(ALICE, shortened, generation=generation))

    expiring_in(200)
    assert isinstance(saml_bot.ask(ALICE, AURORA), Answer)
    expiring_in(20)
    reply = saml_bot.ask(ALICE, AURORA)
    assert isinstance(reply, Notice) and reply.kind is NoticeKind.NOT_LINKED and "sign-in has expired" in reply.text
    assert saml_bot.sandbox.sts.stats.saml_calls["alice@example.com"] == 1


def test_the_login_cookie_reaches_the_assertion_consumer_only(saml_bot: RunningBot) -> None:
    with httpx.Client(follow_redirects=False, timeout=10) as http:
        start = http.get(qlink(saml_bot))
    cookie = start.headers["set-cookie"]
    assert "Path=/auth/saml/acs" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie  # loopback http
    login = LoginStart("https://idp.example/sso", "s" * 43, "sealed", saml=True)
    over_https = web.Response()
    set_login_cookie(over_https, login, max_age=600, secure=True)
    sent = over_https.cookies.output()
    # the IdP's POST is cross-site: only SameSite=None (hence Secure) lets the browser send the cookie along
    assert "SameSite=None" in sent and "Secure" in sent and "Path=/auth/saml/acs" in sent


def test_an_oidc_login_state_does_not_finish_at_the_assertion_consumer(saml_bot: RunningBot) -> None:
    accounts = saml_bot.graph.core.accounts
    state, sealed = accounts.login_states.seal(PendingLink(ALICE, "alice@example.com"), "nonce", "verifier")
    page = httpx.post(
        saml_bot.url + "/auth/saml/acs", data={"RelayState": state, "SAMLResponse": "PHg+"},
        cookies={login_cookie_name(state): sealed},
    )
    assert page.status_code == 400 and "sign-in attempt is invalid, expired or already finished" in page.text


def test_a_saml_login_state_does_not_finish_at_the_oidc_callback(bot: RunningBot) -> None:
    accounts = bot.graph.core.accounts
    state, sealed = accounts.login_states.seal(PendingLink(ALICE, "alice@example.com"), "", "", saml_request_id="_r")
    page = httpx.get(
        bot.url + "/auth/callback", params={"state": state, "code": "a-code"},
        cookies={login_cookie_name(state): sealed},
    )
    assert page.status_code == 400 and "sign-in attempt is invalid, expired or already finished" in page.text
    assert httpx.post(bot.url + "/auth/saml/acs", data={"RelayState": state}).status_code in (404, 405)  # OIDC mode


def test_an_oversized_post_to_the_assertion_consumer_is_refused(saml_bot: RunningBot) -> None:
    page = httpx.post(saml_bot.url + "/auth/saml/acs", data={"RelayState": "r", "SAMLResponse": "A" * 600_000})
    assert page.status_code == 413 and stored(saml_bot) is None


def test_a_second_response_to_the_same_login_is_refused(saml_bot: RunningBot) -> None:
    """Signing in twice at the IdP for one AuthnRequest gives two genuine assertions: the login finishes once."""
    browser = Browser()
    try:
        first = browser.sign_in(qlink(saml_bot))
        assert "Linked as" in first.text
        saml_bot.run(saml_bot.graph.core.accounts.vault.delete(ALICE))
        second_answer = browser.http.post(browser.idp_form[0], data=browser.idp_form[1])
        acs, fields = posted_form(second_answer.text)
        assert fields["SAMLResponse"] != browser.acs_form[1]["SAMLResponse"]  # a new assertion
        again = httpx.post(acs, data=fields, cookies=browser.cookies_at_acs)
    finally:
        browser.close()
    assert again.status_code == 400 and "sign-in attempt is invalid, expired or already finished" in again.text
    assert stored(saml_bot) is None


def test_the_web_console_signs_in_through_saml(saml_bot: RunningBot) -> None:
    with httpx.Client(base_url=saml_bot.url, follow_redirects=False, timeout=10) as http:
        login = http.get("/web/login")
        assert login.status_code == 302 and login.headers["location"].startswith(saml_bot.sandbox.idp.saml.sso_url)
        page = http.get(login.headers["location"])
        action, fields = login_form(page.text, "alice")
        acs, posted = posted_form(http.post(urljoin(login.headers["location"], action), data=fields).text)
        back = http.post(acs, data=posted)
        assert back.status_code == 302 and back.headers["location"] == "/"
        me = http.get("/web/api/me").json()
    assert me["signed_in"] and me["linked"] and me["email"] == "alice@example.com"


def test_the_bot_publishes_its_saml_metadata_at_its_default_entity_id(saml_bot: RunningBot) -> None:
    response = httpx.get(saml_bot.url + "/auth/saml/metadata")
    assert response.status_code == 200 and response.headers["content-type"] == "application/samlmetadata+xml"
    root = etree.fromstring(response.content)
    assert root.get("entityID") == saml_bot.settings.saml_sp_entity_id == saml_bot.url + "/auth/saml/metadata"
    acs = root.find(".//{urn:oasis:names:tc:SAML:2.0:metadata}AssertionConsumerService")
    assert acs is not None and acs.get("Location") == saml_bot.url + "/auth/saml/acs"
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
