"""QBusinessClient against the Q Business stand-in over real HTTP, signed with real (sandbox) user credentials."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.errors import QRefused, QThrottled, QUnavailable
from bot.metrics import Metrics
from bot.model import AwsCredentials, ChatFile, ConversationRef, FailedAttachment, FeedbackReason, Usefulness
from bot.qbusiness import (
    ACCESS_DENIED,
    NO_ANSWER,
    SCOPE_REFUSED,
    ConversationGone,
    CredentialsRejected,
    QBusinessClient,
    answer_of,
)
from sandbox.credentials import ACCOUNT_ID, ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY
from sandbox.qbusiness.corpus import Acl, Document
from sandbox.world import APP_ID, INDEX_ID, REGION, Sandbox
from tests.conftest import until

AURORA = "When does Project Aurora launch?"

MakeQ = Callable[..., QBusinessClient]


def credentials_of(sandbox: Sandbox, email: str) -> AwsCredentials:
    """What the broker would hand over after AssumeRoleWithWebIdentity: tagged, one-hour session credentials."""
    name = email.split("@")[0]
    issued = sandbox.credentials.mint_session(
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/qbot-sandbox-user/{name}", timedelta(hours=1), {"Email": email}
    )
    assert issued.session_token is not None and issued.expiration is not None
    return AwsCredentials(issued.access_key_id, issued.secret_access_key, issued.session_token, issued.expiration)


def errors(metrics: Metrics, code: str) -> float:
    return metrics.registry.get_sample_value("qbot_chatsync_errors_total", {"code": code}) or 0.0


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def make_q(sandbox: Sandbox, metrics: Metrics) -> AsyncIterator[MakeQ]:
    made: list[QBusinessClient] = []

    def make(**overrides: Any) -> QBusinessClient:
        options: dict[str, Any] = {
            "app_id": APP_ID,
            "region": REGION,
            "endpoint_url": sandbox.env()["QBOT_Q_ENDPOINT_URL"],
            "max_concurrency": 8,
            "metrics": metrics,
            "backoff_seconds": 0.01,
            **overrides,
        }
        made.append(QBusinessClient(**options))
        return made[-1]

    yield make
    for q in made:
        await q.aclose()


@pytest.fixture
def alice(sandbox: Sandbox) -> AwsCredentials:
    return credentials_of(sandbox, "alice@example.com")


@pytest.fixture
def bob(sandbox: Sandbox) -> AwsCredentials:
    return credentials_of(sandbox, "bob@example.com")


async def ask(q: QBusinessClient, who: AwsCredentials, text: str = AURORA, token: str = "m-1",
              conversation: ConversationRef | None = None, files: tuple[ChatFile, ...] = ()) -> Any:
    return await q.chat(who, text=text, conversation=conversation, files=files, client_token=token)


async def test_answer_cites_what_the_user_may_read(make_q: MakeQ, alice: AwsCredentials, bob: AwsCredentials) -> None:
    q = make_q()
    answer = await ask(q, alice)
    assert answer.text and len(answer.conversation_id) == 36 and len(answer.message_id) == 36
    assert any("Aurora" in s.title for s in answer.sources)
    numbers = [s.number for s in answer.sources]
    assert numbers == sorted(set(numbers)) and numbers[0] >= 1
    assert all(s.url and s.snippet for s in answer.sources)

    theirs = await ask(q, bob)
    assert not any("Aurora" in s.title or "aurora" in (s.url or "") for s in theirs.sources)
    assert "Aurora launches" not in theirs.text


async def test_continuing_a_conversation(sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials) -> None:
    q = make_q()
    first = await ask(q, alice)
    second = await ask(q, alice, "And when is it generally available?", "m-2",
                       ConversationRef(first.conversation_id, first.message_id))
    assert second.conversation_id == first.conversation_id
    assert second.message_id != first.message_id
    (conversation,) = sandbox.q.conversations.of(APP_ID, "alice@example.com")
    assert len(conversation.messages) == 4


async def test_expired_or_foreign_conversation_is_gone(
    sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials, bob: AwsCredentials
) -> None:
    q = make_q()
    first = await ask(q, alice)
    ref = ConversationRef(first.conversation_id, first.message_id)
    with pytest.raises(ConversationGone):
        await ask(q, bob, "What is in it?", "b-1", ref)  # bob cannot continue alice's conversation

    sandbox.q.faults.conversation_ttl = 0.0
    with pytest.raises(ConversationGone):
        await ask(q, alice, "And then?", "m-2", ref)
    # The caller's recovery: the same message, as a new conversation, still gets an answer.
    sandbox.q.faults.conversation_ttl = 3600.0
    assert (await ask(q, alice, "And then?", "m-2")).conversation_id != first.conversation_id


async def test_throttling_is_retried_until_it_passes(
    sandbox: Sandbox, make_q: MakeQ, metrics: Metrics, alice: AwsCredentials
) -> None:
    sandbox.q.faults.throttle_next = 2
    answer = await ask(make_q(), alice)
    assert answer.sources
    assert sandbox.q.stats.chat_calls["alice@example.com"] == 3
    assert errors(metrics, "ThrottlingException") == 2


async def test_throttling_exhausted(sandbox: Sandbox, make_q: MakeQ, metrics: Metrics, alice: AwsCredentials) -> None:
    sandbox.q.faults.throttle_next = 10
    with pytest.raises(QThrottled) as caught:
        await ask(make_q(max_attempts=3), alice)
    assert len(caught.value.request_id) == 36
    # Exactly our attempts reached Q: botocore's own retries are off.
    assert sandbox.q.stats.chat_calls["alice@example.com"] == 3
    assert errors(metrics, "ThrottlingException") == 3


async def test_internal_errors_become_unavailable_with_request_id(
    sandbox: Sandbox, make_q: MakeQ, metrics: Metrics, alice: AwsCredentials
) -> None:
    sandbox.q.faults.internal_error_next = 10
    with pytest.raises(QUnavailable) as caught:
        await ask(make_q(max_attempts=2), alice)
    assert type(caught.value) is QUnavailable
    assert caught.value.request_id and caught.value.request_id in caught.value.detail
    assert errors(metrics, "InternalServerException") == 2

    sandbox.q.faults.internal_error_next = 1  # one failure is absorbed by a retry
    assert (await ask(make_q(), alice, token="m-2")).sources


async def test_unreachable_q_becomes_unavailable(
    make_q: MakeQ, metrics: Metrics, alice: AwsCredentials, refused_url: str
) -> None:
    q = make_q(endpoint_url=refused_url, max_attempts=2)
    with pytest.raises(QUnavailable):
        await ask(q, alice)
    assert errors(metrics, "ConnectionError") == 2


async def test_first_call_subscription_error_is_retried_transparently(
    sandbox: Sandbox, make_q: MakeQ, metrics: Metrics, alice: AwsCredentials
) -> None:
    sandbox.q.faults.subscription_error_first_call = True
    answer = await ask(make_q(), alice)
    assert answer.sources
    assert sandbox.q.stats.chat_calls["alice@example.com"] == 2
    assert errors(metrics, "AccessDeniedException") == 1


async def test_refusals_say_what_to_do(sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials) -> None:
    q = make_q(max_attempts=2)
    admin = AwsCredentials(ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, "", alice.expiration)
    with pytest.raises(QRefused) as refused:  # static keys carry no user identity: Q refuses to chat
        await ask(q, admin)
    assert refused.value.user_message == ACCESS_DENIED
    unknown = AwsCredentials("ASIAUNKNOWNKEY000000", "x" * 40, "token", alice.expiration)
    with pytest.raises(CredentialsRejected):
        await ask(q, unknown)
    with pytest.raises(QRefused) as caught:
        await ask(q, alice, text="", token="empty")
    assert "userMessage or attachments" in caught.value.user_message


async def test_same_client_token_is_one_turn(sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials) -> None:
    q = make_q()
    first = await ask(q, alice, token="slack:T1:C1:1712345678.000100")
    again = await ask(q, alice, token="slack:T1:C1:1712345678.000100")
    assert again == first
    (conversation,) = sandbox.q.conversations.of(APP_ID, "alice@example.com")
    assert len(conversation.messages) == 2


async def test_long_client_tokens_stay_stable(sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials) -> None:
    q = make_q()
    token = "teams:" + "x" * 200
    assert await ask(q, alice, token=token) == await ask(q, alice, token=token)


async def test_attachments_and_failed_attachments(make_q: MakeQ, alice: AwsCredentials) -> None:
    files = (
        ChatFile("notes.txt", b"The Zephyr project codename is BLUE HERON.", "text/plain"),
        ChatFile("diagram.png", b"\x89PNG\r\n\x1a\n", "image/png"),
    )
    answer = await ask(make_q(), alice, "What is the Zephyr codename?", files=files)
    assert "BLUE HERON" in answer.text
    assert [(s.number, s.title, s.url) for s in answer.sources] == [(1, "notes.txt", None)]
    (failed,) = answer.failed_attachments
    assert failed.name == "diagram.png" and failed.error  # Q's reason, for the user


async def test_feedback_is_recorded(
    sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials, bob: AwsCredentials
) -> None:
    q = make_q()
    answer = await ask(q, alice)
    await q.feedback(alice, answer.conversation_id, answer.message_id, Usefulness.NOT_USEFUL)
    (record,) = sandbox.q.stats.feedback
    assert (record.email, record.conversation_id, record.message_id) == (
        "alice@example.com", answer.conversation_id, answer.message_id
    )
    assert record.usefulness is not None and record.usefulness["usefulness"] == "NOT_USEFUL"
    assert record.usefulness["submittedAt"]
    with pytest.raises(ConversationGone):
        await q.feedback(bob, answer.conversation_id, answer.message_id, Usefulness.USEFUL)


async def test_feedback_carries_the_reason_and_comment(
    sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials
) -> None:
    q = make_q()
    answer = await ask(q, alice)
    await q.feedback(
        alice, answer.conversation_id, answer.message_id, Usefulness.NOT_USEFUL,
        reason=FeedbackReason.NOT_COMPLETE, comment="The launch date is missing.",
    )
    (record,) = sandbox.q.stats.feedback
    assert (record.rating, record.reason, record.comment) == (
        "NOT_USEFUL", "NOT_COMPLETE", "The launch date is missing."
    )
    assert record.usefulness is not None and record.usefulness["submittedAt"]


async def test_delete_conversation(sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials) -> None:
    q = make_q()
    answer = await ask(q, alice)
    await q.delete_conversation(alice, answer.conversation_id)
    await q.delete_conversation(alice, answer.conversation_id)  # already gone: fine
    assert sandbox.q.conversations.of(APP_ID, "alice@example.com") == []


async def test_one_client_signs_each_concurrent_call_as_its_own_user(sandbox: Sandbox, make_q: MakeQ) -> None:
    """50 users at once through one client: Q (which checks every SigV4 signature and reads the user from the
    signing session's Email tag) records each turn as the user who asked, and answers within that user's ACLs."""
    sandbox.q.faults.delay_seconds = 0.5  # so that every call is in flight at once
    q = make_q(max_concurrency=64)
    emails = ["alice@example.com", "bob@example.com", *(f"user{n:03d}@example.com" for n in range(1, 49))]
    people = {email: credentials_of(sandbox, email) for email in emails}
    answers = await asyncio.gather(*(
        ask(q, who, token=f"iso-{email}") for email, who in people.items()
    ))
    assert sandbox.q.stats.max_in_flight == 50
    for email, answer in zip(people, answers, strict=True):
        assert sandbox.q.stats.chat_calls[email] == 1
        (conversation,) = sandbox.q.conversations.of(APP_ID, email)  # the turn is this user's, and only theirs
        assert conversation.conversation_id == answer.conversation_id
    by_email = dict(zip(people, answers, strict=True))
    assert any("Aurora" in s.title for s in by_email["alice@example.com"].sources)
    assert not any("Aurora" in s.title for s in by_email["bob@example.com"].sources)


async def test_a_client_keeps_working_after_a_garbage_collection(make_q: MakeQ, alice: AwsCredentials) -> None:
    """What the signer relies on lives as long as the client (botocore's hooks hold weak references)."""
    q = make_q()
    gc.collect()
    assert (await ask(q, alice)).sources


async def test_concurrency_is_bounded_off_the_event_loop(
    sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials
) -> None:
    sandbox.q.faults.delay_seconds = 0.25
    q = make_q(max_concurrency=3)  # the connection pool could open 8: only the semaphore holds them to 3
    in_flight_seen: set[int] = set()  # what Q was answering, each time the loop got to run another task
    threads = {threading.active_count()}

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)
            in_flight_seen.add(sandbox.q.stats.in_flight)
            threads.add(threading.active_count())

    beat = asyncio.create_task(ticker())
    answers = await asyncio.gather(*(ask(q, alice, token=f"c-{n}") for n in range(8)))
    beat.cancel()
    assert len({a.conversation_id for a in answers}) == 8
    assert sandbox.q.stats.max_in_flight == 3  # bounded, and not serialized
    assert 3 in in_flight_seen  # the loop kept running while Q answered three calls
    assert len(threads) == 1  # and no call took a thread of its own


async def test_a_cancelled_chat_keeps_its_slot_until_its_call_returns(
    sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials
) -> None:
    sandbox.q.faults.delay_seconds = 0.3
    q = make_q(max_concurrency=1)
    abandoned = asyncio.create_task(ask(q, alice, token="c-1"))
    await until(lambda: sandbox.q.stats.in_flight == 1)  # the call is at Q
    abandoned.cancel()
    await ask(q, alice, token="c-2")
    assert abandoned.cancelled()
    assert sandbox.q.stats.max_in_flight == 1


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "mailto:helpdesk@example.com",
        "https://svc:hunter2@intranet.example.com/zephyr",
        "/wiki/zephyr",
    ],
)
async def test_a_source_link_that_is_not_plain_http_never_leaves_the_core(
    sandbox: Sandbox, make_q: MakeQ, alice: AwsCredentials, url: str
) -> None:
    """Q may cite a document with any URL; the Answer keeps the citation and drops the link for every adapter."""
    body = "The Zephyr badge printer stands on the third floor next to the east elevators."
    sandbox.q.control.index(APP_ID, INDEX_ID).documents.append(
        Document("zephyr-printer", "Zephyr badge printer", body, Acl(public=True), url)
    )
    answer = await ask(make_q(), alice, "Where is the Zephyr badge printer?")
    (zephyr,) = [s for s in answer.sources if s.title == "Zephyr badge printer"]
    assert zephyr.url is None and zephyr.snippet
    assert url not in repr(answer)


