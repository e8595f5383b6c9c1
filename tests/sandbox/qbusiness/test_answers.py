"""Answers from what the asker may read: user and group ACLs, PutGroup, follow-up questions."""

from __future__ import annotations

from datetime import datetime

import pytest

from sandbox.qbusiness.retrieval import NO_ANSWER
from tests.sandbox.qbusiness.endpoint import (
    APP_ID,
    AURORA,
    INDEX_ID,
    ROADMAP_URL,
    QEndpoint,
    ask,
    cited_urls,
)


def test_alice_sees_the_roadmap_bob_does_not(qb: QEndpoint) -> None:
    alice = ask(qb.user("alice@example.com"), AURORA)
    assert ROADMAP_URL in cited_urls(alice)
    assert "Project Aurora" in alice["systemMessage"]
    assert len(alice["conversationId"]) == 36
    bob = ask(qb.user("bob@example.com"), AURORA)
    assert ROADMAP_URL not in cited_urls(bob)
    assert "Aurora" not in bob["systemMessage"]
    assert bob["systemMessage"] == NO_ANSWER
    assert bob["sourceAttributions"] == []
    partial = ask(qb.user("bob@example.com"), "Does the Aurora beta use customer data?")
    assert partial["systemMessage"] == NO_ANSWER, "a public document sharing only generic words is no answer"


def test_segments_point_into_the_answer(qb: QEndpoint) -> None:
    answer = ask(qb.user("alice@example.com"), "How many PTO days do I get?")
    text = answer["systemMessage"]
    assert answer["sourceAttributions"]
    for source in answer["sourceAttributions"]:
        assert source["title"] and source["url"].startswith("https://intranet.example.com/")
        assert isinstance(source["updatedAt"], datetime)
        for segment in source["textMessageSegments"]:
            quoted = text[segment["beginOffset"] : segment["endOffset"]]
            assert quoted == segment["snippetExcerpt"]["text"]
            assert text[segment["endOffset"] :].startswith(f" [{source['citationNumber']}]")
    assert "25 vacation days" in text


@pytest.mark.parametrize(
    ("question", "url", "allowed", "denied"),
    [
        (
            "What is my commission rate?",
            "https://intranet.example.com/sales/commission-plans/bob-brown-2026",
            "bob@example.com",
            "alice@example.com",
        ),
        (
            "What are the salary bands for software engineers?",
            "https://intranet.example.com/hr/salary-bands-2026",
            "carol@example.com",
            "bob@example.com",
        ),
        (
            "Can I deploy on a Friday?",
            "https://intranet.example.com/engineering/deployments",
            "dave@example.com",
            "carol@example.com",
        ),
    ],
)
def test_user_and_group_acls(qb: QEndpoint, question: str, url: str, allowed: str, denied: str) -> None:
    assert url in cited_urls(ask(qb.user(allowed), question))
    assert url not in cited_urls(ask(qb.user(denied), question))


def test_put_group_changes_what_a_user_sees(qb: QEndpoint) -> None:
    admin, dave, alice = qb.admin(), qb.user("dave@example.com"), qb.user("alice@example.com")
    assert ROADMAP_URL not in cited_urls(ask(dave, AURORA))
    admin.put_group(
        applicationId=APP_ID,
        indexId=INDEX_ID,
        groupName="core-team",
        type="INDEX",
        groupMembers={"memberUsers": [{"userId": "dave@example.com", "type": "INDEX"}]},
    )
    assert ROADMAP_URL in cited_urls(ask(dave, AURORA))
    assert ROADMAP_URL not in cited_urls(ask(alice, AURORA)), "PutGroup replaces the membership"
    admin.put_group(
        applicationId=APP_ID,
        indexId=INDEX_ID,
        groupName="core-team",
        type="INDEX",
        groupMembers={"memberGroups": [{"groupName": "engineering"}]},
    )
    assert ROADMAP_URL in cited_urls(ask(alice, AURORA)), "members of a member group are members"
    assert qb.q.stats.put_group_calls == 2


def test_follow_up_uses_the_previous_question(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    first = ask(alice, AURORA)
    follow = ask(
        alice, "When does it launch?", conversationId=first["conversationId"], parentMessageId=first["systemMessageId"]
    )
    assert ROADMAP_URL in cited_urls(follow)
    assert follow["conversationId"] == first["conversationId"]


def test_a_follow_up_on_a_new_topic_is_answered_on_its_own(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    first = alice.chat_sync(applicationId=APP_ID, userMessage="What is Project Aurora?")
    second = alice.chat_sync(
        applicationId=APP_ID, userMessage="How many vacation days do I get?",
        conversationId=first["conversationId"], parentMessageId=first["systemMessageId"],
    )
    titles = [source["title"] for source in second["sourceAttributions"]]
    assert titles and not any("Aurora" in title for title in titles)
    assert "25 vacation days" in second["systemMessage"]
    third = alice.chat_sync(
        applicationId=APP_ID, userMessage="Do they expire?",
        conversationId=first["conversationId"], parentMessageId=second["systemMessageId"],
    )
    assert third["sourceAttributions"]  # "it" refers back to the conversation's last question
