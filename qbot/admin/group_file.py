"""`qbot admin groups sync FILE`: make an index's groups what a file says, writing only the groups that changed.

The file maps each group to its members' emails:
- JSON: `{"core-team": ["alice@example.com", "bob@example.com"], "sales": []}`;
- CSV: one membership per row, `group,email` (a header row naming those two columns is allowed); a row with an
  empty email declares a group with no members. Columns may be separated by commas, semicolons (spreadsheets in
  many locales export those) or tabs: the file's own separator is found, and a file that mixes them, or puts a
  group and an email in one column, is refused rather than read as groups named after whole lines.

Q Business cannot say who is in a group (GetGroup reports only the status of the last write), so what this
command wrote is kept in a state file (`GroupRecord`). A group is written when it is not at Q Business, when
its members differ from the record, when Q says its last write FAILED, or when it is at Q but was not written
by qbot (its members are unknown). Losing the state file costs one rewrite of every group, nothing else.
Groups at Q that the file does not name are left alone; with `prune`, those qbot wrote earlier are deleted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.groups import IndexGroups, normalise_members

GroupMap = dict[str, tuple[str, ...]]
MAX_GROUP_NAME = 1024


class GroupFileError(ValueError):
    """The group file cannot be read; the message names the file and the line."""


def read_groups(path: Path) -> GroupMap:
    """Group -> sorted, lower-cased, de-duplicated member emails, from a JSON or CSV file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise GroupFileError(f"{path}: {err.strerror or err}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _from_json(path, text)
    return _from_csv(path, text)


def _from_json(path: Path, text: str) -> GroupMap:
    try:
        document = json.loads(text)
    except ValueError as err:
        raise GroupFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(document, dict):
        raise GroupFileError(f"{path}: expected an object mapping each group to a list of member emails")
    groups: GroupMap = {}
    for name, members in document.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise GroupFileError(f"{path}: the members of {name!r} must be a list of emails")
        groups[_group_name(path, name, "")] = _emails(path, members, f" in group {name!r}")
    return groups


#: The column separators a group file may use, by name (for the messages).
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
# A lone cell that is a name, a space and an email: a line whose separator is none of the above.
_GROUP_AND_EMAIL = re.compile(r"\S\s+[^\s@]+@[^\s@]+\.[^\s@]+$")


def csv_delimiter(path: Path, text: str) -> str:
    """The separator of a CSV group file: the one of DELIMITERS its rows use (a comma when every row has one
    column). Several in use: the one every multi-column row contains, else `GroupFileError`."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    used = [d for d in DELIMITERS if any(d in line for line in lines)]
    if len(used) <= 1:
        return used[0] if used else ","
    split = [line for line in lines if any(d in line for d in used)]
    everywhere = [d for d in used if all(d in line for line in split)]
    if len(everywhere) == 1:
        return everywhere[0]
    names = " and ".join(DELIMITERS[d] + "s" for d in used) + (" both" if len(used) == 2 else " all")
    raise GroupFileError(f"{path}: cannot tell how the columns are separated ({names} appear); "
                         "use one separator (comma, semicolon or tab) between group and email on every row")


def _from_csv(path: Path, text: str) -> GroupMap:
    delimiter = csv_delimiter(path, text)
    members: dict[str, set[str]] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells[:2]] == ["group", "email"]:
            continue
        if len(cells) > 2 and any(cells[2:]):
            raise GroupFileError(f"{path}:{number}: expected two columns, group and email")
        if len(cells) == 1 and _GROUP_AND_EMAIL.search(cells[0]):
            raise GroupFileError(f"{path}:{number}: {cells[0]!r} holds a group and an email in one column; separate "
                                 f"them with a {DELIMITERS[delimiter]} (the file's separator)")
        name = _group_name(path, cells[0], f":{number}")
        email = cells[1] if len(cells) > 1 else ""
        members.setdefault(name, set())
        if email:
            members[name].update(_emails(path, [email], f":{number}"))
    return {name: normalise_members(emails) for name, emails in members.items()}


def _group_name(path: Path, name: str, where: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_GROUP_NAME or not name.isprintable():
        raise GroupFileError(f"{path}{where}: {name!r} is not a group name (1-{MAX_GROUP_NAME} printable characters)")
    return name


def _emails(path: Path, emails: list[str], where: str) -> tuple[str, ...]:
    for email in emails:
        local, at, domain = email.strip().partition("@")
        if not (local and at and "." in domain) or any(c.isspace() for c in email.strip()):
            raise GroupFileError(f"{path}{where}: {email!r} is not an email address")
    return normalise_members(emails)


# -- what was written: the state file -----------------------------------------------------------------------


class GroupRecord:
    """What `groups sync` last wrote to each index, in a JSON file: {"<app>/<index>": {group: [emails]}}.

    Written after every successful PutGroup (atomically: a temporary file renamed over it), so a sync that
    stops half-way records exactly what it did write.
    """

    def __init__(self, path: Path, application_id: str, index_id: str) -> None:
        self.path = path
        self._key = f"{application_id}/{index_id}"

    def _all(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise GroupFileError(f"{self.path}: unreadable state file ({err}); move it away to start afresh") from None
        return document if isinstance(document, dict) else {}

    def load(self) -> GroupMap:
        entry = self._all().get("indices", {}).get(self._key, {})
        return {name: tuple(members) for name, members in entry.get("groups", {}).items()}

    def save(self, groups: Mapping[str, tuple[str, ...]]) -> None:
        document = self._all()
        document.setdefault("indices", {})[self._key] = {
            "updatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "groups": {name: list(members) for name, members in sorted(groups.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(document, file, indent=2)
                file.write("\n")
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


# -- the diff ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupChange:
    group: str
    action: str  # create | update | rewrite | delete
    members: tuple[str, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    reason: str = ""

    def render(self) -> str:
        marks = {"create": "+", "update": "~", "rewrite": "!", "delete": "-"}
        if self.action == "delete":
            head = f"  - {self.group}: delete ({self.reason})"
        elif self.action == "update":
            head = f"  ~ {self.group}: update, +{len(self.added)} -{len(self.removed)} ({len(self.members)} members)"
        else:
            count = len(self.members)
            head = f"  {marks[self.action]} {self.group}: {self.action} with {count} members ({self.reason})"
        lines = [head]
        lines += [f"      + {email}" for email in self.added]
        lines += [f"      - {email}" for email in self.removed]
        return "\n".join(lines)


@dataclass
class GroupPlan:
    changes: list[GroupChange]
    unchanged: list[str]
    left_alone: list[str]  # at Q, not in the file, not deleted


def plan_groups(
    desired: Mapping[str, tuple[str, ...]],
    recorded: Mapping[str, tuple[str, ...]],
    at_q: set[str],
    failed: set[str],
    *,
    prune: bool,
) -> GroupPlan:
    changes: list[GroupChange] = []
    unchanged: list[str] = []
    for group in sorted(desired):
        members = desired[group]
        before = recorded.get(group)
        if group not in at_q:
            changes.append(GroupChange(group, "create", members, added=members, reason="not at Q Business yet"))
        elif before is None:
            reason = "at Q Business but not written by qbot: its members are unknown"
            changes.append(GroupChange(group, "rewrite", members, added=members, reason=reason))
        elif group in failed:
            changes.append(GroupChange(group, "rewrite", members, added=members, reason="its last write FAILED"))
        elif before != members:
            added = tuple(sorted(set(members) - set(before)))
            removed = tuple(sorted(set(before) - set(members)))
            changes.append(GroupChange(group, "update", members, added=added, removed=removed))
        else:
            unchanged.append(group)
    left_alone = []
    for group in sorted(at_q - set(desired)):
        if prune and group in recorded:
            changes.append(GroupChange(group, "delete", (), reason="written by qbot, no longer in the file"))
        else:
            left_alone.append(group)
    return GroupPlan(changes, unchanged, left_alone)


def sync_groups(
    index: IndexGroups,
    record: GroupRecord,
    desired: Mapping[str, tuple[str, ...]],
    *,
    dry_run: bool,
    prune: bool,
    out: Callable[[str], None],
) -> GroupPlan:
    """Compare, print the diff, and (unless `dry_run`) write each changed group; the record follows each write."""
    recorded = record.load()
    at_q = index.names()
    # GetGroup only for the groups that would otherwise count as unchanged: was their last write accepted?
    candidates = [g for g in desired if g in at_q and recorded.get(g) == desired[g]]
    failed = {g for g in candidates if index.status(g) == "FAILED"}
    plan = plan_groups(desired, recorded, at_q, failed, prune=prune)

    out(
        f"Groups of index {index.index_id} (application {index.application_id}): "
        f"{len(desired)} in the file, {len(at_q)} at Q Business"
    )
    for change in plan.changes:
        out(change.render())
    if plan.unchanged:
        out(f"  = {len(plan.unchanged)} group(s) unchanged")
    if plan.left_alone:
        shown = ", ".join(plan.left_alone[:10]) + (", ..." if len(plan.left_alone) > 10 else "")
        hint = "" if prune else "; --prune deletes those qbot wrote"
        out(f"  ? {len(plan.left_alone)} group(s) at Q Business not in the file, left alone: {shown}{hint}")

    if not plan.changes:
        out("No changes: every group is as the file says.")
        return plan
    if dry_run:
        out(f"Dry run: {len(plan.changes)} change(s) planned; nothing was written.")
        return plan
    written = dict(recorded)
    for change in plan.changes:
        if change.action == "delete":
            index.delete(change.group)
            written.pop(change.group, None)
        else:
            index.put(change.group, change.members)
            written[change.group] = change.members
        record.save(written)
    puts = sum(1 for c in plan.changes if c.action != "delete")
    deletes = len(plan.changes) - puts
    out(f"Wrote {puts} group(s) with PutGroup" + (f" and deleted {deletes}" if deletes else "") + ".")
    return plan