def test_sources_are_numbered_once_in_order() -> None:
    response: Any = {
        "conversationId": "c" * 36,
        "systemMessage": "See [2] and [1].",
        "systemMessageId": "m" * 36,
        "sourceAttributions": [
            {"citationNumber": 2, "title": "Two", "url": "https://x/2", "snippet": "second"},
            {"citationNumber": 1, "title": "One", "url": "https://x/1", "snippet": "first"},
            {"citationNumber": 2, "title": "Two", "url": "https://x/2", "snippet": "second, again"},
            {"title": "Unnumbered", "url": ""},
        ],
        "failedAttachments": [{"name": "a.bin", "status": "FAILED", "error": {"errorMessage": "too big"}}],
    }
    answer = answer_of(response)
    assert [(s.number, s.title, s.url, s.snippet) for s in answer.sources] == [
        (1, "One", "https://x/1", "first"),
        (2, "Two", "https://x/2", "second"),
        (3, "Unnumbered", None, ""),
    ]
    assert answer.failed_attachments == (FailedAttachment("a.bin", "too big"),)
    silent: Any = {**response, "systemMessage": "", "sourceAttributions": []}
    assert answer_of(silent).text == NO_ANSWER  # never an empty reply


# ---- what narrows a turn: a channel's attribute filter and chat mode ------------------------------------------

