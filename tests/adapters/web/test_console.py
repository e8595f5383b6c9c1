"""The web console over real HTTP: sign-in is the link, then ask, rate and sign out, and every refusal."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from aiohttp import web

from adapters.web.console import WebConsole
from adapters.web.guards import MAX_TEXT
from adapters.web.session import Session, Sessions
from bot.model import ChatIdentity, ConversationRef
from sandbox.qbusiness.corpus import Acl, Document
from sandbox.world import APP_ID, INDEX_ID
from tests.adapters.web.conftest import WebBot
from tests.signin import sign_in_at_idp

AURORA = "What is Project Aurora?"
AURORA_URL = "https://intranet.example.com/product/aurora-roadmap-2027"


def _ask(bot: WebBot, http: Any, me: dict[str, Any], text: str, *, thread: str = "t1", mid: str = "m1") -> Any:
    return bot.post(http, "/web/api/ask", {"text": text, "thread": thread, "message_id": mid}, csrf=me["csrf"])


def _flip(value: str) -> str:
    """The same string with its last character changed."""
    return value[:-1] + ("A" if value[-1] != "A" else "B")


def _conversation(bot: WebBot, http: httpx.Client, thread: str) -> ConversationRef | None:
    """The Q conversation this browser's session continues in `thread`, if any."""
    identity = ChatIdentity("web", "", http.cookies["qbot_session"].partition(".")[0])
    return bot.servers.run(bot.graph.core.accounts.conversations.get(identity, "web", thread))


