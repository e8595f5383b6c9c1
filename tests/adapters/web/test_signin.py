"""Signing in to the console stores nothing until the IdP sends the user back; only the cookie of the browser
that began a sign-in can finish it, once; `qlink` in the console hands out no link; link records are sealed."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis

from adapters.web.signin import LOGIN_COOKIE_PREFIX, login_cookie_name
from bot.links import LinkTokens, LoginStates
from bot.model import ChatIdentity
from bot.turn_queue import STREAM
from tests.adapters.web.conftest import WebBot
from tests.signin import sign_in_at_idp


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """The bot's real Redis, to count and read keys (and, once, to write what an attacker would)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _begin(bot: WebBot, http: httpx.Client, username: str) -> str:
    """/web/login and the IdP sign-in as `username`; returns the callback URL the IdP sent the browser to."""
    login = http.get("/web/login")
    assert login.status_code == 302
    idp = sign_in_at_idp(http, login.headers["location"], username)
    assert idp.status_code == 302
    return str(idp.headers["location"])


def _state(callback_url: str) -> str:
    return parse_qs(urlsplit(callback_url).query)["state"][0]


def _login_cookie(http: httpx.Client) -> tuple[str, str]:
    (name, value), = ((c.name, c.value) for c in http.cookies.jar if c.name.startswith(LOGIN_COOKIE_PREFIX))
    return name, value or ""


def stored(store: redis.Redis) -> int:
    """Keys in Redis besides the turn stream every bot makes at start-up."""
    return sum(1 for key in store.scan_iter() if key != STREAM.encode())


def _set_login_cookie(http: httpx.Client, name: str, value: str) -> None:
    for cookie in [c for c in http.cookies.jar if c.name.startswith(LOGIN_COOKIE_PREFIX)]:
        http.cookies.delete(cookie.name, domain=cookie.domain, path=cookie.path)
    http.cookies.set(name, value, domain="127.0.0.1", path="/auth/callback")


def test_anonymous_sign_in_visits_store_nothing_in_redis(web_bot: WebBot, store: redis.Redis) -> None:
    """The review's 2,000 GET /web/login from one client added 2,000 Redis keys (one per visit); now none."""
    assert stored(store) == 0
    http = web_bot.browser()
    for _ in range(50):
        login = http.get("/web/login")
        assert login.status_code == 302 and login.headers["location"].startswith(web_bot.sandbox.idp_url)
        for cookie in [c for c in http.cookies.jar if c.name.startswith(LOGIN_COOKIE_PREFIX)]:
            http.cookies.delete(cookie.name)  # the session cookie stays
    assert stored(store) == 0


def test_a_forged_or_moved_login_cookie_finishes_nothing(web_bot: WebBot, store: redis.Redis) -> None:
    alice, mallory = web_bot.browser(), web_bot.browser()
    callback = _begin(web_bot, alice, "alice")
    name, value = _login_cookie(alice)
    _begin(web_bot, mallory, "bob")
    _, mallorys = _login_cookie(mallory)
    for forged in (value[:50] + ("A" if value[50] != "A" else "B") + value[51:], value[:-4], "x", mallorys):
        _set_login_cookie(alice, name, forged)
        refused = alice.get(callback)
        assert refused.status_code == 400 and "invalid, expired or already finished" in refused.text, forged
        assert stored(store) == 0  # not even a spent mark: the code was not redeemed
    assert web_bot.me(alice)["linked"] is False
    assert web_bot.sandbox.idp.live_refresh_tokens("alice") == []
    # The genuine cookie still finishes the sign-in (the refusals above spent nothing).
    _set_login_cookie(alice, name, value)
    assert alice.get(callback).headers["location"] == "/"
    assert web_bot.me(alice)["email"] == "alice@example.com"


def test_an_expired_login_cookie_finishes_nothing(make_web_bot: Callable[..., WebBot], store: redis.Redis) -> None:
    web_bot = make_web_bot(QBOT_LINK_TTL_SECONDS="1")
    http = web_bot.browser()
    callback = _begin(web_bot, http, "alice")
    name, value = _login_cookie(http)
    time.sleep(1.1)  # the sealed state's own expiry passes
    _set_login_cookie(http, name, value)  # kept past its max-age, as an attacker would
    refused = http.get(callback)
    assert refused.status_code == 400 and "expired" in refused.text
    assert stored(store) == 0 and web_bot.me(http)["linked"] is False
    assert web_bot.sandbox.idp.live_refresh_tokens("alice") == []


