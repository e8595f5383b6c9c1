"""`qbot admin groups sync FILE`: reading the file, the diff, and PutGroup at the Q Business stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qbot.admin.group_file import GroupFileError, plan_groups, read_groups
from qbot.cli import main
from sandbox.world import APP_ID, INDEX_ID, Sandbox


def groups_at_q(sandbox: Sandbox) -> dict[str, list[str]]:
    index = sandbox.q.control.index(APP_ID, INDEX_ID)
    return {group.name: sorted(group.member_users) for group in index.groups.values()}


def test_csv_and_json_files_read_alike(tmp_path: Path) -> None:
    csv_file = tmp_path / "groups.csv"
    csv_file.write_text(
        "group,email\ncore-team,Alice@Example.com\ncore-team, bob@example.com\n# a comment\n\nempty,\n"
        "core-team,alice@example.com\n"
    )
    json_file = tmp_path / "groups.json"
    json_file.write_text(json.dumps({"core-team": ["bob@example.com", "alice@example.com"], "empty": []}))

    expected = {"core-team": ("alice@example.com", "bob@example.com"), "empty": ()}
    assert read_groups(csv_file) == expected
    assert read_groups(json_file) == expected


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.csv", "core-team,not-an-email\n", "bad.csv:1: 'not-an-email' is not an email address"),
        ("bad.csv", "core-team,a@example.com,extra\n", "bad.csv:1: expected two columns"),
        ("bad.json", '{"core-team": "alice@example.com"}', "the members of 'core-team' must be a list"),
        ("bad.json", '["core-team"]', "expected an object mapping each group"),
        ("bad.json", "{nope", "not valid JSON"),
    ],
)
def test_a_bad_file_names_the_problem_and_its_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(GroupFileError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        read_groups(path)
    assert str(path) in str(caught.value)



@pytest.mark.parametrize(("separator", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab")])
def test_a_csv_file_may_separate_its_columns_by_commas_semicolons_or_tabs(
    tmp_path: Path, separator: str, name: str
) -> None:
    """A spreadsheet saved in a locale whose decimal mark is a comma exports `;`: that used to become one group
    per line, named after the whole line."""
    path = tmp_path / f"{name}.csv"
    path.write_text(f"Group{separator}Email\ncore-team{separator}alice@example.com\n"
                    f"core-team{separator}bob@example.com\n# only a comment; here\nsales{separator}\nempty\n")
    assert read_groups(path) == {
        "core-team": ("alice@example.com", "bob@example.com"), "sales": (), "empty": (),
    }


def test_a_separator_inside_a_quoted_group_name_does_not_confuse_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text('"sales; north",carol@example.com\ncore-team,alice@example.com\n')
    assert read_groups(path) == {"sales; north": ("carol@example.com",), "core-team": ("alice@example.com",)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("core-team;alice@example.com\nsales,bob@example.com\n",
         "cannot tell how the columns are separated (commas and semicolons both appear)"),
        ("core-team;alice@example.com\nsales,bob@example.com\nx\ty@example.com\n",
         "(commas and semicolons and tabs all appear)"),
        ("core-team alice@example.com\n",
         ":1: 'core-team alice@example.com' holds a group and an email in one column; separate them with a comma"),
        ("core-team;alice@example.com\nsales bob@example.com\n",
         ":2: 'sales bob@example.com' holds a group and an email in one column; separate them with a semicolon"),
    ],
)
def test_a_file_whose_columns_cannot_be_told_apart_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "groups.csv"
    path.write_text(text)
    with pytest.raises(GroupFileError) as caught:
        read_groups(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_the_plan_writes_only_what_changed_and_leaves_foreign_groups_alone() -> None:
    desired = {"new": ("a@x.com",), "same": ("a@x.com",), "moved": ("a@x.com", "c@x.com"), "unknown": ("a@x.com",),
               "failed": ("a@x.com",)}
    recorded = {"same": ("a@x.com",), "moved": ("a@x.com", "b@x.com"), "failed": ("a@x.com",), "gone": ("z@x.com",)}
    at_q = {"same", "moved", "unknown", "failed", "gone", "foreign"}

    plan = plan_groups(desired, recorded, at_q, {"failed"}, prune=False)
    actions = {change.group: change.action for change in plan.changes}
    assert actions == {"new": "create", "moved": "update", "unknown": "rewrite", "failed": "rewrite"}
    moved = next(change for change in plan.changes if change.group == "moved")
    assert moved.added == ("c@x.com",) and moved.removed == ("b@x.com",)
    assert plan.unchanged == ["same"] and plan.left_alone == ["foreign", "gone"]

    pruned = plan_groups(desired, recorded, at_q, set(), prune=True)
    assert [c.group for c in pruned.changes if c.action == "delete"] == ["gone"]  # never "foreign": not ours
    assert pruned.left_alone == ["foreign"]


def sync(capsys: pytest.CaptureFixture[str], file: Path, state: Path, *extra: str) -> tuple[int, str]:
    code = main(["admin", "groups", "sync", str(file), "--state", str(state), "--application-id", APP_ID, *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_sync_diffs_then_writes_only_changed_groups_and_records_them(
    sandbox: Sandbox, admin_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    file = tmp_path / "groups.json"
    file.write_text(json.dumps({"core-team": ["alice@example.com", "bob@example.com"], "sales": ["bob@example.com"]}))

    code, out = sync(capsys, file, state, "--dry-run")
    assert code == 0, out
    assert "! core-team: rewrite with 2 members (at Q Business but not written by qbot" in out
    assert "+ bob@example.com" in out and "Dry run: 2 change(s) planned" in out
    assert "2 group(s) at Q Business not in the file, left alone: engineering, hr" in out
    assert sandbox.q.stats.put_group_calls == 0 and not state.exists()

    code, out = sync(capsys, file, state)
    assert code == 0, out
    assert "Wrote 2 group(s) with PutGroup." in out
    assert sandbox.q.stats.put_group_calls == 2
    assert groups_at_q(sandbox)["core-team"] == ["alice@example.com", "bob@example.com"]
    recorded = json.loads(state.read_text())["indices"][f"{APP_ID}/{INDEX_ID}"]["groups"]
    assert recorded == {"core-team": ["alice@example.com", "bob@example.com"], "sales": ["bob@example.com"]}

    code, out = sync(capsys, file, state)
    assert code == 0 and "No changes: every group is as the file says." in out
    assert sandbox.q.stats.put_group_calls == 2

    file.write_text(json.dumps({"core-team": ["alice@example.com"], "sales": ["bob@example.com"], "new": []}))
    code, out = sync(capsys, file, state)
    assert code == 0, out
    assert "~ core-team: update, +0 -1 (1 members)\n      - bob@example.com" in out
    assert "+ new: create with 0 members" in out and "= 1 group(s) unchanged" in out
    assert sandbox.q.stats.put_group_calls == 4
    assert groups_at_q(sandbox)["core-team"] == ["alice@example.com"] and groups_at_q(sandbox)["new"] == []

    file.write_text(json.dumps({"core-team": ["alice@example.com"]}))
    code, out = sync(capsys, file, state, "--prune")
    assert code == 0, out
    assert "- new: delete" in out and "- sales: delete" in out and "left alone: engineering, hr" in out
    assert sorted(groups_at_q(sandbox)) == ["core-team", "engineering", "hr"]


def test_a_group_deleted_at_q_or_whose_write_failed_is_written_again(
    sandbox: Sandbox, admin_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    file = tmp_path / "groups.csv"
    file.write_text("core-team,alice@example.com\n")
    assert sync(capsys, file, state)[0] == 0
    index = sandbox.q.control.index(APP_ID, INDEX_ID)
    del index.groups[("", "core-team")]  # someone deleted it in the console

    code, out = sync(capsys, file, state)
    assert code == 0 and "+ core-team: create with 1 members (not at Q Business yet)" in out
    assert groups_at_q(sandbox)["core-team"] == ["alice@example.com"]


def test_failures_say_what_to_do(
    sandbox: Sandbox, admin_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "groups.csv"
    file.write_text("core-team,alice@example.com\n")
    code, out = sync(capsys, file, tmp_path / "s.json", "--index-id", "0" * 36)
    assert code == 1 and "ListGroups failed: ResourceNotFoundException" in out and "run the command again" in out
    code, out = sync(capsys, tmp_path / "missing.csv", tmp_path / "s.json")
    assert code == 1 and "missing.csv" in out
