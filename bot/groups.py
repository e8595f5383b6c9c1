"""The groups Q Business document ACLs name, written to one index with PutGroup.

IAM federation brings no IdP groups to Q Business: a group an ACL names exists for Q only once someone has
written it with PutGroup (members by email), and PutGroup replaces the whole membership. Q cannot be asked who
is in a group (GetGroup reports only the status of the last write), so whoever writes groups keeps its own
record of what it wrote: `qbot admin groups sync` in a state file, automatic group sync in Redis
(`bot.group_sync`).

The calls are blocking boto3 calls with administrator credentials; callers on an event loop run them in an
executor.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.aws_clients import error_code

#: PutGroup's `type` for groups that belong to the index, not to one data source's connector.
INDEX = "INDEX"


def normalise_members(emails: Iterable[str]) -> tuple[str, ...]:
    """Q matches members by email, case-insensitively: lower-case, de-duplicated, sorted."""
    return tuple(sorted({email.strip().lower() for email in emails if email.strip()}))


class IndexGroups:
    """PutGroup, GetGroup, ListGroups and DeleteGroup on one index of one application."""

    def __init__(self, client: Any, application_id: str, index_id: str) -> None:
        self._client = client
        self.application_id = application_id
        self.index_id = index_id

    def put(self, name: str, members: Iterable[str]) -> None:
        """Replace the group's members (emails) with `members`."""
        self._client.put_group(
            applicationId=self.application_id,
            indexId=self.index_id,
            groupName=name,
            type=INDEX,
            groupMembers={"memberUsers": [{"userId": email, "type": INDEX} for email in normalise_members(members)]},
        )

    def names(self) -> set[str]:
        """Every group of the index (ListGroups, all pages)."""
        # "updated earlier than" a moment a little ahead: a group written a second ago counts, clocks differ.
        cutoff = datetime.now(UTC) + timedelta(minutes=5)
        names: set[str] = set()
        token: str | None = None
        while True:
            extra = {"nextToken": token} if token else {}
            page = self._client.list_groups(
                applicationId=self.application_id, indexId=self.index_id, updatedEarlierThan=cutoff, **extra
            )
            names.update(item["groupName"] for item in page.get("items", []) if item.get("groupName"))
            token = page.get("nextToken")
            if not token:
                return names

    def status(self, name: str) -> str | None:
        """The status of the group's last write (SUCCEEDED, PROCESSING, FAILED, ...); None if there is none."""
        try:
            answer = self._client.get_group(applicationId=self.application_id, indexId=self.index_id, groupName=name)
        except Exception as err:
            if error_code(err) == "ResourceNotFoundException":
                return None
            raise
        return str((answer.get("status") or {}).get("status") or "") or None

    def delete(self, name: str) -> None:
        self._client.delete_group(applicationId=self.application_id, indexId=self.index_id, groupName=name)


def find_index(client: Any, application_id: str) -> str:
    """The application's index when it has exactly one (what `qbot admin provision` makes); ValueError otherwise."""
    indices = client.list_indices(applicationId=application_id).get("indices", [])
    if len(indices) != 1:
        names = ", ".join(f"{i.get('displayName')} ({i['indexId']})" for i in indices) or "none"
        raise ValueError(
            f"application {application_id} has {len(indices)} indices ({names}): name one with QBOT_Q_INDEX_ID"
        )
    return str(indices[0]["indexId"])