DIRECTOR = "What requires director approval?"
PRICING = "https://intranet.example.com/strategy/pricing-2026"  # the one confluence document that answers it


def from_source(data_source: str) -> dict[str, Any]:
    return {"equalsTo": {"name": "_data_source_id", "value": {"stringValue": data_source}}}


async def test_a_filter_reaches_q_and_only_matching_documents_are_cited(make_q: MakeQ, alice: AwsCredentials) -> None:
    q = make_q()
    everywhere = await ask(q, alice, DIRECTOR, "m-1")
    assert PRICING in {s.url for s in everywhere.sources} and len(everywhere.sources) == 3
    limited = await q.chat(alice, text=DIRECTOR, conversation=None, files=(), client_token="m-2",
                           attribute_filter=from_source("confluence"), chat_mode="RETRIEVAL_MODE")
    assert [s.url for s in limited.sources] == [PRICING]
    others = await q.chat(alice, text=DIRECTOR, conversation=None, files=(), client_token="m-3",
                          attribute_filter={"notFilter": from_source("confluence")})
    assert others.sources and PRICING not in {s.url for s in others.sources}


async def test_settings_q_refuses_are_the_channels_fault_not_the_users(
    sandbox: Sandbox, make_q: MakeQ, metrics: Metrics, alice: AwsCredentials
) -> None:
    q = make_q()

    async def refused(token: str, **scope: Any) -> QRefused:
        with pytest.raises(QRefused) as caught:
            await q.chat(alice, text=DIRECTOR, conversation=None, files=(), client_token=token, **scope)
        return caught.value

    # botocore sends it (the shapes fit); Q refuses it (containsAny takes a list), once, without retries
    wrong_operand = await refused("m-1", attribute_filter={
        "containsAny": {"name": "_data_source_id", "value": {"stringValue": "confluence"}}})
    assert wrong_operand.user_message == SCOPE_REFUSED and "containsAny" in wrong_operand.detail
    assert sandbox.q.stats.chat_calls["alice@example.com"] == 1
    assert errors(metrics, "ValidationException") == 1
    # botocore validates enums only on the server side: Q refuses the mode
    unknown_mode = await refused("m-2", chat_mode="EXPERT_MODE")
    assert unknown_mode.user_message == SCOPE_REFUSED and "EXPERT_MODE" in unknown_mode.detail
    assert errors(metrics, "ValidationException") == 2
    # botocore refuses an unknown member before anything is sent
    misspelt = await refused("m-3", attribute_filter={"equalTo": from_source("confluence")["equalsTo"]})
    assert misspelt.user_message == SCOPE_REFUSED and "equalTo" in misspelt.detail
    assert (errors(metrics, "ParamValidationError"), errors(metrics, "ValidationException")) == (1, 2)
    assert sandbox.q.conversations.of(APP_ID, "alice@example.com") == []
    # a refusal that is about the message stays about the message, settings or not
    with pytest.raises(QRefused) as empty:
        await q.chat(alice, text="", conversation=None, files=(), client_token="m-4",
                     attribute_filter=from_source("confluence"))
    assert "userMessage or attachments" in empty.value.user_message


