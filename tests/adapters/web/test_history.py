"""The console's history over real HTTP: read from Q as the signed-in user, on any device, only their own."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bot.errors import QUnavailable
from bot.history import in_order
from bot.model import ChatIdentity
from sandbox.world import APP_ID
from tests.adapters.web.conftest import CSRF_HEADER, WebBot

AURORA = "What is Project Aurora?"
GONE = "This conversation no longer exists: it was deleted or has expired."


def _ask(bot: WebBot, http: httpx.Client, me: dict[str, Any], text: str, thread: str, mid: str) -> Any:
    reply = bot.post(http, "/web/api/ask", {"text": text, "thread": thread, "message_id": mid}, csrf=me["csrf"])
    assert reply.status_code == 200, reply.text
    return reply.json()


def _get(http: httpx.Client, path: str, me: dict[str, Any] | None) -> httpx.Response:
    return http.get(path, headers={CSRF_HEADER: me["csrf"]} if me else {})


def _delete(bot: WebBot, http: httpx.Client, path: str, me: dict[str, Any] | None) -> httpx.Response:
    headers = {"Origin": bot.url, **({CSRF_HEADER: me["csrf"]} if me else {})}
    return http.delete(path, headers=headers)


def _identity(http: httpx.Client) -> ChatIdentity:
    return ChatIdentity("web", "", http.cookies["qbot_session"].partition(".")[0])


def test_history_is_q_s_own_and_follows_the_user_to_another_device(web_bot: WebBot) -> None:
    laptop = web_bot.browser()
    me = web_bot.sign_in(laptop, "alice")
    first = _ask(web_bot, laptop, me, AURORA, "t1", "m1")
    second = _ask(web_bot, laptop, me, "When does it launch?", "t1", "m2")
    other = _ask(web_bot, laptop, me, "How many days of paid time off do I get?", "t2", "m3")

    phone = web_bot.browser()  # a new session: nothing of the laptop's is in it but the person
    phone_me = web_bot.sign_in(phone, "alice")
    listed = _get(phone, "/web/conversations", phone_me)
    assert listed.status_code == 200
    assert [(c["conversation_id"], c["title"]) for c in listed.json()["conversations"]] == [
        (other["conversation_id"], "How many days of paid time off do I get?"),  # newest first
        (first["conversation_id"], AURORA),
    ]
    assert all(c["started_at"] for c in listed.json()["conversations"])

    cid = first["conversation_id"]
    opened = _get(phone, f"/web/conversations/{cid}", phone_me)
    assert opened.status_code == 200
    body = opened.json()
    assert body["thread"] == cid
    assert [(m["type"], m.get("text") if m["type"] == "question" else m["message_id"]) for m in body["messages"]] == [
        ("question", AURORA), ("answer", first["message_id"]),
        ("question", "When does it launch?"), ("answer", second["message_id"]),
    ]
    assert body["messages"][1]["text"] == first["text"] and body["messages"][1]["sources"] == first["sources"]

    # Opened here, the conversation continues here: the next answer follows the last one in the same conversation.
    follow = _ask(web_bot, phone, phone_me, "Who leads it?", cid, "p1")
    assert follow["conversation_id"] == cid
    [conversation] = [c for c in web_bot.sandbox.q.conversations.of(APP_ID, "alice@example.com")
                      if c.conversation_id == cid]
    assert [m.message_id for m in conversation.messages if m.type == "SYSTEM"][-2:] == [
        second["message_id"], follow["message_id"]
    ]
    # ... and its earlier answers can be rated from the new device.
    rate = {"conversation_id": cid, "message_id": first["message_id"], "useful": True}
    assert web_bot.post(phone, "/web/api/feedback", rate, csrf=phone_me["csrf"]).status_code == 200

    deleted = _delete(web_bot, phone, f"/web/conversations/{cid}", phone_me)
    assert deleted.status_code == 200 and deleted.json() == {"ok": True}
    assert [c.conversation_id for c in web_bot.sandbox.q.conversations.of(APP_ID, "alice@example.com")] == [
        other["conversation_id"]
    ]
    assert web_bot.servers.run(web_bot.graph.core.accounts.conversations.get(_identity(phone), "web", cid)) is None
    gone = _get(laptop, f"/web/conversations/{cid}", me)
    assert gone.status_code == 404 and gone.json()["error"] == GONE


def test_the_list_comes_in_pages_of_a_hundred(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    store = web_bot.sandbox.q.conversations
    started = [store.start(APP_ID, "alice@example.com", f"Question {n}").conversation_id for n in range(101)]
    first = _get(http, "/web/conversations", me).json()
    assert len(first["conversations"]) == 100 and first["next"]
    second = _get(http, "/web/conversations?next=" + first["next"], me).json()
    assert second["next"] is None
    listed = [c["conversation_id"] for c in first["conversations"] + second["conversations"]]
    assert sorted(listed) == sorted(started)
    for bad in ("", "x" * 801, "a b"):
        refused = http.get("/web/conversations", params={"next": bad}, headers={CSRF_HEADER: me["csrf"]})
        assert refused.status_code == 400
        assert refused.json()["error"] == "'next' must be the token a previous page gave."


def test_bob_cannot_open_or_delete_alices_conversation(web_bot: WebBot) -> None:
    alice, bob = web_bot.browser(), web_bot.browser()
    alice_me, bob_me = web_bot.sign_in(alice, "alice"), web_bot.sign_in(bob, "bob")
    cid = _ask(web_bot, alice, alice_me, AURORA, "t1", "m1")["conversation_id"]

    assert _get(bob, "/web/conversations", bob_me).json() == {"conversations": [], "next": None}
    opened = _get(bob, f"/web/conversations/{cid}", bob_me)
    assert opened.status_code == 404 and opened.json() == {"error": GONE, "kind": "error"}
    assert web_bot.servers.run(web_bot.graph.core.accounts.conversations.get(_identity(bob), "web", cid)) is None
    # Bob's rating of Alice's answer stays refused: opening did not make him its owner.
    assert web_bot.servers.run(web_bot.graph.core.accounts.conversations.owner(cid)) == _identity(alice).key

    assert _delete(web_bot, bob, f"/web/conversations/{cid}", bob_me).status_code == 200  # as if already gone
    assert [c.conversation_id for c in web_bot.sandbox.q.conversations.of(APP_ID, "alice@example.com")] == [cid]
    assert _get(alice, f"/web/conversations/{cid}", alice_me).status_code == 200


def test_history_routes_are_guarded_like_the_rest_of_the_api(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    cid = _ask(web_bot, http, me, AURORA, "t1", "m1")["conversation_id"]
    path = f"/web/conversations/{cid}"
    operations = web_bot.sandbox.q.stats.operations
    before = dict(operations)

    unguarded = (_get(http, "/web/conversations", None), _get(http, path, None), _delete(web_bot, http, path, None))
    for response in unguarded:
        assert response.status_code == 403 and "CSRF" in response.json()["error"]
    foreign = http.delete(path, headers={CSRF_HEADER: me["csrf"], "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    for bad in ("not-an-id", "x" * 37, "-" + "a" * 35):
        bad_path = f"/web/conversations/{bad}"
        for response in (_get(http, bad_path, me), _delete(web_bot, http, bad_path, me)):
            assert response.status_code == 400
            assert response.json()["error"] == "That is not an Amazon Q conversation id."
    assert dict(operations) == before  # none of it reached Q
    assert [c.conversation_id for c in web_bot.sandbox.q.conversations.of(APP_ID, "alice@example.com")] == [cid]

    stranger = web_bot.browser()
    for response in (_get(stranger, "/web/conversations", me), _delete(web_bot, stranger, path, me)):
        assert response.status_code == 401 and response.json()["kind"] == "not_linked"
    half = web_bot.browser()  # a session whose IdP sign-in was abandoned: signed in, not linked
    assert half.get("/web/login").status_code == 302
    half_me = web_bot.me(half)
    listed = _get(half, "/web/conversations", half_me)
    assert listed.status_code == 401 and listed.json()["kind"] == "not_linked"


def test_qlink_says_who_you_are_and_help_speaks_of_the_console(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    linked = _ask(web_bot, http, me, "qlink", "t1", "m1")
    assert linked["type"] == "info" and linked["url"] is None
    assert linked["text"].startswith("You're already signed in as alice@example.com")
    helped = _ask(web_bot, http, me, "help", "t1", "m2")
    assert "thread" not in helped["text"].lower() and "qlink" not in helped["text"]
    assert "New conversation" in helped["text"] and "Sign out" in helped["text"]


def test_revoked_credentials_are_replaced_once(web_bot: WebBot) -> None:
    http = web_bot.browser()
    me = web_bot.sign_in(http, "alice")
    cid = _ask(web_bot, http, me, AURORA, "t1", "m1")["conversation_id"]
    cached = web_bot.servers.run(web_bot.graph.broker.credentials(_identity(http)))
    web_bot.sandbox.credentials.revoke(cached.access_key_id)  # AWS revoked the session: Q rejects its signature
    listed = _get(http, "/web/conversations", me)
    assert listed.status_code == 200 and [c["conversation_id"] for c in listed.json()["conversations"]] == [cid]



def test_q_away_is_a_readable_503(make_web_bot: Callable[..., WebBot]) -> None:
    with socket.socket() as closed:  # a loopback port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    bot = make_web_bot(QBOT_Q_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    http = bot.browser()
    me = bot.sign_in(http, "alice")
    for response in (_get(http, "/web/conversations", me), _get(http, f"/web/conversations/{'c' * 36}", me)):
        assert response.status_code == 503
        assert response.json() == {"error": QUnavailable.user_message, "kind": "error"}


def test_messages_are_shown_oldest_first_whatever_order_q_lists_them_in() -> None:
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    listed: list[Any] = [
        {"messageId": "a2", "type": "SYSTEM", "body": "Second answer", "time": at + timedelta(minutes=1)},
        {"messageId": "q2", "type": "USER", "body": "Second question", "time": at + timedelta(minutes=1)},
        {"messageId": "a1", "type": "SYSTEM", "body": "First answer", "time": at},
        {"messageId": "q1", "type": "USER", "body": "First question", "time": at},
    ]
    assert [m["messageId"] for m in in_order(listed)] == ["q1", "a1", "q2", "a2"]
