"""The control plane: applications, indices, retrievers, web experiences and groups, round trip."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.sandbox.qbusiness.endpoint import (
    APP_ID,
    AURORA,
    INDEX_ID,
    OIDC_PROVIDER,
    ROADMAP_URL,
    QEndpoint,
    ask,
    cited_urls,
    refusal,
)


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
    missing = refusal(
        admin.create_application, displayName="x", identityType="AWS_IAM_IDP_OIDC", iamIdentityProviderArn=OIDC_PROVIDER
    )
    assert missing["Error"]["Code"] == "ValidationException"
    assert "clientIdsForOIDC" in missing["Error"]["Message"]
    unknown_index = refusal(
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
    gone = refusal(admin.get_group, applicationId=APP_ID, indexId=INDEX_ID, groupName="core-team")
    assert gone["Error"]["Code"] == "ResourceNotFoundException"
    assert ROADMAP_URL not in cited_urls(ask(qb.user("alice@example.com"), AURORA))
