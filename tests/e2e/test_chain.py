"""The spine end to end: qlink -> browser sign-in at the IdP -> callback -> questions answered as the user."""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis

from bot.links import LinkTokens
from bot.model import Answer, ChatIdentity, Notice, NoticeKind
from tests.conftest import expire_now_sync
from tests.e2e.conftest import RunningBot
from tests.signin import follow_link

ALICE = ChatIdentity("test", "T1", "U-ALICE")
BOB = ChatIdentity("test", "T1", "U-BOB")
AURORA = "What is Project Aurora?"


def link(bot: RunningBot, identity: ChatIdentity, username: str, profile_email: str | None = None) -> httpx.Response:
    """qlink as a chat user whose profile email the platform told (by default: the IdP user's own)."""
    notice = bot.ask(identity, "qlink", profile_email=profile_email or f"{username}@example.com")
    assert isinstance(notice, Notice) and notice.kind is NoticeKind.LINK and notice.private
    assert notice.url and notice.url.startswith(bot.url + "/auth/start?t=")
    return follow_link(notice.url, username)


def cites_aurora(reply: Any) -> bool:
    return isinstance(reply, Answer) and any("aurora" in (s.title + s.snippet).lower() for s in reply.sources)


def test_link_then_ask_answers_with_citations_and_threads_are_conversations(bot: RunningBot) -> None:
    page = link(bot, ALICE, "alice")
    assert page.status_code == 200 and "Linked as alice@example.com" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"

    first = bot.ask(ALICE, AURORA, thread="t1")
    assert isinstance(first, Answer) and cites_aurora(first)
    assert first.sources[0].url and first.sources[0].url.startswith("https://")
    follow_up = bot.ask(ALICE, "When does it launch?", thread="t1")
    assert isinstance(follow_up, Answer) and follow_up.conversation_id == first.conversation_id
    other_thread = bot.ask(ALICE, AURORA, thread="t2")
    assert isinstance(other_thread, Answer) and other_thread.conversation_id != first.conversation_id