def test_a_state_finished_elsewhere_is_refused_and_its_tokens_revoked(web_bot: WebBot, store: redis.Redis) -> None:
    """Single use across bot processes: once a state is spent (the IdP redeemed its code), it finishes nothing
    again, even if an IdP honoured its code twice; the tokens such a replay got are revoked."""
    http = web_bot.browser()
    callback = _begin(web_bot, http, "alice")
    store.set(LoginStates.key_for(_state(callback)), b"1", px=60_000)  # another process finished it
    refused = http.get(callback)
    assert refused.status_code == 400 and "already finished" in refused.text
    assert web_bot.me(http)["linked"] is False
    assert web_bot.sandbox.idp.live_refresh_tokens("alice") == []


def test_a_finished_sign_in_is_marked_spent_and_its_cookie_deleted(web_bot: WebBot, store: redis.Redis) -> None:
    http = web_bot.browser()
    callback = _begin(web_bot, http, "alice")
    name, value = _login_cookie(http)
    assert name == login_cookie_name(_state(callback))
    done = http.get(callback)
    assert done.status_code == 302 and f'{name}=""' in done.headers["set-cookie"]
    spent = LoginStates.key_for(_state(callback))
    assert store.get(spent) == b"1" and 0 < store.pttl(spent) <= 600_000
    _set_login_cookie(http, name, value)
    replay = http.get(callback)
    assert replay.status_code == 400
    assert web_bot.me(http)["email"] == "alice@example.com"


def test_qlink_in_an_anonymous_console_session_hands_out_no_link(web_bot: WebBot, store: redis.Redis) -> None:
    """The review's takeover: an anonymous console session typed qlink, forwarded the /auth/start URL, and
    whoever signed in with it linked their account to the attacker's session."""
    mallory = web_bot.browser()
    assert mallory.get("/web/login").status_code == 302  # a session; the IdP sign-in abandoned
    me = web_bot.me(mallory)
    assert me["signed_in"] and not me["linked"]
    for text in ("qlink", "/qlink", "QLink please"):
        reply = web_bot.post(mallory, "/web/api/ask", {"text": text, "thread": "t1", "message_id": "m1"},
                             csrf=me["csrf"]).json()
        assert reply["type"] == "not_linked" and reply["url"] is None, reply
        assert "Sign in button" in reply["text"]
    assert store.keys("qbot:link:*") == [] and stored(store) == 0


def test_qlink_in_a_signed_in_console_says_who_you_are(web_bot: WebBot, store: redis.Redis) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    reply = web_bot.post(http, "/web/api/ask", {"text": "qlink", "thread": "t1", "message_id": "m1"},
                         csrf=me["csrf"]).json()
    assert reply["type"] == "info" and reply["url"] is None
    assert "already signed in as alice@example.com" in reply["text"]
    assert store.keys("qbot:link:*") == []


def test_a_hand_written_link_record_starts_no_sign_in(web_bot: WebBot, store: redis.Redis) -> None:
    """Whoever can write to Redis could bind any chat identity with a plaintext `qbot:link:` record."""
    token = "T" * 43
    victim = ChatIdentity("slack", "T1", "U-VICTIM")
    record = {"p": victim.platform, "n": victim.tenant, "u": victim.user, "e": None, "r": None, "t": time.time()}
    store.set(LinkTokens.key_for(token), json.dumps(record), ex=600)
    http = web_bot.browser()
    refused = http.get(f"/auth/start?t={token}")
    assert refused.status_code == 400 and "qlink" in refused.text
    assert "set-cookie" not in refused.headers
    assert stored(store) == 0  # the forged record was used up, and nothing took its place


def test_console_api_refuses_deep_and_huge_json_without_an_error_log(
    web_bot: WebBot, caplog: pytest.LogCaptureFixture
) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    headers = {"X-QBot-CSRF": me["csrf"], "Content-Type": "application/json", "Origin": web_bot.url}
    deep = b'{"text": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    caplog.set_level(logging.DEBUG)
    for path in ("/web/api/ask", "/web/api/feedback"):
        nested = http.post(path, content=deep, headers=headers)
        assert nested.status_code == 400 and "nested too deeply" in nested.json()["error"], nested.text
    huge = http.post("/web/api/ask", content=b'{"text": "' + b"x" * 70_000 + b'"}', headers=headers)
    assert huge.status_code == 413 and "too large" in huge.json()["error"]
    chunked = http.post("/web/api/ask", content=iter([b'{"text": "', b"x" * 70_000, b'"}']), headers=headers)
    assert chunked.status_code == 413
    # Without a session, nothing is read at all: the refusal is the same whatever the body.
    anonymous = web_bot.browser()
    for body in (deep, b"{", b"x" * 1_000_000):
        refused = anonymous.post("/web/api/ask", content=body, headers=headers)
        assert refused.status_code == 401 and refused.json()["kind"] == "not_linked"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info or r.exc_text] == []
