"""The Q Business half of provisioning: the application (IAM-federated with the provider), auto-subscription,
and its index with a native retriever, each waited for until ACTIVE.

Identity settings cannot change on an existing application, so an application found by id or name that does not
fit is refused with the reason, never half-adopted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.aws_clients import error_code
from qbot.admin.plan import TAGS, Plan, ProvisionError, Step
from qbot.admin.policies import application_arn

IDENTITY_TYPE = "AWS_IAM_IDP_OIDC"
SAML_IDENTITY_TYPE = "AWS_IAM_IDP_SAML"
NEW_APPLICATION = "<id of the new application>"
NEW_INDEX = "<id of the new index>"


def converge_application(plan: Plan) -> dict[str, Any]:
    """The application as it is (or, in a dry run, as it would be created); sets `outcome.application_id`."""
    target = plan.target
    plan.out(f"Q Business application {target.application_id or target.name!r}")
    found = _find_application(plan)
    identity_type = _identity_type(plan)
    if found is None:
        identity: dict[str, Any] = {"identityType": identity_type, "iamIdentityProviderArn": plan.outcome.provider_arn}
        if target.saml is None:
            identity["clientIdsForOIDC"] = list(target.client_ids)
        step = Step(
            "qbusiness",
            "CreateApplication",
            {
                "displayName": target.name,
                "description": "Amazon Q Business in chat, answering as the asking user (qbot)",
                **identity,
                "attachmentsConfiguration": {"attachmentsControlMode": "ENABLED"},
                "tags": [{"key": tag["Key"], "value": tag["Value"]} for tag in TAGS],
            },
            "an IAM-federated application for the IdP's users",
        )
        answer = plan.write(step)
        if plan.dry_run:
            plan.outcome.application_id = NEW_APPLICATION
            plan.write(_auto_subscription_step(plan, NEW_APPLICATION, "(unless creation already enabled it)"))
            return {
                "applicationId": NEW_APPLICATION,
                "applicationArn": application_arn(
                    plan.region, plan.outcome.account_id, NEW_APPLICATION, plan.partition
                ),
            }
        application_id = answer["applicationId"]
        found = plan.wait_for("application", lambda: plan.q.get_application(applicationId=application_id))
    else:
        _check_identity(plan, found)
        settings = "identity provider" if target.saml else "identity provider, client ids"
        plan.unchanged(f"{found['applicationId']}: {identity_type}, {settings}")
        if found.get("status") != "ACTIVE" and not plan.dry_run:
            existing_id = found["applicationId"]
            found = plan.wait_for("application", lambda: plan.q.get_application(applicationId=existing_id))
    application_id = found["applicationId"]
    plan.outcome.application_id = application_id
    if found.get("autoSubscriptionConfiguration") != target.auto_subscription:
        plan.write(_auto_subscription_step(plan, application_id, "so a user's first question subscribes them"))
    else:
        plan.unchanged("auto-subscription")
    return found


def _find_application(plan: Plan) -> dict[str, Any] | None:
    target = plan.target
    if target.application_id:
        try:
            return dict(plan.q.get_application(applicationId=target.application_id))
        except Exception as err:
            if error_code(err) == "ResourceNotFoundException":
                raise ProvisionError(
                    f"application {target.application_id} does not exist in {plan.region}; "
                    "leave out --application-id to create one"
                ) from None
            raise
    named = [app for app in _applications(plan) if app.get("displayName") == target.name]
    if len(named) > 1:
        ids = ", ".join(app["applicationId"] for app in named)
        raise ProvisionError(
            f"several applications are named {target.name!r} ({ids}): pick one with --application-id"
        )
    if not named:
        return None
    return dict(plan.q.get_application(applicationId=named[0]["applicationId"]))


def _applications(plan: Plan) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        page = plan.q.list_applications(**({"nextToken": token} if token else {}))
        yield from page.get("applications", [])
        token = page.get("nextToken")
        if not token:
            return


def _identity_type(plan: Plan) -> str:
    return SAML_IDENTITY_TYPE if plan.target.saml else IDENTITY_TYPE


def _check_identity(plan: Plan, application: dict[str, Any]) -> None:
    """Identity settings cannot be changed on an existing application: refuse rather than half-adopt it."""
    problems = []
    identity_type = _identity_type(plan)
    if application.get("identityType") != identity_type:
        problems.append(f"its identity type is {application.get('identityType')}, not {identity_type}")
    if application.get("iamIdentityProviderArn") != plan.outcome.provider_arn:
        problems.append(
            f"it trusts the identity provider {application.get('iamIdentityProviderArn')}, "
            f"not {plan.outcome.provider_arn}"
        )
    missing = [] if plan.target.saml else [
        c for c in plan.target.client_ids if c not in (application.get("clientIdsForOIDC") or [])
    ]
    if missing:
        problems.append(f"its client ids lack {', '.join(missing)}")
    if problems:
        raise ProvisionError(
            f"application {application['applicationId']} cannot serve qbot: {'; '.join(problems)}. "
            "Q Business cannot change these on an existing application: use another --name (a new "
            "application) or fix it in the console."
        )


def _auto_subscription_step(plan: Plan, application_id: str, reason: str) -> Step:
    return Step(
        "qbusiness",
        "UpdateApplication",
        {"applicationId": application_id, "autoSubscriptionConfiguration": plan.target.auto_subscription},
        f"enable auto-subscription {reason}",
    )


def converge_index_and_retriever(plan: Plan, application: dict[str, Any]) -> None:
    """Adopt the native retriever's index, or the index named for the target, or create one; then its retriever."""
    target = plan.target
    application_id = application["applicationId"]
    plan.out(f"Index and retriever of {application_id}")
    retrievers = [] if application_id == NEW_APPLICATION else _retrievers(plan, application_id)
    native = [r for r in retrievers if r.get("type") == "NATIVE_INDEX"]
    if retrievers and not native:
        plan.out(f"  ! the application reads through a {retrievers[0].get('type')} retriever: left as it is")
        return
    if native:
        retriever = plan.q.get_retriever(applicationId=application_id, retrieverId=native[0]["retrieverId"])
        plan.outcome.retriever_id = retriever["retrieverId"]
        plan.outcome.index_id = retriever["configuration"]["nativeIndexConfiguration"]["indexId"]
        index_id = plan.outcome.index_id
        index = plan.q.get_index(applicationId=application_id, indexId=index_id)
        if not plan.dry_run and index.get("status") != "ACTIVE":
            plan.wait_for("index", lambda: plan.q.get_index(applicationId=application_id, indexId=index_id))
        if not plan.dry_run and retriever.get("status") != "ACTIVE":
            plan.wait_for(
                "retriever",
                lambda: plan.q.get_retriever(applicationId=application_id, retrieverId=retriever["retrieverId"]),
            )
        plan.unchanged(f"index {plan.outcome.index_id}, native retriever {plan.outcome.retriever_id}")
        return

    named = _named_index(plan, application_id)
    if named is None:
        answer = plan.write(
            Step(
                "qbusiness",
                "CreateIndex",
                {
                    "applicationId": application_id,
                    "displayName": target.index_name,
                    "description": "Documents qbot answers from",
                    "type": target.index_type,
                    "tags": [{"key": tag["Key"], "value": tag["Value"]} for tag in TAGS],
                },
                "the index the application answers from (and PutGroup writes groups to)",
            )
        )
        new_index_id: str = answer.get("indexId") or NEW_INDEX
    else:
        new_index_id = named
        plan.unchanged(f"index {named} ({target.index_name})")
    index_id = new_index_id
    if not plan.dry_run:
        plan.wait_for("index", lambda: plan.q.get_index(applicationId=application_id, indexId=index_id))
    plan.outcome.index_id = index_id
    answer = plan.write(
        Step(
            "qbusiness",
            "CreateRetriever",
            {
                "applicationId": application_id,
                "type": "NATIVE_INDEX",
                "displayName": target.retriever_name,
                "configuration": {"nativeIndexConfiguration": {"indexId": index_id}},
            },
            "let the application answer from the index",
        )
    )
    if not plan.dry_run:
        retriever_id = answer["retrieverId"]
        plan.outcome.retriever_id = retriever_id
        plan.wait_for(
            "retriever", lambda: plan.q.get_retriever(applicationId=application_id, retrieverId=retriever_id)
        )


def _retrievers(plan: Plan, application_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = plan.q.list_retrievers(applicationId=application_id, **({"nextToken": token} if token else {}))
        found.extend(page.get("retrievers", []))
        token = page.get("nextToken")
        if not token:
            return found


def _named_index(plan: Plan, application_id: str) -> str | None:
    if application_id == NEW_APPLICATION:
        return None
    token: str | None = None
    while True:
        page = plan.q.list_indices(applicationId=application_id, **({"nextToken": token} if token else {}))
        for index in page.get("indices", []):
            if index.get("displayName") == plan.target.index_name:
                return str(index["indexId"])
        token = page.get("nextToken")
        if not token:
            return None
