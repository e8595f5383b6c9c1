"""The Q Business control plane: applications and what hangs off them (indices, retrievers, web experiences;
the PutGroup groups that document ACLs name are in `groups`).

Enough of it for an idempotent provisioning tool to create, read back, list and update resources: each
method is one operation, takes the operation's validated input and returns its output. Resources are
ACTIVE at once, or CREATING for `delay()` seconds first, as a tool that waits for ACTIVE must handle.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.qbusiness.corpus import Document
from sandbox.qbusiness.groups import Group, memberships
from sandbox.qbusiness.restjson import not_found, paginate, validation_error

Params = dict[str, Any]
Output = dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Resource:
    """What every control-plane resource has: an id, an ARN, timestamps and a readiness time."""

    id: str
    arn: str
    ready_at: float
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    spec: Params = field(default_factory=dict)

    def status(self, ready: str = "ACTIVE") -> str:
        return ready if time.monotonic() >= self.ready_at else "CREATING"

    def update(self, changes: Params) -> None:
        self.spec.update({key: value for key, value in changes.items() if value is not None})
        self.updated_at = _now()


@dataclass
class Index(Resource):
    documents: list[Document] = field(default_factory=list)
    groups: dict[tuple[str, str], Group] = field(default_factory=dict)

    def put_group(self, group: Group) -> None:
        self.groups[(group.data_source_id or "", group.name)] = group

    def groups_of(self, email: str) -> set[str]:
        """Every group the user is in, directly or through member groups (as PutGroup wrote them)."""
        return memberships(self.groups.values(), email)


@dataclass
class Application(Resource):
    indices: dict[str, Index] = field(default_factory=dict)
    retrievers: dict[str, Resource] = field(default_factory=dict)
    experiences: dict[str, Resource] = field(default_factory=dict)

    def native_indices(self) -> list[Index]:
        """The indices the application's native-index retrievers read from."""
        wanted = [
            r.spec["configuration"].get("nativeIndexConfiguration", {}).get("indexId") for r in self.retrievers.values()
        ]
        return [self.indices[index_id] for index_id in wanted if index_id in self.indices]


