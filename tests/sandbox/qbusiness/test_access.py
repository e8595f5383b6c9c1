"""Who may call what: users chat as themselves, administrators provision; inputs validated like botocore."""

from __future__ import annotations

from tests.sandbox.qbusiness.endpoint import (
    APP_ID,
    AURORA,
    INDEX_ID,
    QEndpoint,
    refusal,
)


def test_admin_and_user_authorization(qb: QEndpoint) -> None:
    user = qb.user("alice@example.com")
    denied = refusal(
        user.put_group,
        applicationId=APP_ID,
        indexId=INDEX_ID,
        groupName="core-team",
        type="INDEX",
        groupMembers={"memberUsers": [{"userId": "alice@example.com"}]},
    )
    assert denied["Error"]["Code"] == "AccessDeniedException"
    assert "qbusiness:PutGroup" in denied["Error"]["Message"]
    assert refusal(user.list_applications)["Error"]["Code"] == "AccessDeniedException"
    assert refusal(qb.admin().chat_sync, applicationId=APP_ID, userMessage="hi")["Error"]["Code"] == (
        "AccessDeniedException"
    )
    admin_invalid = refusal(qb.admin(parameter_validation=False).chat_sync, applicationId="short", userMessage="hi")
    assert admin_invalid["Error"]["Code"] == "AccessDeniedException", "authorization comes before validation"
    untagged = qb.user(None)
    assert refusal(untagged.chat_sync, applicationId=APP_ID, userMessage="hi")["Error"]["Code"] == (
        "AccessDeniedException"
    )
    impersonating = refusal(user.chat_sync, applicationId=APP_ID, userMessage=AURORA, userId="bob@example.com")
    assert impersonating["Error"]["Code"] == "AccessDeniedException"
    assert qb.q.stats.put_group_calls == 0


def test_server_validates_what_botocore_would(qb: QEndpoint) -> None:
    loose = qb.user("alice@example.com", parameter_validation=False)
    short_id = refusal(loose.chat_sync, applicationId=APP_ID[:35], userMessage="hi")
    assert short_id["Error"]["Code"] == "ValidationException"
    assert "applicationId" in short_id["Error"]["Message"]
    admin = qb.admin(parameter_validation=False)
    missing = refusal(admin.put_group, applicationId=APP_ID, indexId=INDEX_ID, type="INDEX", groupMembers={})
    assert missing["Error"]["Code"] == "ValidationException"
    assert "groupName" in missing["Error"]["Message"]
    too_small = refusal(loose.list_conversations, applicationId=APP_ID, maxResults=0)
    assert "greater than or equal to 1" in too_small["Error"]["Message"]
    bad_enum = refusal(
        admin.put_group, applicationId=APP_ID, indexId=INDEX_ID, groupName="g", type="TEAM", groupMembers={}
    )
    assert "enum" in bad_enum["Error"]["Message"]


def test_unknown_application(qb: QEndpoint) -> None:
    other = "00000000-0000-4000-8000-000000000000"
    error = refusal(qb.user("alice@example.com").chat_sync, applicationId=other, userMessage="hi")
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert refusal(qb.admin().get_application, applicationId=other)["Error"]["Code"] == "ResourceNotFoundException"