def test_page_is_served_with_a_strict_policy_and_no_inline_script(web_bot: WebBot) -> None:
    http = web_bot.browser()
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert '<script src="/web/static/app.js"' in page.text
    assert "<script>" not in page.text and " on" + "click=" not in page.text
    for test_id in ("sign-in", "input", "send", "new-conversation", "sign-out"):
        assert f'data-testid="{test_id}"' in page.text
    for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css"), ("icon.svg", "image/svg")):
        response = http.get(f"/web/static/{asset}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    assert http.get("/web/static/../console.py").status_code == 404
    assert http.get("/web/static/nope.js").status_code == 404
    assert web_bot.me(http) == {"signed_in": False, "linked": False, "email": None, "csrf": None}


def test_sign_in_ask_cited_answer_feedback_and_sign_out(web_bot: WebBot) -> None:
    http = web_bot.browser()
    login = http.get("/web/login")
    assert login.status_code == 302
    assert login.headers["location"].startswith(web_bot.sandbox.idp_url + "/authorize?")  # no link token
    cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith("qbot_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https public URLs get Secure and __Host-
    assert web_bot.me(http)["linked"] is False  # a session, not yet a link

    me = web_bot.sign_in(http, "alice")
    assert me["signed_in"] and me["linked"] and me["email"] == "alice@example.com" and me["csrf"]

    answer = _ask(web_bot, http, me, AURORA).json()
    assert answer["type"] == "answer", answer
    assert "Aurora" in answer["text"] and "[1]" in answer["text"]
    assert any(s["url"] == AURORA_URL and "Aurora" in s["title"] for s in answer["sources"])
    assert {"number", "title", "url", "snippet"} <= set(answer["sources"][0])
    assert answer["failed_attachments"] == []

    follow_up = _ask(web_bot, http, me, "When does it launch?", mid="m2").json()
    assert follow_up["conversation_id"] == answer["conversation_id"]
    fresh = _ask(web_bot, http, me, AURORA, thread="t2", mid="m3").json()
    assert fresh["conversation_id"] != answer["conversation_id"]

    rate = {"conversation_id": answer["conversation_id"], "message_id": answer["message_id"], "useful": True}
    rated = web_bot.post(http, "/web/api/feedback", rate, csrf=me["csrf"])
    assert rated.status_code == 200 and rated.json() == {"ok": True}

    # Signing in again while linked keeps the session (a cross-site link cannot sign anyone out).
    again = http.get("/web/login")
    assert again.status_code == 302 and again.headers["location"] == "/"
    assert web_bot.me(http)["linked"] is True

    identity = ChatIdentity("web", "", http.cookies["qbot_session"].partition(".")[0])
    assert web_bot.servers.run(web_bot.graph.core.accounts.vault.load(identity)) is not None
    out = web_bot.post(http, "/web/logout", {}, csrf=me["csrf"])
    assert out.status_code == 200
    assert 'qbot_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert web_bot.me(http)["signed_in"] is False
    assert _ask(web_bot, http, me, AURORA).status_code == 401
    assert web_bot.servers.run(web_bot.graph.core.accounts.vault.load(identity)) is None  # unlinked, not just forgotten


def test_https_sessions_are_secure_host_only_cookies() -> None:
    sessions = Sessions(b"0123456789abcdef0123456789abcdef", secure=True, ttl_seconds=60, idle_seconds=60)
    response = web.Response()
    sessions.set(response, sessions.new())
    cookie = response.cookies[sessions.cookie_name].OutputString()
    assert cookie.startswith("__Host-qbot_session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie


def test_a_cited_script_url_reaches_the_page_as_no_link(web_bot: WebBot) -> None:
    """The core drops the link where it builds the Answer; the console passes the source on without one."""
    web_bot.sandbox.q.control.index(APP_ID, INDEX_ID).documents.append(Document(
        "zephyr", "Zephyr badge printer", "The Zephyr badge printer stands on the third floor.", Acl(public=True),
        "javascript:fetch('/web/api/me').then(r => r.text()).then(alert)",
    ))
    http = web_bot.browser()
    me = web_bot.sign_in(http, "bob")
    answer = _ask(web_bot, http, me, "Where is the Zephyr badge printer?").json()
    assert answer["type"] == "answer", answer
    (zephyr,) = [s for s in answer["sources"] if s["title"] == "Zephyr badge printer"]
    assert zephyr["url"] is None and zephyr["snippet"]
    assert "javascript" not in json.dumps(answer)


def test_bob_gets_no_aurora_citation(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "bob")
    assert me["email"] == "bob@example.com"
    reply = _ask(web_bot, http, me, AURORA).json()
    assert reply["type"] in ("answer", "info"), reply
    assert all(s["url"] != AURORA_URL for s in reply.get("sources", []))
    assert "analytics platform" not in reply["text"]


def test_only_the_asker_may_rate_an_answer(web_bot: WebBot) -> None:
    alice, bob = web_bot.browser(), web_bot.browser()
    alice_me, bob_me = web_bot.sign_in(alice, "alice"), web_bot.sign_in(bob, "bob")
    answer = _ask(web_bot, alice, alice_me, AURORA).json()
    rate = {"conversation_id": answer["conversation_id"], "message_id": answer["message_id"], "useful": False}
    refused = web_bot.post(bob, "/web/api/feedback", rate, csrf=bob_me["csrf"])
    assert refused.status_code == 403
    assert refused.json()["error"] == "Only the person who asked can rate this answer."


def test_a_tampered_or_foreign_cookie_is_no_session(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    value = http.cookies["qbot_session"]
    signed, _, mac = value.rpartition(".")
    sid, issued, seen = signed.split(".")
    forged = [
        f"{_flip(sid)}.{issued}.{seen}.{mac}",  # another session id, the old signature
        f"{sid}.{int(issued) + 3600}.{seen}.{mac}",  # a later issue time (a longer life), the old signature
        f"{sid}.{issued}.{int(seen) + 3600}.{mac}",  # a later last use, the old signature
        f"{signed}.{_flip(mac)}",  # a bad signature
        signed,  # no signature
        f"{sid}.{mac}",  # the old format: no times
        "",
    ]
    for cookie in forged:
        http.cookies.clear()
        http.cookies.set("qbot_session", cookie)
        assert web_bot.me(http)["signed_in"] is False, cookie
        assert _ask(web_bot, http, me, AURORA).status_code == 401
    # A cookie signed under another bot's secret does not open this bot's sessions either.
    other = WebConsole(web_bot.graph.core, web_bot.graph.settings, session_secret=b"another bot's secret!!")
    http.cookies.clear()
    http.cookies.set("qbot_session", other.sessions.cookie_value(Session(sid, int(issued), int(seen))))
    assert web_bot.me(http)["signed_in"] is False


def test_csrf_and_foreign_origins_are_refused(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    body = {"text": AURORA, "thread": "t1", "message_id": "m1"}
    for csrf, origin in ((None, "self"), ("", "self"), (_flip(me["csrf"]), "self"),
                         (me["csrf"], "http://evil.example"), (me["csrf"], "null")):
        response = web_bot.post(http, "/web/api/ask", body, csrf=csrf, origin=origin)
        assert response.status_code == 403, (csrf, origin)
        assert response.json()["error"]
    cross_site = http.post(
        "/web/api/ask", json=body, headers={"X-QBot-CSRF": me["csrf"], "Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    # Logout is state-changing too: without the token nothing is unlinked.
    assert web_bot.post(http, "/web/logout", {}, csrf=None).status_code == 403
    assert web_bot.me(http)["linked"] is True
    assert _conversation(web_bot, http, "t1") is None  # nothing above reached Q
    assert _ask(web_bot, http, me, AURORA).json()["type"] == "answer"


def test_bad_input_is_refused_with_a_clear_message(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    good = {"text": AURORA, "thread": "t1", "message_id": "m1"}
    cases: list[tuple[Any, str]] = [
        ({"thread": "t1", "message_id": "m1"}, "'text'"),
        ({**good, "text": 42}, "'text'"),
        ({**good, "text": "x" * (MAX_TEXT + 1)}, "too long"),
        ({**good, "thread": ""}, "'thread'"),
        ({**good, "thread": "a b"}, "'thread'"),
        ({**good, "message_id": ["m1"]}, "'message_id'"),
        ([good], "JSON object"),
    ]
    for body, message in cases:
        response = web_bot.post(http, "/web/api/ask", body, csrf=me["csrf"])
        assert response.status_code == 400, body
        assert message in response.json()["error"]
    not_json = http.post(
        "/web/api/ask", content=b"text=hi", headers={"X-QBot-CSRF": me["csrf"],
                                                    "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    broken = http.post(
        "/web/api/ask", content=b"{", headers={"X-QBot-CSRF": me["csrf"], "Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    for rate in ({"conversation_id": "c", "message_id": "m", "useful": 1},
                 {"conversation_id": "c", "message_id": "m"},
                 {"conversation_id": "", "message_id": "m", "useful": True}):
        assert web_bot.post(http, "/web/api/feedback", rate, csrf=me["csrf"]).status_code == 400, rate
    assert _conversation(web_bot, http, "t1") is None  # nothing changed


def test_commands_and_not_linked_sessions_get_notices(web_bot: WebBot) -> None:
    http = web_bot.browser()
    assert http.get("/web/login").status_code == 302  # a session, but the IdP sign-in was abandoned
    me = web_bot.me(http)
    assert me["signed_in"] is True and me["linked"] is False and me["email"] is None
    reply = _ask(web_bot, http, me, AURORA).json()
    assert reply["type"] == "not_linked" and reply["text"]
    helped = _ask(web_bot, http, me, "help", mid="m2").json()
    assert helped["type"] == "info" and "qnew" in helped["text"]


def test_a_sign_in_started_in_one_browser_cannot_be_finished_in_another(web_bot: WebBot) -> None:
    """Login CSRF: Mallory starts a sign-in, sends Alice the IdP URL; Alice's login must not land in
    Mallory's session (the web console has no chat profile email to compare: only the browser binds it)."""
    mallory, alice = web_bot.browser(), web_bot.browser()
    idp_url = mallory.get("/web/login").headers["location"]
    idp = sign_in_at_idp(alice, idp_url, "alice")
    refused = alice.get(idp.headers["location"])
    assert refused.status_code == 400 and "same browser" in refused.text
    assert web_bot.me(mallory)["linked"] is False
    assert web_bot.sandbox.idp.live_refresh_tokens("alice") == []  # the code was never even redeemed


def test_the_console_can_be_switched_off(make_web_bot: Callable[..., WebBot]) -> None:
    bot = make_web_bot(QBOT_WEB_CONSOLE="false")
    for path in ("/", "/web/login", "/web/api/me"):
        assert httpx.get(bot.url + path, follow_redirects=False).status_code == 404, path
    assert httpx.get(bot.url + "/healthz").status_code == 200
