"""The Q Business stand-in through real boto3 clients: ACLs, conversations, faults and the control plane.

Users' clients sign with web-identity session credentials carrying an Email tag (as STS would mint them);
the administrator's client signs with the sandbox's static keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.credentials import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, CredentialRegistry
from sandbox.directory import sample_directory
from sandbox.qbusiness import SandboxQBusiness
from sandbox.qbusiness.retrieval import NO_ANSWER
from sandbox.serving import Served, bind

REGION = "us-east-1"
APP_ID = "5a4db0a1-1b0e-4f43-9d5c-0e7f3b6a2c11"
INDEX_ID = "8c0e3f52-7d4a-4c1b-b0f6-2a9e5d1c7b33"
ROADMAP_URL = "https://intranet.example.com/product/aurora-roadmap-2027"
AURORA = "What is Project Aurora?"
OIDC_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/idp.example.com"


@dataclass
class QEndpoint:
    q: SandboxQBusiness
    registry: CredentialRegistry
    url: str

    def _client(self, key: str, secret: str, token: str | None, **config: Any) -> Any:
        return boto3.client(
            "qbusiness",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=Config(retries={"total_max_attempts": 1}, **config),
        )

    def user(self, email: str | None, **config: Any) -> Any:
        tags = {"Email": email} if email else {}
        name = (email or "anonymous").split("@")[0]
        arn = f"arn:aws:sts::123456789012:assumed-role/qbot-sandbox-user/{name}"
        creds = self.registry.mint_session(arn, timedelta(hours=1), tags)
        return self._client(creds.access_key_id, creds.secret_access_key, creds.session_token, **config)

    def admin(self, **config: Any) -> Any:
        return self._client(ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, None, **config)


@pytest.fixture
def qb(servers: Any) -> Iterator[QEndpoint]:
    registry = CredentialRegistry()
    q = SandboxQBusiness(registry, REGION)
    q.add_sample_application(APP_ID, INDEX_ID, sample_directory().groups())
    served = Served(q.app(), bind("127.0.0.1", 0))
    servers.run(served.start())
    yield QEndpoint(q, registry, served.url)
    servers.run(served.stop())


def _error(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response: dict[str, Any] = dict(caught.value.response)
    return response


def _urls(answer: dict[str, Any]) -> set[str]:
    return {source["url"] for source in answer["sourceAttributions"]}


def ask(client: Any, message: str, **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client.chat_sync(applicationId=APP_ID, userMessage=message, **kwargs)
    return answer


# -- answers and ACLs ------------------------------------------------------------------------------------


def test_alice_sees_the_roadmap_bob_does_not(qb: QEndpoint) -> None:
    alice = ask(qb.user("alice@example.com"), AURORA)
    assert ROADMAP_URL in _urls(alice)
    assert "Project Aurora" in alice["systemMessage"]
    assert len(alice["conversationId"]) == 36
    bob = ask(qb.user("bob@example.com"), AURORA)
    assert ROADMAP_URL not in _urls(bob)
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
    assert url in _urls(ask(qb.user(allowed), question))
    assert url not in _urls(ask(qb.user(denied), question))


def test_put_group_changes_what_a_user_sees(qb: QEndpoint) -> None:
    admin, dave, alice = qb.admin(), qb.user("dave@example.com"), qb.user("alice@example.com")
    assert ROADMAP_URL not in _urls(ask(dave, AURORA))
    admin.put_group(
        applicationId=APP_ID,
        indexId=INDEX_ID,
        groupName="core-team",
        type="INDEX",
        groupMembers={"memberUsers": [{"userId": "dave@example.com", "type": "INDEX"}]},
    )
    assert ROADMAP_URL in _urls(ask(dave, AURORA))
    assert ROADMAP_URL not in _urls(ask(alice, AURORA)), "PutGroup replaces the membership"
    admin.put_group(
        applicationId=APP_ID,
        indexId=INDEX_ID,
        groupName="core-team",
        type="INDEX",
        groupMembers={"memberGroups": [{"groupName": "engineering"}]},
    )
    assert ROADMAP_URL in _urls(ask(alice, AURORA)), "members of a member group are members"
    assert qb.q.stats.put_group_calls == 2


def test_follow_up_uses_the_previous_question(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    first = ask(alice, AURORA)
    follow = ask(
        alice, "When does it launch?", conversationId=first["conversationId"], parentMessageId=first["systemMessageId"]
    )
    assert ROADMAP_URL in _urls(follow)
    assert follow["conversationId"] == first["conversationId"]


# -- who may call what -----------------------------------------------------------------------------------


def test_admin_and_user_authorization(qb: QEndpoint) -> None:
    user = qb.user("alice@example.com")
    denied = _error(
        user.put_group,
        applicationId=APP_ID,
        indexId=INDEX_ID,
        groupName="core-team",
        type="INDEX",
        groupMembers={"memberUsers": [{"userId": "alice@example.com"}]},
    )
    assert denied["Error"]["Code"] == "AccessDeniedException"
    assert "qbusiness:PutGroup" in denied["Error"]["Message"]
    assert _error(user.list_applications)["Error"]["Code"] == "AccessDeniedException"
    assert _error(qb.admin().chat_sync, applicationId=APP_ID, userMessage="hi")["Error"]["Code"] == (
        "AccessDeniedException"
    )
    admin_invalid = _error(qb.admin(parameter_validation=False).chat_sync, applicationId="short", userMessage="hi")
    assert admin_invalid["Error"]["Code"] == "AccessDeniedException", "authorization comes before validation"
    untagged = qb.user(None)
    assert _error(untagged.chat_sync, applicationId=APP_ID, userMessage="hi")["Error"]["Code"] == (
        "AccessDeniedException"
    )
    impersonating = _error(user.chat_sync, applicationId=APP_ID, userMessage=AURORA, userId="bob@example.com")
    assert impersonating["Error"]["Code"] == "AccessDeniedException"
    assert qb.q.stats.put_group_calls == 0


def test_server_validates_what_botocore_would(qb: QEndpoint) -> None:
    loose = qb.user("alice@example.com", parameter_validation=False)
    short_id = _error(loose.chat_sync, applicationId=APP_ID[:35], userMessage="hi")
    assert short_id["Error"]["Code"] == "ValidationException"
    assert "applicationId" in short_id["Error"]["Message"]
    admin = qb.admin(parameter_validation=False)
    missing = _error(admin.put_group, applicationId=APP_ID, indexId=INDEX_ID, type="INDEX", groupMembers={})
    assert missing["Error"]["Code"] == "ValidationException"
    assert "groupName" in missing["Error"]["Message"]
    too_small = _error(loose.list_conversations, applicationId=APP_ID, maxResults=0)
    assert "greater than or equal to 1" in too_small["Error"]["Message"]
    bad_enum = _error(
        admin.put_group, applicationId=APP_ID, indexId=INDEX_ID, groupName="g", type="TEAM", groupMembers={}
    )
    assert "enum" in bad_enum["Error"]["Message"]


def test_unknown_application(qb: QEndpoint) -> None:
    other = "00000000-0000-4000-8000-000000000000"
    error = _error(qb.user("alice@example.com").chat_sync, applicationId=other, userMessage="hi")
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert _error(qb.admin().get_application, applicationId=other)["Error"]["Code"] == "ResourceNotFoundException"


# -- conversations ---------------------------------------------------------------------------------------


def test_conversations_belong_to_their_caller(qb: QEndpoint) -> None:
    alice, bob = qb.user("alice@example.com"), qb.user("bob@example.com")
    first = ask(alice, AURORA)
    cid = first["conversationId"]
    stolen = _error(
        bob.chat_sync,
        applicationId=APP_ID,
        userMessage=AURORA,
        conversationId=cid,
        parentMessageId=first["systemMessageId"],
    )
    assert stolen["Error"]["Code"] == "ResourceNotFoundException"
    for call in (bob.list_messages, bob.delete_conversation):
        assert _error(call, applicationId=APP_ID, conversationId=cid)["Error"]["Code"] == "ResourceNotFoundException"
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
        error = _error(
            alice.chat_sync, applicationId=APP_ID, userMessage="more", conversationId=cid, parentMessageId=parent
        )
        assert error["Error"]["Code"] == "ValidationException"
    second = ask(alice, "And the pricing?", conversationId=cid, parentMessageId=first["systemMessageId"])
    stale = _error(
        alice.chat_sync,
        applicationId=APP_ID,
        userMessage="more",
        conversationId=cid,
        parentMessageId=first["systemMessageId"],
    )
    assert stale["Error"]["Code"] == "ValidationException"
    ask(alice, "Thanks", conversationId=cid, parentMessageId=second["systemMessageId"])
    orphan = _error(alice.chat_sync, applicationId=APP_ID, userMessage="x", parentMessageId=second["systemMessageId"])
    assert orphan["Error"]["Code"] == "ValidationException"


def test_expired_conversation(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    qb.q.faults.conversation_ttl = 0.2
    first = ask(alice, AURORA)
    time.sleep(0.3)
    error = _error(
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
    conflict = _error(alice.chat_sync, applicationId=APP_ID, userMessage="something else", clientToken="retry-me")
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
    on_question = _error(
        alice.put_feedback,
        applicationId=APP_ID,
        conversationId=answer["conversationId"],
        messageId=answer["userMessageId"],
        messageUsefulness=usefulness,
    )
    assert on_question["Error"]["Code"] == "ValidationException"
    bob = qb.user("bob@example.com")
    stolen = _error(
        bob.put_feedback,
        applicationId=APP_ID,
        conversationId=answer["conversationId"],
        messageId=answer["systemMessageId"],
        messageUsefulness=usefulness,
    )
    assert stolen["Error"]["Code"] == "ResourceNotFoundException"
    assert len(qb.q.stats.feedback) == 1


# -- fault switches --------------------------------------------------------------------------------------


def test_throttling_and_internal_errors(qb: QEndpoint) -> None:
    alice = qb.user("alice@example.com")
    qb.q.faults.throttle_next = 2
    qb.q.faults.internal_error_next = 1
    for expected in ("ThrottlingException", "ThrottlingException", "InternalServerException"):
        error = _error(alice.chat_sync, applicationId=APP_ID, userMessage=AURORA)
        assert error["Error"]["Code"] == expected
        assert error["ResponseMetadata"]["HTTPStatusCode"] == (429 if expected == "ThrottlingException" else 500)
    assert ask(alice, AURORA)["systemMessage"]
    assert qb.q.stats.chat_calls["alice@example.com"] == 4


def test_subscription_error_on_first_call(qb: QEndpoint) -> None:
    qb.q.faults.subscription_error_first_call = True
    alice = qb.user("alice@example.com")
    error = _error(alice.chat_sync, applicationId=APP_ID, userMessage=AURORA)
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert "does not have a subscription" in error["Error"]["Message"]
    assert ask(alice, AURORA)["sourceAttributions"]
    assert _error(qb.user("bob@example.com").chat_sync, applicationId=APP_ID, userMessage=AURORA)
    qb.q.faults.reset()
    assert qb.q.faults.subscription_error_first_call is False
    assert ask(qb.user("carol@example.com"), AURORA)["systemMessage"]


def test_delay_does_not_block_other_requests(qb: QEndpoint) -> None:
    qb.q.faults.delay_seconds = 0.6
    clients = [qb.user("alice@example.com"), qb.user("bob@example.com")]
    threads = [threading.Thread(target=ask, args=(client, AURORA)) for client in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(0.15)
    qb.admin().get_application(applicationId=APP_ID)
    assert time.monotonic() - started < 0.5, "a slow ChatSync must not hold up other requests"
    for thread in threads:
        thread.join(5)
    assert time.monotonic() - started >= 0.6
    assert qb.q.stats.max_in_flight == 2
    assert qb.q.stats.in_flight == 0


# -- control plane ---------------------------------------------------------------------------------------


def test_control_plane_round_trip(qb: QEndpoint) -> None:
    admin = qb.admin()
    created = admin.create_application(
        displayName="qbot-prod",
        identityType="AWS_IAM_IDP_OIDC",
        iamIdentityProviderArn=OIDC_PROVIDER,
        clientIdsForOIDC=["qbot"],
        clientToken="provision-1",
    )
    app_id = created["applicationId"]
    again = admin.create_application(
        displayName="qbot-prod",
        identityType="AWS_IAM_IDP_OIDC",
        iamIdentityProviderArn=OIDC_PROVIDER,
        clientIdsForOIDC=["qbot"],
        clientToken="provision-1",
    )
    assert again["applicationId"] == app_id, "a retried create with the same clientToken creates nothing"
    app = admin.get_application(applicationId=app_id)
    assert (app["status"], app["displayName"], app["clientIdsForOIDC"]) == ("ACTIVE", "qbot-prod", ["qbot"])
    assert app["applicationArn"].endswith(f":application/{app_id}")
    names = {a["displayName"] for a in admin.list_applications()["applications"]}
    assert names == {"qbot-sandbox", "qbot-prod"}
    admin.update_application(applicationId=app_id, displayName="qbot-production", description="Slack and Teams")
    updated = admin.get_application(applicationId=app_id)
    assert (updated["displayName"], updated["description"]) == ("qbot-production", "Slack and Teams")

    index_id = admin.create_index(applicationId=app_id, displayName="docs")["indexId"]
    assert admin.get_index(applicationId=app_id, indexId=index_id)["status"] == "ACTIVE"
    assert [i["indexId"] for i in admin.list_indices(applicationId=app_id)["indices"]] == [index_id]
    retriever_id = admin.create_retriever(
        applicationId=app_id,
        type="NATIVE_INDEX",
        displayName="docs-retriever",
        configuration={"nativeIndexConfiguration": {"indexId": index_id}},
    )["retrieverId"]
    retriever = admin.get_retriever(applicationId=app_id, retrieverId=retriever_id)
    assert retriever["configuration"]["nativeIndexConfiguration"]["indexId"] == index_id
    assert [r["retrieverId"] for r in admin.list_retrievers(applicationId=app_id)["retrievers"]] == [retriever_id]
    experience_id = admin.create_web_experience(applicationId=app_id, title="Ask qbot")["webExperienceId"]
    experience = admin.get_web_experience(applicationId=app_id, webExperienceId=experience_id)
    assert (experience["title"], experience["status"]) == ("Ask qbot", "ACTIVE")
    listed = admin.list_web_experiences(applicationId=app_id)["webExperiences"]
    assert [e["webExperienceId"] for e in listed] == [experience_id]


def test_control_plane_validation(qb: QEndpoint) -> None:
    admin = qb.admin()
    missing = _error(
        admin.create_application, displayName="x", identityType="AWS_IAM_IDP_OIDC", iamIdentityProviderArn=OIDC_PROVIDER
    )
    assert missing["Error"]["Code"] == "ValidationException"
    assert "clientIdsForOIDC" in missing["Error"]["Message"]
    unknown_index = _error(
        admin.create_retriever,
        applicationId=APP_ID,
        type="NATIVE_INDEX",
        displayName="r",
        configuration={"nativeIndexConfiguration": {"indexId": APP_ID}},
    )
    assert unknown_index["Error"]["Code"] == "ResourceNotFoundException"


def test_resources_can_take_time_to_become_active(qb: QEndpoint) -> None:
    admin = qb.admin()
    qb.q.faults.control_plane_delay = 1.0  # generous: the first read must land inside it even on a loaded machine
    app_id = admin.create_application(
        displayName="slow",
        identityType="AWS_IAM_IDP_OIDC",
        iamIdentityProviderArn=OIDC_PROVIDER,
        clientIdsForOIDC=["qbot"],
    )["applicationId"]
    assert admin.get_application(applicationId=app_id)["status"] == "CREATING"
    deadline = time.monotonic() + 10
    while admin.get_application(applicationId=app_id)["status"] != "ACTIVE":
        assert time.monotonic() < deadline, "never became ACTIVE"
        time.sleep(0.1)


def test_groups_round_trip(qb: QEndpoint) -> None:
    admin = qb.admin()
    listed = admin.list_groups(
        applicationId=APP_ID, indexId=INDEX_ID, updatedEarlierThan=datetime.now(UTC), maxResults=2
    )
    assert len(listed["items"]) == 2 and listed["nextToken"]
    rest = admin.list_groups(
        applicationId=APP_ID, indexId=INDEX_ID, updatedEarlierThan=datetime.now(UTC), nextToken=listed["nextToken"]
    )
    names = {g["groupName"] for g in listed["items"] + rest["items"]}
    assert names == {"core-team", "engineering", "sales", "hr"}
    admin.delete_group(applicationId=APP_ID, indexId=INDEX_ID, groupName="core-team")
    gone = _error(admin.get_group, applicationId=APP_ID, indexId=INDEX_ID, groupName="core-team")
    assert gone["Error"]["Code"] == "ResourceNotFoundException"
    assert ROADMAP_URL not in _urls(ask(qb.user("alice@example.com"), AURORA))


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
