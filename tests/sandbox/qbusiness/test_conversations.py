"""Conversations: owned by their caller, threaded, expiring, idempotent by clientToken; attachments, feedback."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.sandbox.qbusiness.endpoint import (
    APP_ID,
    AURORA,
    QEndpoint,
    ask,
    refusal,
)


def test_conversations_belong_to_their_caller(qb: QEndpoint) -> None:
    alice, bob = qb.user("alice@example.com"), qb.user("bob@example.com")
    first = ask(alice, AURORA)
    cid = first["conversationId"]
    stolen = refusal(
        bob.chat_sync,
        applicationId=APP_ID,
        userMessage=AURORA,
        conversationId=cid,
        parentMessageId=first["systemMessageId"],
    )
    assert stolen["Error"]["Code"] == "ResourceNotFoundException"
    for call in (bob.list_messages, bob.delete_conversation):
        assert refusal(call, applicationId=APP_ID, conversationId=cid)["Error"]["Code"] == "ResourceNotFoundException"
    assert bob.list_conversations(applicationId=APP_ID)["conversations"] == []
    listed = alice.list_conversations(applicationId=APP_ID)["conversations"]
    assert [c["conversationId"] for c in listed] == [cid]
    messages = alice.list_messages(applicationId=APP_ID, conversationId=cid)["messages"]
    assert [m["type"] for m in messages] == ["USER", "SYSTEM"]
    alice.delete_conversation(applicationId=APP_ID, conversationId=cid)
    assert alice.list_conversations(applicationId=APP_ID)["conversations"] == []


def test_parent_message_must_be_the_latest_system_message(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    first = ask(alice, AURORA)
    cid = first["conversationId"]
    for parent in ("11111111-1111-4111-8111-111111111111", first["userMessageId"]):
        error = refusal(
            alice.chat_sync, applicationId=APP_ID, userMessage="more", conversationId=cid, parentMessageId=parent
        )
        assert error["Error"]["Code"] == "ValidationException"
    second = ask(alice, "And the pricing?", conversationId=cid, parentMessageId=first["systemMessageId"])
    stale = refusal(
        alice.chat_sync,
        applicationId=APP_ID,
        userMessage="more",
        conversationId=cid,
        parentMessageId=first["systemMessageId"],
    )
    assert stale["Error"]["Code"] == "ValidationException"
    ask(alice, "Thanks", conversationId=cid, parentMessageId=second["systemMessageId"])
    orphan = refusal(alice.chat_sync, applicationId=APP_ID, userMessage="x", parentMessageId=second["systemMessageId"])
    assert orphan["Error"]["Code"] == "ValidationException"


def test_expired_conversation(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    first = ask(alice, AURORA)
    qb.q.faults.conversation_ttl = 0  # every conversation not used this instant has expired
    error = refusal(
        alice.chat_sync,
        applicationId=APP_ID,
        userMessage="more",
        conversationId=first["conversationId"],
        parentMessageId=first["systemMessageId"],
    )
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert "Conversation not found or has expired" in error["Error"]["Message"]
    assert alice.list_conversations(applicationId=APP_ID)["conversations"] == []


def test_client_token_makes_retries_idempotent(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    first = ask(alice, AURORA, clientToken="retry-me")
    again = ask(alice, AURORA, clientToken="retry-me")
    first.pop("ResponseMetadata")
    again.pop("ResponseMetadata")
    assert again == first
    messages = alice.list_messages(applicationId=APP_ID, conversationId=first["conversationId"])["messages"]
    assert len(messages) == 2, "a retry adds no turn"
    conflict = refusal(alice.chat_sync, applicationId=APP_ID, userMessage="something else", clientToken="retry-me")
    assert conflict["Error"]["Code"] == "ConflictException"
    other_user = ask(qb.user("bob@example.com"), AURORA, clientToken="retry-me")
    assert other_user["conversationId"] != first["conversationId"], "tokens are per caller"


def test_attachments(qb: QEndpoint) -> None:
    qb.q.max_attachment_bytes = 1000
    alice = qb.user("alice@example.com")
    answer = alice.chat_sync(
        applicationId=APP_ID,
        userMessage="What is the Zephyr code word?",
        attachments=[
            {"name": "notes.txt", "data": b"The Zephyr code word for the offsite is BLUEBIRD."},
            {"name": "photo.png", "data": b"\x89PNG\r\n\x1a\n"},
            {"name": "report.docx", "data": b"Readable, but not a type the sandbox reads."},
            {"name": "huge.txt", "data": b"x" * 1001},
        ],
    )
    failed = {item["name"]: item for item in answer["failedAttachments"]}
    assert set(failed) == {"photo.png", "report.docx", "huge.txt"}
    assert all(item["status"] == "FAILED" and item["error"]["errorMessage"] for item in failed.values())
    assert "BLUEBIRD" in answer["systemMessage"]
    assert [s["title"] for s in answer["sourceAttributions"]] == ["notes.txt"]
    follow = ask(
        alice,
        "Remind me of the Zephyr code word",
        conversationId=answer["conversationId"],
        parentMessageId=answer["systemMessageId"],
    )
    assert "BLUEBIRD" in follow["systemMessage"], "attachments stay in the conversation"
    assert "BLUEBIRD" not in ask(qb.user("bob@example.com"), "What is the Zephyr code word?")["systemMessage"]


def test_feedback(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    answer = ask(alice, AURORA)
    usefulness = {"usefulness": "USEFUL", "reason": "HELPFUL", "submittedAt": datetime.now(UTC)}
    alice.put_feedback(
        applicationId=APP_ID,
        conversationId=answer["conversationId"],
        messageId=answer["systemMessageId"],
        messageUsefulness=usefulness,
    )
    [record] = qb.q.stats.feedback
    assert (record.email, record.message_id) == ("alice@example.com", answer["systemMessageId"])
    assert record.usefulness is not None and record.usefulness["usefulness"] == "USEFUL"
    on_question = refusal(
        alice.put_feedback,
        applicationId=APP_ID,
        conversationId=answer["conversationId"],
        messageId=answer["userMessageId"],
        messageUsefulness=usefulness,
    )
    assert on_question["Error"]["Code"] == "ValidationException"
    bob = qb.user("bob@example.com")
    stolen = refusal(
        bob.put_feedback,
        applicationId=APP_ID,
        conversationId=answer["conversationId"],
        messageId=answer["systemMessageId"],
        messageUsefulness=usefulness,
    )
    assert stolen["Error"]["Code"] == "ResourceNotFoundException"
    assert len(qb.q.stats.feedback) == 1


def test_feedback_fields_are_checked_against_the_model_and_recorded(qb: QEndpoint) -> None:
    """As Q would: usefulness and reason from the model's enums, a comment of at most 1000 printable characters,
    submittedAt required; a refused PutFeedback records nothing. (The client's own checks are off, so the
    stand-in sees what a careless client would send.)"""
    alice = qb.user("alice@example.com", parameter_validation=False)
    answer = ask(alice, AURORA)
    now = datetime.now(UTC)
    target = {
        "applicationId": APP_ID, "conversationId": answer["conversationId"], "messageId": answer["systemMessageId"]
    }
    bad = {
        "reason": {"usefulness": "NOT_USEFUL", "reason": "MEH", "submittedAt": now},
        "comment": {"usefulness": "NOT_USEFUL", "comment": "x" * 1001, "submittedAt": now},
        "comment line break": {"usefulness": "NOT_USEFUL", "comment": "two\nlines", "submittedAt": now},
        "usefulness": {"usefulness": "MAYBE", "submittedAt": now},
        "submittedAt": {"usefulness": "NOT_USEFUL", "reason": "OTHER"},
    }
    for what, usefulness in bad.items():
        refused = refusal(alice.put_feedback, **target, messageUsefulness=usefulness)
        assert refused["Error"]["Code"] == "ValidationException", what
        assert what.split()[0] in refused["Error"]["Message"], (what, refused["Error"]["Message"])
    assert qb.q.stats.feedback == []

    why = {"usefulness": "NOT_USEFUL", "reason": "NOT_COMPLETE", "comment": "x" * 1000, "submittedAt": now}
    alice.put_feedback(**target, messageUsefulness=why)
    [record] = qb.q.stats.feedback
    assert (record.rating, record.reason, record.comment) == ("NOT_USEFUL", "NOT_COMPLETE", "x" * 1000)