def test_acls_hold_through_the_chain(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    link(bot, BOB, "bob")
    assert cites_aurora(bot.ask(ALICE, AURORA))
    bobs = bot.ask(BOB, AURORA)
    assert isinstance(bobs, Answer) and not cites_aurora(bobs)


def test_two_users_in_one_thread_never_share_a_conversation(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    link(bot, BOB, "bob")
    a = bot.ask(ALICE, AURORA, thread="shared")
    b = bot.ask(BOB, "How many vacation days do I get?", thread="shared")
    assert isinstance(a, Answer) and isinstance(b, Answer) and a.conversation_id != b.conversation_id


def test_unlinked_user_is_prompted_privately_and_q_is_not_called(bot: RunningBot) -> None:
    reply = bot.ask(ALICE, AURORA)
    assert isinstance(reply, Notice) and reply.kind is NoticeKind.NOT_LINKED and reply.private
    assert "qlink" in reply.text
    assert sum(bot.sandbox.q.stats.chat_calls.values()) == 0


def test_link_token_is_single_use(bot: RunningBot) -> None:
    notice = bot.ask(ALICE, "qlink", profile_email="alice@example.com")
    assert isinstance(notice, Notice) and notice.url
    first = httpx.get(notice.url, follow_redirects=False)
    assert first.status_code == 302
    again = httpx.get(notice.url, follow_redirects=False)
    assert again.status_code == 400 and "already used" in again.text


def test_tampered_and_expired_link_tokens_are_refused(make_bot: Any, redis_url: str) -> None:
    bot = make_bot(QBOT_LINK_TTL_SECONDS="1")
    notice = bot.ask(ALICE, "qlink", profile_email="alice@example.com")
    assert isinstance(notice, Notice) and notice.url
    tampered = httpx.get(notice.url[:-2] + ("AA" if not notice.url.endswith("AA") else "BB"), follow_redirects=False)
    assert tampered.status_code == 400 and "qlink" in tampered.text
    key = LinkTokens.key_for(parse_qs(urlsplit(notice.url).query)["t"][0])
    store = redis.Redis.from_url(redis_url)
    assert 0 < store.pttl(key) <= 1000  # the link lives QBOT_LINK_TTL_SECONDS
    expire_now_sync(store, key)
    store.close()
    expired = httpx.get(notice.url, follow_redirects=False)
    assert expired.status_code == 400
    assert bot.run(bot.core.accounts.vault.load(ALICE)) is None


def test_replayed_and_tampered_state_are_refused(bot: RunningBot) -> None:
    notice = bot.ask(ALICE, "qlink", profile_email="alice@example.com")
    assert isinstance(notice, Notice) and notice.url
    with httpx.Client(follow_redirects=False) as http:
        start = http.get(notice.url)
        from tests.signin import sign_in_at_idp

        idp = sign_in_at_idp(http, start.headers["location"], "alice")
        callback_url = idp.headers["location"]
        tampered = http.get(callback_url.replace("state=", "state=x"))
        assert tampered.status_code == 400
        ok = http.get(callback_url)
        assert ok.status_code == 200
        replay = http.get(callback_url)
        assert replay.status_code == 400 and "qlink" in replay.text


def test_forged_id_tokens_are_refused_and_store_nothing(bot: RunningBot) -> None:
    faults = bot.sandbox.idp.faults
    cases: list[dict[str, Any]] = [
        {"sign_with_rogue_key": True},
        {"id_token_claims": {"iss": "https://evil.example.com"}},
        {"id_token_claims": {"aud": "someone-else"}},
        {"id_token_claims": {"nonce": "not-the-nonce"}},
        {"id_token_claims": {"exp": 1_000_000_000}},
        {"id_token_claims": {"exp": int(time.time()) - 300}},  # five minutes late: beyond any sane leeway
        {"id_token_claims": {"email_verified": False}},
        {"omit_aws_tags": True},
    ]
    for case in cases:
        faults.reset()
        for name, value in case.items():
            setattr(faults, name, value)
        page = link(bot, ALICE, "alice")
        assert page.status_code == 400, case
        assert "Traceback" not in page.text
        assert bot.run(bot.core.accounts.vault.load(ALICE)) is None, case
    faults.reset()
    assert link(bot, ALICE, "alice").status_code == 200


@pytest.mark.parametrize(("fault", "message"), [
    ({"omit_email": True}, "Your sign-in has no email address, which Amazon Q needs. Ask your administrator."),
    ({"id_token_claims": {"email_verified": False}},
     "Your sign-in's email address is not verified. Ask your administrator."),
    ({"omit_refresh_token": True}, "The sign-in service issued no refresh token, so qbot cannot act for you later. "
                                   "Ask your administrator to allow offline_access for the qbot app."),
], ids=["no email", "email not verified", "no refresh token"])
def test_a_sign_in_qbot_cannot_use_says_why_and_keeps_nothing(
    bot: RunningBot, fault: dict[str, Any], message: str
) -> None:
    for name, value in fault.items():
        setattr(bot.sandbox.idp.faults, name, value)
    page = link(bot, ALICE, "alice")
    assert page.status_code == 400 and html.escape(message) in page.text
    assert bot.run(bot.core.accounts.vault.load(ALICE)) is None
    assert bot.sandbox.idp.live_refresh_tokens("alice") == []  # a refresh token it was given is revoked


def test_missing_email_tag_says_what_to_fix(bot: RunningBot) -> None:
    bot.sandbox.idp.faults.omit_aws_tags = True
    page = link(bot, ALICE, "alice")
    assert page.status_code == 400 and "https://aws.amazon.com/tags" in page.text


def test_email_mismatch_refuses_a_forwarded_link(bot: RunningBot) -> None:
    page = link(bot, BOB, "alice", profile_email="bob@example.com")
    assert page.status_code == 400 and "bob@example.com" in page.text
    assert bot.run(bot.core.accounts.vault.load(BOB)) is None
    assert link(bot, BOB, "bob", profile_email="Bob@Example.com").status_code == 200


def test_a_link_nobody_can_check_is_never_issued(bot: RunningBot, redis_url: str) -> None:
    """Without a profile email to match and without a browser to bind to, whoever opened the link would
    become this chat user: the core refuses to make one (the console attack of issue 9)."""
    reply = bot.ask(ALICE, "qlink")
    assert isinstance(reply, Notice) and reply.url is None and "email" in reply.text
    assert not list(redis.Redis.from_url(redis_url).scan_iter("qbot:link:*"))


def test_a_forwardable_setting_still_never_issues_an_unbindable_link(make_bot: Any, redis_url: str) -> None:
    bot = make_bot(QBOT_REQUIRE_EMAIL_MATCH="false")
    reply = bot.ask(ALICE, "qlink")
    assert isinstance(reply, Notice) and reply.url is None
    assert not list(redis.Redis.from_url(redis_url).scan_iter("qbot:link:*"))


def test_email_and_the_aws_email_tag_must_name_the_same_person(bot: RunningBot) -> None:
    """An IdP mapping that sends email=carol but tags the session Email=alice would link as carol and answer as
    alice: refused, nothing stored, the refresh token revoked."""
    bot.sandbox.idp.faults.id_token_claims = {"email": "carol@example.com"}
    page = link(bot, ALICE, "alice", profile_email="carol@example.com")
    assert page.status_code == 400 and "https://aws.amazon.com/tags" in page.text
    assert bot.run(bot.core.accounts.vault.load(ALICE)) is None
    assert bot.sandbox.idp.live_refresh_tokens("alice") == []


def test_the_profile_email_is_matched_against_the_aws_email_tag(bot: RunningBot) -> None:
    bot.sandbox.idp.faults.id_token_claims = {
        "email": "carol@example.com",
        "https://aws.amazon.com/tags": {"principal_tags": {"Email": ["carol@example.com"]}},
    }  # consistent with each other, but alice signed in for a chat user whose profile says alice
    page = link(bot, ALICE, "alice", profile_email="alice@example.com")
    assert page.status_code == 400 and "carol@example.com" in page.text
    assert bot.run(bot.core.accounts.vault.load(ALICE)) is None


def test_relinking_revokes_the_previous_sign_in(bot: RunningBot) -> None:
    assert link(bot, ALICE, "alice").status_code == 200
    first = bot.sandbox.idp.live_refresh_tokens("alice")
    assert link(bot, ALICE, "alice").status_code == 200
    second = bot.sandbox.idp.live_refresh_tokens("alice")
    assert len(first) == 1 and len(second) == 1 and first != second


def test_with_the_email_check_off_a_different_profile_email_still_links(make_bot: Any) -> None:
    bot = make_bot(QBOT_REQUIRE_EMAIL_MATCH="false")
    assert link(bot, BOB, "alice", profile_email="bob@example.com").status_code == 200
    assert bot.run(bot.core.accounts.linked_email(BOB)) == "alice@example.com"


def test_credentials_q_rejects_are_replaced_once_and_the_question_answered(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    assert cites_aurora(bot.ask(ALICE, AURORA))
    cached = bot.run(bot.core.accounts.vault.load_credentials(ALICE))
    assert cached is not None
    bot.sandbox.credentials.revoke(cached.access_key_id)  # revoked at AWS, still cached by the bot
    assert cites_aurora(bot.ask(ALICE, AURORA, thread="t2"))
    assert bot.sandbox.sts.stats.calls["alice@example.com"] == 2


def test_idp_error_is_shown_with_its_message(bot: RunningBot) -> None:
    bot.sandbox.idp.faults.authorize_error = "access_denied"
    page = link(bot, ALICE, "alice")
    assert page.status_code == 400 and "refused" in page.text


def test_revoked_refresh_token_asks_to_relink_and_clears_the_link(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    bot.sandbox.idp.revoke_user("alice")
    reply = bot.ask(ALICE, AURORA)
    assert isinstance(reply, Notice) and "qlink" in reply.text
    assert bot.run(bot.core.accounts.vault.load(ALICE)) is None
    status = bot.ask(ALICE, "qstatus")
    assert isinstance(status, Notice) and status.kind is NoticeKind.NOT_LINKED


def test_fifty_concurrent_messages_cause_one_refresh_and_one_sts_call(bot: RunningBot) -> None:
    from bot.model import IncomingMessage

    link(bot, ALICE, "alice")
    refreshes_before = bot.sandbox.idp.stats.refreshes["alice"]

    async def burst() -> list[Any]:
        return await asyncio.gather(
            *(
                bot.core.handle(IncomingMessage(ALICE, AURORA, "c1", f"thread-{n}", f"msg-{n}"))
                for n in range(50)
            )
        )

    replies = bot.servers.run(burst(), timeout=60)
    assert all(isinstance(r, Answer) for r in replies)
    assert bot.sandbox.idp.stats.refreshes["alice"] - refreshes_before == 1
    assert bot.sandbox.sts.stats.calls["alice@example.com"] == 1


def test_tokens_survive_key_rotation(make_bot: Any) -> None:
    from cryptography.fernet import Fernet

    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old = make_bot(QBOT_TOKEN_KEYS=key_a)
    link(old, ALICE, "alice")
    without_a = make_bot(QBOT_TOKEN_KEYS=key_b)
    reply = without_a.ask(ALICE, AURORA)
    assert isinstance(reply, Notice) and reply.kind is NoticeKind.NOT_LINKED
    rotated = make_bot(QBOT_TOKEN_KEYS=f"{key_b},{key_a}")
    assert cites_aurora(rotated.ask(ALICE, AURORA))
    # What the rotated bot wrote (the rotated refresh token, the credentials) is sealed under B alone now.
    assert cites_aurora(without_a.ask(ALICE, "Tell me about Project Aurora"))


def test_redis_holds_no_plaintext_secret(bot: RunningBot, redis_url: str) -> None:
    link(bot, ALICE, "alice")
    assert isinstance(bot.ask(ALICE, AURORA), Answer)
    secrets = bot.sandbox.idp.live_refresh_tokens("alice")
    creds = [c for c in bot.sandbox.credentials.all() if c.email == "alice@example.com"]
    assert secrets and creds
    needles = [s.encode() for s in secrets]
    needles += [c.secret_access_key.encode() for c in creds] + [str(c.session_token).encode() for c in creds]
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter():
        kind = client.type(key)
        values: list[bytes] = [key]
        if kind == b"string":
            values.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                values += [field, value]
        elif kind == b"set":
            values += list(client.smembers(key))
        for value in values:
            assert not any(n in value for n in needles), key


def test_expired_q_conversation_is_restarted_transparently(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    first = bot.ask(ALICE, AURORA, thread="t1")
    bot.sandbox.q.faults.conversation_ttl = 0  # Q forgets every conversation not used this instant
    again = bot.ask(ALICE, AURORA, thread="t1")
    assert isinstance(first, Answer) and isinstance(again, Answer)
    assert again.conversation_id != first.conversation_id and cites_aurora(again)


def test_qnew_starts_a_new_conversation_and_qunlink_forgets_everything(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    first = bot.ask(ALICE, AURORA, thread="t1")
    assert isinstance(bot.ask(ALICE, "qnew", thread="t1"), Notice)
    second = bot.ask(ALICE, AURORA, thread="t1")
    assert isinstance(first, Answer) and isinstance(second, Answer)
    assert second.conversation_id != first.conversation_id
    tokens_before = bot.sandbox.idp.live_refresh_tokens("alice")
    bye = bot.ask(ALICE, "qunlink")
    assert isinstance(bye, Notice) and "alice@example.com" in bye.text
    assert not bot.sandbox.idp.live_refresh_tokens("alice") and tokens_before
    assert isinstance(bot.ask(ALICE, AURORA), Notice)


def test_help_for_empty_and_unknown_commands(bot: RunningBot) -> None:
    for text in ("", "   ", "/qwhat", "help"):
        reply = bot.ask(ALICE, text)
        assert isinstance(reply, Notice) and "qlink" in reply.text


def test_feedback_only_from_the_asker(bot: RunningBot) -> None:
    from bot.model import Usefulness

    link(bot, ALICE, "alice")
    link(bot, BOB, "bob")
    answer = bot.ask(ALICE, AURORA)
    assert isinstance(answer, Answer)
    thanks = bot.run(bot.core.feedback(ALICE, answer.conversation_id, answer.message_id, Usefulness.USEFUL))
    assert thanks.kind is NoticeKind.INFO and thanks.private
    refused = bot.run(bot.core.feedback(
        BOB, answer.conversation_id, answer.message_id, Usefulness.NOT_USEFUL, reason="NOT_COMPLETE", comment="meh"
    ))
    assert refused.kind is NoticeKind.REFUSED and refused.private and "Only the person who asked" in refused.text
    assert len(bot.sandbox.q.stats.feedback) == 1

    # 👎 says why: Q's reason and the asker's comment (made printable) reach PutFeedback
    why = bot.run(bot.core.feedback(
        ALICE, answer.conversation_id, answer.message_id, Usefulness.NOT_USEFUL,
        reason="NOT_COMPLETE", comment="No launch\ndate.",
    ))
    assert why.kind is NoticeKind.INFO
    record = bot.sandbox.q.stats.feedback[-1]
    assert (record.email, record.rating, record.reason, record.comment) == (
        "alice@example.com", "NOT_USEFUL", "NOT_COMPLETE", "No launch date."
    )
    # a reason that is not Q's, one that does not fit, or too long a comment: refused, nothing sent
    for reason, comment, said in (("MEH", None, "pick one"), ("HELPFUL", None, "pick one"),
                                  ("OTHER", "x" * 1001, "too long")):
        bad = bot.run(bot.core.feedback(
            ALICE, answer.conversation_id, answer.message_id, Usefulness.NOT_USEFUL, reason=reason, comment=comment
        ))
        assert bad.kind is NoticeKind.REFUSED and bad.private and said in bad.text, (reason, bad.text)
    assert len(bot.sandbox.q.stats.feedback) == 2

    registry = bot.graph.metrics.registry
    def rated(usefulness: str, reason: str) -> float | None:
        labels = {"platform": "test", "usefulness": usefulness, "reason": reason}
        return registry.get_sample_value("qbot_feedback_total", labels)

    assert rated("USEFUL", "none") == 1 and rated("NOT_USEFUL", "NOT_COMPLETE") == 1
    assert rated("NOT_USEFUL", "none") is None and rated("NOT_USEFUL", "OTHER") is None



def test_health_ready_and_metrics(bot: RunningBot) -> None:
    assert httpx.get(bot.url + "/healthz").json()["status"] == "ok"
    assert httpx.get(bot.url + "/readyz").status_code == 200
    link(bot, ALICE, "alice")
    bot.ask(ALICE, AURORA)
    metrics = httpx.get(bot.url + "/metrics").text
    for name in ("qbot_messages_total", "qbot_answer_latency_seconds", "qbot_sts_calls_total",
                 "qbot_idp_refreshes_total", "qbot_chatsync_errors"):
        assert name in metrics
    registry = bot.graph.metrics.registry
    assert registry.get_sample_value("qbot_messages_total", {"platform": "test", "outcome": "answered"}) == 1
    assert registry.get_sample_value("qbot_messages_total", {"platform": "test", "outcome": "link"}) == 1


def test_concurrent_messages_in_one_thread_form_one_conversation(bot: RunningBot) -> None:
    from bot.model import IncomingMessage

    link(bot, ALICE, "alice")

    async def together() -> list[Any]:
        return await asyncio.gather(
            *(bot.core.handle(IncomingMessage(ALICE, AURORA, "c1", "same-thread", f"q-{n}")) for n in range(5))
        )

    replies = bot.servers.run(together())
    assert all(isinstance(r, Answer) for r in replies), replies
    assert len({r.conversation_id for r in replies}) == 1


def test_a_redelivered_message_is_one_q_turn(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    first = bot.ask(ALICE, AURORA, message_id="slack-event-1")
    again = bot.ask(ALICE, AURORA, message_id="slack-event-1")
    assert isinstance(first, Answer) and isinstance(again, Answer)
    assert (again.conversation_id, again.message_id) == (first.conversation_id, first.message_id)
    follow_up = bot.ask(ALICE, "When does it launch?", message_id="slack-event-2")
    assert isinstance(follow_up, Answer) and follow_up.conversation_id == first.conversation_id


def test_a_login_forwarded_to_another_browser_is_refused(bot: RunningBot) -> None:
    """Mallory opens her own qlink, then sends the IdP sign-in page to alice: alice's login must not land."""
    from tests.signin import sign_in_at_idp

    mallory = ChatIdentity("test", "T1", "U-MALLORY")
    notice = bot.ask(mallory, "qlink", profile_email="mallory@example.com")
    assert isinstance(notice, Notice) and notice.url
    with httpx.Client(follow_redirects=False) as mallorys_browser:
        idp_url = mallorys_browser.get(notice.url).headers["location"]
    with httpx.Client(follow_redirects=False) as alices_browser:
        redirect = sign_in_at_idp(alices_browser, idp_url, "alice")
        page = alices_browser.get(redirect.headers["location"])
    assert page.status_code == 400 and "same browser" in page.text
    assert bot.run(bot.core.accounts.vault.load(mallory)) is None
    assert bot.sandbox.idp.live_refresh_tokens("alice") == []  # the code was never exchanged


def test_two_bot_processes_answer_one_threads_messages_in_turn(make_bot: Any) -> None:
    from cryptography.fernet import Fernet

    from bot.model import IncomingMessage

    keys = Fernet.generate_key().decode()
    first, second = make_bot(QBOT_TOKEN_KEYS=keys), make_bot(QBOT_TOKEN_KEYS=keys)  # two replicas, one Redis
    link(first, ALICE, "alice")

    async def together() -> list[Any]:
        return await asyncio.gather(*(
            (first if n % 2 else second).core.handle(IncomingMessage(ALICE, AURORA, "c1", "same", f"r-{n}"))
            for n in range(6)
        ))

    replies = first.servers.run(together())
    assert all(isinstance(r, Answer) for r in replies), replies
    assert len({r.conversation_id for r in replies}) == 1
