"""Console sessions end: an absolute and an idle lifetime under the cookie's MAC, sliding on use; their links
(vault entries) expire with them, and the refresh token is revoked at the IdP when a session ends, is signed
out of, or is replaced by a new sign-in in the same browser."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from aiohttp import web

from adapters.web.console import WebConsole, web_console
from adapters.web.session import Session, Sessions
from bot.config import Settings
from bot.errors import ConfigError
from bot.link_deadlines import GRACE_SECONDS, KEY
from bot.model import ChatIdentity
from bot.vault import Vault
from tests.adapters.web.conftest import WebBot
from tests.signin import sign_in_at_idp

TTL, IDLE = 7200, 1800
LIFETIMES = {"QBOT_WEB_SESSION_TTL_SECONDS": str(TTL), "QBOT_WEB_SESSION_IDLE_SECONDS": str(IDLE)}


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def console_of(bot: WebBot) -> WebConsole:
    (console,) = (a for a in bot.graph.adapters if isinstance(a, WebConsole))
    return console


def session_of(http: httpx.Client) -> Session:
    sid, issued, seen, _ = http.cookies["qbot_session"].split(".")
    return Session(sid, int(issued), int(seen))


def identity(http: httpx.Client) -> ChatIdentity:
    return ChatIdentity("web", "", session_of(http).sid)


def set_session(bot: WebBot, http: httpx.Client, session: Session) -> None:
    """Hand the browser a genuine cookie (signed by the bot itself) for `session`, e.g. one issued long ago."""
    http.cookies.clear()
    http.cookies.set("qbot_session", console_of(bot).sessions.cookie_value(session), domain="127.0.0.1")


def ask(bot: WebBot, http: httpx.Client, csrf: str, text: str = "qstatus") -> httpx.Response:
    return bot.post(http, "/web/api/ask", {"text": text, "thread": "t1", "message_id": "m1"}, csrf=csrf)


def test_lifetimes_come_from_the_environment_with_sensible_defaults(web_bot: WebBot) -> None:
    sessions = console_of(web_bot).sessions
    assert (sessions.ttl_seconds, sessions.idle_seconds) == (8 * 3600, 3600)
    for name in LIFETIMES:
        for bad in ("0", "soon"):
            settings = Settings.from_env({**web_bot.sandbox.env(), "QBOT_TOKEN_KEYS": ",".join(
                web_bot.graph.settings.token_keys), name: bad})
            with pytest.raises(ConfigError) as refused:
                web_console(web_bot.graph.core, settings)
            assert name in refused.value.user_message


def test_a_session_ends_at_its_absolute_lifetime_however_busy(make_web_bot: Callable[..., WebBot]) -> None:
    bot = make_web_bot(**LIFETIMES)
    http = bot.browser()
    me = bot.sign_in(http, "alice")
    session, now = session_of(http), int(time.time())
    set_session(bot, http, Session(session.sid, now - TTL + 60, now))  # a minute left
    assert bot.me(http)["linked"] is True and ask(bot, http, me["csrf"]).status_code == 200
    set_session(bot, http, Session(session.sid, now - TTL - 1, now))  # used just now, but issued too long ago
    assert bot.me(http)["signed_in"] is False
    assert ask(bot, http, me["csrf"]).status_code == 401


def test_a_session_ends_after_its_idle_lifetime_and_use_slides_it(make_web_bot: Callable[..., WebBot]) -> None:
    bot = make_web_bot(**LIFETIMES)
    http = bot.browser()
    me = bot.sign_in(http, "alice")
    session, now = session_of(http), int(time.time())
    set_session(bot, http, Session(session.sid, now - 100, now - IDLE + 60))  # idle, a minute left
    answer = ask(bot, http, me["csrf"])
    assert answer.status_code == 200 and "Linked as alice@example.com" in answer.json()["text"]
    renewed = session_of(http)  # the reply re-issued the cookie: last use is now, issue time unchanged
    assert renewed.issued_at == now - 100 and renewed.seen_at >= now
    assert bot.me(http)["linked"] is True
    set_session(bot, http, Session(session.sid, now - 100, now - IDLE - 1))
    assert bot.me(http)["signed_in"] is False
    assert ask(bot, http, me["csrf"]).status_code == 401


def test_only_a_same_site_use_keeps_a_session_alive(web_bot: WebBot) -> None:
    http = web_bot.browser()
    web_bot.sign_in(http, "alice")
    assert "set-cookie" in http.get("/web/api/me").headers
    cross_site = http.get("/web/api/me", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.json()["linked"] is True and "set-cookie" not in cross_site.headers


def test_the_link_expires_with_the_session(make_web_bot: Callable[..., WebBot], store: redis.Redis) -> None:
    bot = make_web_bot(**LIFETIMES)
    http = bot.browser()
    login = http.get("/web/login")
    assert http.get(sign_in_at_idp(http, login.headers["location"], "alice").headers["location"]).status_code == 302
    key = Vault.account_key(identity(http))  # linked by the callback alone, before any use of the console
    assert IDLE + GRACE_SECONDS - 30 <= store.ttl(key) <= IDLE + GRACE_SECONDS
    deadline = store.zscore(KEY, identity(http).key)
    assert deadline is not None and abs(deadline - (time.time() + IDLE)) < 30
    store.expire(key, 100)  # as if the session had been idle for most of its lifetime
    bot.me(http)  # a use: the link's end moves with the session's
    assert IDLE + GRACE_SECONDS - 30 <= store.ttl(key) <= IDLE + GRACE_SECONDS


def test_an_ended_session_has_its_refresh_token_revoked(make_web_bot: Callable[..., WebBot]) -> None:
    bot = make_web_bot(**LIFETIMES)
    http = bot.browser()
    bot.sign_in(http, "alice")
    core, idp = bot.graph.core, bot.sandbox.idp
    assert len(idp.live_refresh_tokens("alice")) == 1
    assert bot.servers.run(core.accounts.end_overdue_links(now=time.time() + IDLE - 60)) == 0  # not yet over
    assert bot.me(http)["linked"] is True
    assert bot.servers.run(core.accounts.end_overdue_links(now=time.time() + IDLE + 60)) == 1
    assert idp.live_refresh_tokens("alice") == []
    assert bot.servers.run(core.accounts.vault.load(identity(http))) is None
    assert bot.me(http)["linked"] is False


def test_the_console_sweeps_ended_sessions_by_itself(make_web_bot: Callable[..., WebBot]) -> None:
    bot = make_web_bot(QBOT_WEB_SESSION_IDLE_SECONDS="2")  # swept every second
    http = bot.browser()
    bot.sign_in(http, "alice")
    idp = bot.sandbox.idp
    assert len(idp.live_refresh_tokens("alice")) == 1
    give_up = time.monotonic() + 20
    while idp.live_refresh_tokens("alice") and time.monotonic() < give_up:
        time.sleep(0.2)  # waiting for the sweep's outcome, not asserting on time
    assert idp.live_refresh_tokens("alice") == []
    assert bot.servers.run(bot.graph.core.accounts.vault.load(identity(http))) is None


def test_signing_out_revokes_the_refresh_token(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    assert len(web_bot.sandbox.idp.live_refresh_tokens("alice")) == 1
    assert web_bot.post(http, "/web/logout", {}, csrf=me["csrf"]).status_code == 200
    assert web_bot.sandbox.idp.live_refresh_tokens("alice") == []


def test_a_new_sign_in_replacing_an_ended_session_revokes_its_token(make_web_bot: Callable[..., WebBot]) -> None:
    bot = make_web_bot(**LIFETIMES)
    http = bot.browser()
    bot.sign_in(http, "alice")
    old, now = session_of(http), int(time.time())
    set_session(bot, http, Session(old.sid, now - 100, now - IDLE - 1))  # ended, still in the browser
    assert bot.me(http)["signed_in"] is False
    assert bot.sign_in(http, "bob")["email"] == "bob@example.com"
    assert session_of(http).sid != old.sid  # a fresh session id, never the one the browser brought
    assert bot.sandbox.idp.live_refresh_tokens("alice") == []
    assert bot.servers.run(bot.graph.core.accounts.vault.load(ChatIdentity("web", "", old.sid))) is None
    assert len(bot.sandbox.idp.live_refresh_tokens("bob")) == 1


# -- the cookie itself, on a clock the test moves ---------------------------------------------------------

SECRET = b"0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def sessions_on(clock: Clock, *, secure: bool = False, secret: bytes = SECRET) -> Sessions:
    return Sessions(secret, secure=secure, ttl_seconds=TTL, idle_seconds=IDLE, clock=clock)


def test_a_short_secret_or_a_lifetime_under_a_second_is_refused() -> None:
    with pytest.raises(ValueError):
        Sessions(b"x" * 15, secure=False, ttl_seconds=60, idle_seconds=60)
    for ttl, idle in ((0, 60), (60, 0)):
        with pytest.raises(ValueError):
            Sessions(SECRET, secure=False, ttl_seconds=ttl, idle_seconds=idle)
    one_second = Sessions(b"x" * 16, secure=False, ttl_seconds=1, idle_seconds=1)  # the least that is allowed
    assert one_second.live(one_second.new())


def test_a_session_is_live_until_the_second_either_lifetime_ends() -> None:
    clock = Clock()
    sessions = sessions_on(clock)
    session = sessions.new()
    assert (session.issued_at, session.seen_at) == (int(clock.now), int(clock.now))
    clock.now += IDLE - 1
    assert sessions.live(session) and sessions.lifetime_left(session) == 1
    clock.now += 1
    assert not sessions.live(session)  # idle lifetime over
    used = Session(session.sid, session.issued_at, int(clock.now) - 10)
    clock.now = session.issued_at + TTL - 1
    used = sessions.used(used)
    assert used.seen_at == int(clock.now) and used.issued_at == session.issued_at
    assert sessions.ends_at(used) == session.issued_at + TTL and sessions.live(used)
    clock.now += 1
    assert not sessions.live(used)  # absolute lifetime over, however recently used


def test_only_an_untouched_cookie_of_this_secret_verifies() -> None:
    clock = Clock()
    sessions = sessions_on(clock)
    session = sessions.new()
    value = sessions.cookie_value(session)
    assert sessions.verify(value) == session
    sid, issued, seen, mac = value.split(".")
    forged_mac = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for forged in (
        f"{sid}.{issued}.{seen}.{forged_mac}",
        f"{sid}.{int(issued) + TTL}.{seen}.{mac}",  # a later issue time under the old MAC
        f"{sid}.{issued}.{seen}",
        f"{value}.extra",
        f"{sid}x.{issued}.{seen}.{mac}",
        f"{sid[:-1]}.{issued}.{seen}.{mac}",
        f"{sid}.{issued}.1{'0' * 12}.{mac}",
        f"{sid}.-{issued}.{seen}.{mac}",
        "",
    ):
        assert sessions.verify(forged) is None, forged
    assert sessions_on(clock, secret=b"another secret, 32 bytes long!!!").verify(value) is None
    now = int(clock.now)
    for ill_formed in (Session(sid[:-1], now, now), Session(sid + "x", now, now), Session(sid, -1, now),
                       Session(sid, now, 10**12)):  # signed with the secret, yet not a session we issue
        assert sessions.verify(sessions.cookie_value(ill_formed)) is None, ill_formed
    # the CSRF token is a MAC of the id too, but under its own label: it never passes for a session's MAC
    assert sessions.verify(f"{sid}.{issued}.{seen}.{sessions.csrf_token(f'{sid}.{issued}.{seen}')}") is None


def test_the_csrf_token_belongs_to_one_session_and_one_secret() -> None:
    clock = Clock()
    sessions = sessions_on(clock)
    mine, theirs = sessions.new().sid, sessions.new().sid
    token = sessions.csrf_token(mine)
    assert sessions.csrf_ok(mine, token)
    assert not sessions.csrf_ok(theirs, token)
    assert not sessions.csrf_ok(mine, sessions_on(clock, secret=b"another secret, 32 bytes long!!!").csrf_token(mine))
    assert not sessions.csrf_ok(mine, "")


@pytest.mark.parametrize("secure", [False, True])
def test_the_cookie_lives_until_the_absolute_end_and_a_cleared_one_at_once(secure: bool) -> None:
    clock = Clock()
    sessions = sessions_on(clock, secure=secure)
    assert sessions.cookie_name == ("__Host-qbot_session" if secure else "qbot_session")
    session = sessions.new()
    clock.now += 100
    response = web.Response()
    sessions.set(response, sessions.used(session))
    cookie = response.cookies[sessions.cookie_name]
    assert sessions.verify(cookie.value) == Session(session.sid, session.issued_at, int(clock.now))
    assert (cookie["max-age"], cookie["path"], cookie["httponly"], cookie["samesite"]) == (
        str(TTL - 100), "/", True, "Lax")
    assert cookie["secure"] is secure
    clock.now = session.issued_at + TTL + 5
    response = web.Response()
    sessions.set(response, session)
    assert response.cookies[sessions.cookie_name]["max-age"] == "0"  # never a negative Max-Age
    response = web.Response()
    sessions.clear(response)
    cleared = response.cookies[sessions.cookie_name]
    assert (cleared.value, cleared["max-age"], cleared["path"], cleared["httponly"], cleared["samesite"]) == (
        "", "0", "/", True, "Lax")
    assert cleared["secure"] is secure


def test_macs_are_unpadded_url_safe_base64() -> None:
    """Cookie and header values stay plain tokens: no '=' padding (which cookie parsers may quote or cut)."""
    sessions = sessions_on(Clock())
    sids = [f"{n:043d}" for n in range(20)]
    macs = [sessions.cookie_value(Session(sid, 1, 2)).rsplit(".", 1)[1] for sid in sids]
    for sid, mac in zip(sids, macs, strict=True):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", mac) and re.fullmatch(r"[A-Za-z0-9_-]{43}", sessions.csrf_token(sid))
        assert sessions.verify(f"{sid}.1.2.{mac}") == Session(sid, 1, 2)