class ControlPlane:
    def __init__(self, region: str, account: str, delay: Callable[[], float]) -> None:
        self.region = region
        self.account = account
        self._delay = delay
        self.applications: dict[str, Application] = {}
        self._client_tokens: dict[tuple[str, str], str] = {}

    # -- lookups shared with the data plane ------------------------------------------------------------

    def application(self, application_id: str) -> Application:
        app = self.applications.get(application_id)
        if app is None:
            raise not_found(
                f"Application Id {application_id} not found for Customer Id {self.account}.",
                application_id,
                "Application",
            )
        return app

    def index(self, application_id: str, index_id: str) -> Index:
        index = self.application(application_id).indices.get(index_id)
        if index is None:
            raise not_found(f"Index Id {index_id} not found for Application Id {application_id}.", index_id, "Index")
        return index

    def _arn(self, path: str) -> str:
        return f"arn:aws:qbusiness:{self.region}:{self.account}:{path}"

    def _ready_at(self) -> float:
        return time.monotonic() + self._delay()

    def _idempotent(self, kind: str, params: Params, create: Callable[[], Resource]) -> Resource:
        """Create once per clientToken: a retried Create returns the resource the first call made."""
        token = params.get("clientToken")
        key = (kind, token) if token else None
        if key and key in self._client_tokens:
            existing = self._find(kind, self._client_tokens[key])
            if existing is not None:
                return existing
        resource = create()
        if key:
            self._client_tokens[key] = resource.id
        return resource

    def _find(self, kind: str, resource_id: str) -> Resource | None:
        for app in self.applications.values():
            if kind == "application" and app.id == resource_id:
                return app
            children: dict[str, dict[str, Index] | dict[str, Resource]] = {
                "index": app.indices,
                "retriever": app.retrievers,
                "experience": app.experiences,
            }
            found = children.get(kind, {}).get(resource_id)
            if found is not None:
                return found
        return None

    # -- applications ------------------------------------------------------------------------------------

    def add_application(self, application_id: str, spec: Params) -> Application:
        app = Application(application_id, self._arn(f"application/{application_id}"), self._ready_at(), spec=spec)
        self.applications[application_id] = app
        return app

    def create_application(self, params: Params) -> Output:
        _check_identity(params)
        spec = {key: value for key, value in params.items() if key != "clientToken"}
        spec.setdefault("attachmentsConfiguration", {"attachmentsControlMode": "ENABLED"})
        if spec["identityType"] in ("AWS_IAM_IDP_OIDC", "AWS_IAM_IDP_SAML"):
            spec.setdefault(
                "autoSubscriptionConfiguration", {"autoSubscribe": "ENABLED", "defaultSubscriptionType": "Q_BUSINESS"}
            )
        app = self._idempotent("application", params, lambda: self.add_application(str(uuid.uuid4()), spec))
        return {"applicationId": app.id, "applicationArn": app.arn}

    def get_application(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        spec = app.spec
        return {
            "applicationId": app.id,
            "applicationArn": app.arn,
            "status": app.status(),
            "createdAt": app.created_at,
            "updatedAt": app.updated_at,
            **{key: spec.get(key) for key in _APPLICATION_FIELDS},
        }

    def list_applications(self, params: Params) -> Output:
        apps = sorted(self.applications.values(), key=lambda a: a.created_at)
        page, token = paginate(apps, params, 100)
        return {
            "applications": [
                {
                    "applicationId": app.id,
                    "displayName": app.spec.get("displayName"),
                    "identityType": app.spec.get("identityType"),
                    "status": app.status(),
                    "createdAt": app.created_at,
                    "updatedAt": app.updated_at,
                }
                for app in page
            ],
            "nextToken": token,
        }

    def update_application(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        app.update({key: value for key, value in params.items() if key != "applicationId"})
        return {}

    # -- indices -----------------------------------------------------------------------------------------

    def add_index(self, app: Application, index_id: str, spec: Params, documents: Iterable[Document] = ()) -> Index:
        arn = self._arn(f"application/{app.id}/index/{index_id}")
        index = Index(index_id, arn, self._ready_at(), spec=spec, documents=list(documents))
        app.indices[index_id] = index
        return index

    def create_index(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        spec = {key: value for key, value in params.items() if key not in ("applicationId", "clientToken")}
        spec.setdefault("type", "ENTERPRISE")
        spec.setdefault("capacityConfiguration", {"units": 1})
        index = self._idempotent("index", params, lambda: self.add_index(app, str(uuid.uuid4()), spec))
        return {"indexId": index.id, "indexArn": index.arn}

    def get_index(self, params: Params) -> Output:
        index = self.index(params["applicationId"], params["indexId"])
        return {
            "applicationId": params["applicationId"],
            "indexId": index.id,
            "indexArn": index.arn,
            "status": index.status(),
            "createdAt": index.created_at,
            "updatedAt": index.updated_at,
            **{key: index.spec.get(key) for key in ("displayName", "description", "type", "capacityConfiguration")},
            "indexStatistics": {
                "textDocumentStatistics": {
                    "indexedTextDocumentCount": len(index.documents),
                    "indexedTextBytes": sum(len(doc.body.encode()) for doc in index.documents),
                }
            },
        }

    def list_indices(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        page, token = paginate(sorted(app.indices.values(), key=lambda i: i.created_at), params, 100)
        return {
            "indices": [
                {
                    "indexId": index.id,
                    "displayName": index.spec.get("displayName"),
                    "status": index.status(),
                    "createdAt": index.created_at,
                    "updatedAt": index.updated_at,
                }
                for index in page
            ],
            "nextToken": token,
        }

    # -- retrievers --------------------------------------------------------------------------------------

    def add_retriever(self, app: Application, retriever_id: str, spec: Params) -> Resource:
        arn = self._arn(f"application/{app.id}/retriever/{retriever_id}")
        retriever = Resource(retriever_id, arn, self._ready_at(), spec=spec)
        app.retrievers[retriever_id] = retriever
        return retriever

    def create_retriever(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        configuration = params["configuration"]
        if params["type"] == "NATIVE_INDEX":
            native = configuration.get("nativeIndexConfiguration")
            if native is None:
                raise validation_error(
                    "A NATIVE_INDEX retriever needs configuration.nativeIndexConfiguration.",
                    ("configuration.nativeIndexConfiguration", "Member must not be null"),
                )
            self.index(app.id, native["indexId"])
        elif "kendraIndexConfiguration" not in configuration:
            raise validation_error(
                "A KENDRA_INDEX retriever needs configuration.kendraIndexConfiguration.",
                ("configuration.kendraIndexConfiguration", "Member must not be null"),
            )
        spec = {key: value for key, value in params.items() if key not in ("applicationId", "clientToken")}
        retriever = self._idempotent("retriever", params, lambda: self.add_retriever(app, str(uuid.uuid4()), spec))
        return {"retrieverId": retriever.id, "retrieverArn": retriever.arn}

    def get_retriever(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        retriever = app.retrievers.get(params["retrieverId"])
        if retriever is None:
            raise not_found(f"Retriever Id {params['retrieverId']} not found.", params["retrieverId"], "Retriever")
        return {
            "applicationId": app.id,
            "retrieverId": retriever.id,
            "retrieverArn": retriever.arn,
            "status": retriever.status(),
            "createdAt": retriever.created_at,
            "updatedAt": retriever.updated_at,
            **{key: retriever.spec.get(key) for key in ("type", "displayName", "configuration", "roleArn")},
        }

    def list_retrievers(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        page, token = paginate(sorted(app.retrievers.values(), key=lambda r: r.created_at), params, 50)
        return {
            "retrievers": [
                {
                    "applicationId": app.id,
                    "retrieverId": r.id,
                    "type": r.spec.get("type"),
                    "status": r.status(),
                    "displayName": r.spec.get("displayName"),
                }
                for r in page
            ],
            "nextToken": token,
        }

    # -- web experiences ---------------------------------------------------------------------------------

    def create_web_experience(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        spec = {key: value for key, value in params.items() if key not in ("applicationId", "clientToken")}

        def create() -> Resource:
            experience_id = str(uuid.uuid4())
            arn = self._arn(f"application/{app.id}/web-experience/{experience_id}")
            spec["defaultEndpoint"] = f"https://{uuid.uuid4().hex[:10]}.chat.qbusiness.{self.region}.on.aws/"
            experience = Resource(experience_id, arn, self._ready_at(), spec=spec)
            app.experiences[experience_id] = experience
            return experience

        experience = self._idempotent("experience", params, create)
        return {"webExperienceId": experience.id, "webExperienceArn": experience.arn}

    def get_web_experience(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        experience = app.experiences.get(params["webExperienceId"])
        if experience is None:
            raise not_found(
                f"Web experience Id {params['webExperienceId']} not found.", params["webExperienceId"], "WebExperience"
            )
        return {
            "applicationId": app.id,
            "webExperienceId": experience.id,
            "webExperienceArn": experience.arn,
            "status": experience.status(),
            "createdAt": experience.created_at,
            "updatedAt": experience.updated_at,
            **{key: experience.spec.get(key) for key in _EXPERIENCE_FIELDS},
        }

    def list_web_experiences(self, params: Params) -> Output:
        app = self.application(params["applicationId"])
        page, token = paginate(sorted(app.experiences.values(), key=lambda e: e.created_at), params, 100)
        return {
            "webExperiences": [
                {
                    "webExperienceId": e.id,
                    "status": e.status(),
                    "createdAt": e.created_at,
                    "updatedAt": e.updated_at,
                    "defaultEndpoint": e.spec.get("defaultEndpoint"),
                }
                for e in page
            ],
            "nextToken": token,
        }


_APPLICATION_FIELDS = (
    "displayName",
    "identityType",
    "iamIdentityProviderArn",
    "clientIdsForOIDC",
    "roleArn",
    "description",
    "encryptionConfiguration",
    "attachmentsConfiguration",
    "qAppsConfiguration",
    "personalizationConfiguration",
    "autoSubscriptionConfiguration",
    "quickSightConfiguration",
)
_EXPERIENCE_FIELDS = (
    "title",
    "subtitle",
    "welcomeMessage",
    "samplePromptsControlMode",
    "origins",
    "roleArn",
    "identityProviderConfiguration",
    "browserExtensionConfiguration",
    "customizationConfiguration",
    "defaultEndpoint",
)


def _check_identity(params: Params) -> None:
    """The members each identity type needs, as CreateApplication insists on them."""
    identity_type = params.get("identityType")
    needs = {
        "AWS_IAM_IDP_OIDC": ("iamIdentityProviderArn", "clientIdsForOIDC"),
        "AWS_IAM_IDP_SAML": ("iamIdentityProviderArn",),
        "AWS_IAM_IDC": ("identityCenterInstanceArn",),
        "AWS_QUICKSIGHT_IDP": ("quickSightConfiguration",),
        "ANONYMOUS": (),
    }
    if identity_type is None:
        raise validation_error("identityType is required.", ("identityType", "Member must not be null"))
    missing = [name for name in needs[identity_type] if not params.get(name)]
    if missing:
        raise validation_error(
            f"{', '.join(missing)} required for identityType {identity_type}.",
            *[(name, "Member must not be null") for name in missing],
        )
    provider = params.get("iamIdentityProviderArn", "")
    expected = {"AWS_IAM_IDP_OIDC": ":oidc-provider/", "AWS_IAM_IDP_SAML": ":saml-provider/"}.get(identity_type)
    if expected and expected not in provider:
        raise validation_error(
            f"iamIdentityProviderArn must name an {expected.strip(':/')} for identityType {identity_type}.",
            ("iamIdentityProviderArn", "wrong provider type"),
        )
