"""Q Business groups: what document ACLs name, written by PutGroup (IAM federation brings no IdP groups).

Each index holds its own groups, keyed by data source and name; a user is in a group listed directly or
through a member group, so nesting works as PutGroup's memberGroups describe it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sandbox.qbusiness.restjson import not_found, paginate, validation_error

if TYPE_CHECKING:
    from sandbox.qbusiness.controlplane import Index

Params = dict[str, Any]
Output = dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Group:
    name: str
    data_source_id: str | None
    type: str
    member_users: list[str]
    member_groups: list[str]
    updated_at: datetime = field(default_factory=_now)


def memberships(groups: Iterable[Group], email: str) -> set[str]:
    """Every group `email` is in, directly or through member groups."""
    groups = list(groups)
    email = email.lower()
    member_of = {g.name for g in groups if email in g.member_users}
    grew = True
    while grew:
        wider = {g.name for g in groups if member_of & set(g.member_groups)}
        grew = not wider <= member_of
        member_of |= wider
    return member_of


class Groups:
    """The PutGroup, GetGroup, ListGroups and DeleteGroup operations, on the indices `index` finds."""

    def __init__(self, index: Callable[[str, str], Index]) -> None:
        self._index = index

    def put_group(self, params: Params) -> Output:
        index = self._index(params["applicationId"], params["indexId"])
        members = params["groupMembers"]
        if "s3PathForGroupMembers" in members:
            raise validation_error(
                "The sandbox does not read group members from S3; send memberUsers and memberGroups.",
                ("groupMembers.s3PathForGroupMembers", "not supported by the sandbox"),
            )
        if params["type"] == "DATASOURCE" and not params.get("dataSourceId"):
            raise validation_error(
                "A DATASOURCE group needs a dataSourceId.", ("dataSourceId", "Member must not be null")
            )
        index.put_group(
            Group(
                name=params["groupName"],
                data_source_id=params.get("dataSourceId"),
                type=params["type"],
                member_users=[user["userId"].lower() for user in members.get("memberUsers", [])],
                member_groups=[group["groupName"] for group in members.get("memberGroups", [])],
            )
        )
        return {}

    def seed(self, index: Index, groups: dict[str, list[str]]) -> None:
        """Groups an index starts with (the sample application's), as if PutGroup had written them."""
        for name, emails in groups.items():
            index.put_group(Group(name, None, "INDEX", [email.lower() for email in emails], []))

    def _group(self, params: Params) -> tuple[Index, Group]:
        index = self._index(params["applicationId"], params["indexId"])
        group = index.groups.get((params.get("dataSourceId") or "", params["groupName"]))
        if group is None:
            raise not_found(f"Group {params['groupName']} not found.", params["groupName"], "Group")
        return index, group

    def get_group(self, params: Params) -> Output:
        _, group = self._group(params)
        status = {"status": "SUCCEEDED", "lastUpdatedAt": group.updated_at}
        return {"status": status, "statusHistory": [status]}

    def list_groups(self, params: Params) -> Output:
        index = self._index(params["applicationId"], params["indexId"])
        cutoff = params["updatedEarlierThan"]
        data_source = params.get("dataSourceId") or ""
        names = sorted(
            group.name
            for (source, _), group in index.groups.items()
            if source == data_source and group.updated_at <= cutoff
        )
        page, token = paginate(names, params, 10)
        return {"items": [{"groupName": name} for name in page], "nextToken": token}

    def delete_group(self, params: Params) -> Output:
        index, group = self._group(params)
        del index.groups[(group.data_source_id or "", group.name)]
        return {}