async def test_creator_mode_answers_without_sources(make_q: MakeQ, alice: AwsCredentials) -> None:
    q = make_q()
    creator = await q.chat(alice, text=AURORA, conversation=None, files=(), client_token="m-1",
                           chat_mode="CREATOR_MODE")
    assert creator.sources == () and creator.text and creator.text != NO_ANSWER
    assert "Aurora launches" not in creator.text
    retrieval = await q.chat(alice, text=AURORA, conversation=None, files=(), client_token="m-2",
                             chat_mode="RETRIEVAL_MODE")
    assert any("Aurora" in s.title for s in retrieval.sources)


async def test_a_chat_q_answers_too_slowly_is_asked_once_more_and_is_one_turn(
    sandbox: Sandbox, make_q: MakeQ, metrics: Metrics, alice: AwsCredentials
) -> None:
    """Q finishes an answer after the client gave up waiting: the same clientToken, asked again, gets that turn
    (one answer in the conversation), not "not answering" while Q has the answer."""
    q = make_q(read_timeout_seconds=0.3)
    sandbox.q.faults.delay_next_seconds = 0.6
    answer = await ask(q, alice)
    assert "Aurora" in answer.text
    assert sandbox.q.stats.chat_calls["alice@example.com"] == 2 and errors(metrics, "ReadTimeout") == 1
    [conversation] = sandbox.q.conversations.of(APP_ID, "alice@example.com")
    assert [m.type for m in conversation.messages] == ["USER", "SYSTEM"]


async def test_a_chat_q_never_answers_in_time_is_unavailable_after_one_more_try(
    sandbox: Sandbox, make_q: MakeQ, metrics: Metrics, alice: AwsCredentials
) -> None:
    q = make_q(read_timeout_seconds=0.2)
    sandbox.q.faults.delay_seconds = 0.5
    with pytest.raises(QUnavailable) as raised:
        await ask(q, alice)
    assert raised.value.user_message.startswith("Amazon Q is not answering right now")
    assert sandbox.q.stats.chat_calls["alice@example.com"] == 2 and errors(metrics, "ReadTimeout") == 2
