"""The fault switches: throttling, internal errors, a first-call subscription error, latency."""

from __future__ import annotations

import threading
import time

from tests.sandbox.qbusiness.endpoint import (
    APP_ID,
    AURORA,
    QEndpoint,
    ask,
    refusal,
)


def test_throttling_and_internal_errors(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    qb.q.faults.throttle_next = 2
    qb.q.faults.internal_error_next = 1
    for expected in ("ThrottlingException", "ThrottlingException", "InternalServerException"):
        error = refusal(alice.chat_sync, applicationId=APP_ID, userMessage=AURORA)
        assert error["Error"]["Code"] == expected
        assert error["ResponseMetadata"]["HTTPStatusCode"] == (429 if expected == "ThrottlingException" else 500)
    assert ask(alice, AURORA)["systemMessage"]
    assert qb.q.stats.chat_calls["alice@example.com"] == 4


def test_subscription_error_on_first_call(qb: QEndpoint) -> None:
    qb.q.faults.subscription_error_first_call = True
    alice = qb.user("alice@example.com")
    error = refusal(alice.chat_sync, applicationId=APP_ID, userMessage=AURORA)
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert "does not have a subscription" in error["Error"]["Message"]
    assert ask(alice, AURORA)["sourceAttributions"]
    assert refusal(qb.user("bob@example.com").chat_sync, applicationId=APP_ID, userMessage=AURORA)
    qb.q.faults.reset()
    assert qb.q.faults.subscription_error_first_call is False
    assert ask(qb.user("carol@example.com"), AURORA)["systemMessage"]


def test_delay_does_not_block_other_requests(qb: QEndpoint) -> None:
    qb.q.faults.delay_seconds = 1.5
    clients = [qb.user("alice@example.com"), qb.user("bob@example.com")]
    threads = [threading.Thread(target=ask, args=(client, AURORA)) for client in clients]
    for thread in threads:
        thread.start()
    for _ in range(300):  # until both ChatSyncs are being answered
        if qb.q.stats.in_flight == 2:
            break
        time.sleep(0.01)
    qb.admin().get_application(applicationId=APP_ID)
    assert qb.q.stats.in_flight == 2, "a slow ChatSync must not hold up other requests"
    for thread in threads:
        thread.join(5)
    assert qb.q.stats.max_in_flight == 2
    assert qb.q.stats.in_flight == 0
