"""Group sync changes who reads what: through the whole chain, bob asks "What is Project Aurora?" (a core-team
document) before and after he is put into core-team, by a group file or by his own id_token's groups claim."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.model import ChatIdentity
from qbot.cli import main
from sandbox.directory import User
from sandbox.world import APP_ID, INDEX_ID, Sandbox
from tests.e2e.conftest import RunningBot
from tests.e2e.test_chain import AURORA, cites_aurora, link

ALICE = ChatIdentity("test", "T1", "U-ALICE")
BOB = ChatIdentity("test", "T1", "U-BOB")


@pytest.fixture
def admin_credentials(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, tmp_path: Path) -> None:
    """The bot's (or the administrator's) own AWS credentials: the sandbox administrator's static keys."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name, value in sandbox.admin_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("QBOT_Q_ENDPOINT_URL", sandbox.q_url)


def members_at_q(sandbox: Sandbox, group: str) -> list[str]:
    found = sandbox.q.control.index(APP_ID, INDEX_ID).groups.get(("", group))
    return sorted(found.member_users) if found else []


def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def move_bob(sandbox: Sandbox, groups: tuple[str, ...]) -> None:
    """The IdP administrator changes bob's groups (the IdP reads them at every token it issues)."""
    sandbox.directory.add(User("bob", "bob@example.com", "Bob Brown", groups))


def test_group_file_sync_lets_bob_read_core_team_documents(
    bot: RunningBot, admin_credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link(bot, BOB, "bob")
    assert not cites_aurora(bot.ask(BOB, AURORA))
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"core-team": ["alice@example.com", "bob@example.com"]}))
    args = ["admin", "groups", "sync", str(groups), "--state", str(tmp_path / "state.json")]

    assert main([*args, "--application-id", APP_ID]) == 0
    assert "core-team: rewrite with 2 members" in capsys.readouterr().out

    assert cites_aurora(bot.ask(BOB, AURORA, thread="after-sync"))

    groups.write_text(json.dumps({"core-team": ["alice@example.com"]}))
    assert main([*args, "--application-id", APP_ID]) == 0
    assert "- bob@example.com" in capsys.readouterr().out
    assert not cites_aurora(bot.ask(BOB, AURORA, thread="after-removal"))


def test_automatic_sync_follows_the_groups_claim_at_link_and_refresh(
    make_bot: Callable[..., RunningBot], sandbox: Sandbox, admin_credentials: None
) -> None:
    bot = make_bot(QBOT_GROUP_SYNC="true", QBOT_Q_INDEX_ID=INDEX_ID, QBOT_GROUP_SYNC_DEBOUNCE_SECONDS="0.05")
    link(bot, ALICE, "alice")
    move_bob(sandbox, ("sales", "core-team"))
    link(bot, BOB, "bob")  # the id_token at link says core-team

    eventually(lambda: members_at_q(sandbox, "core-team") == ["alice@example.com", "bob@example.com"])
    assert cites_aurora(bot.ask(BOB, AURORA))
    assert cites_aurora(bot.ask(ALICE, AURORA))

    move_bob(sandbox, ("sales",))
    bot.run(bot.graph.broker.forget(BOB))  # credentials expire: the next question refreshes at the IdP
    bot.ask(BOB, "How many vacation days do I get?")
    eventually(lambda: members_at_q(sandbox, "core-team") == ["alice@example.com"])
    assert not cites_aurora(bot.ask(BOB, AURORA, thread="after-refresh"))


def test_automatic_sync_catches_up_after_a_crash(
    make_bot: Callable[..., RunningBot], sandbox: Sandbox, admin_credentials: None, redis_url: str
) -> None:
    # A bot whose drainer never gets to write (it "crashes" right after recording the change in Redis).
    first = make_bot(QBOT_GROUP_SYNC="true", QBOT_Q_INDEX_ID=INDEX_ID, QBOT_GROUP_SYNC_DEBOUNCE_SECONDS="60")
    move_bob(sandbox, ("sales", "core-team"))
    link(first, BOB, "bob")
    link(first, ALICE, "alice")
    sync: Any = first.graph.group_sync
    first.run(sync.stop())
    assert sandbox.q.stats.put_group_calls == 0
    assert not cites_aurora(first.ask(BOB, AURORA))

    make_bot(QBOT_GROUP_SYNC="true", QBOT_Q_INDEX_ID=INDEX_ID)  # the restart drains what was left

    eventually(lambda: members_at_q(sandbox, "core-team") == ["alice@example.com", "bob@example.com"])
    assert cites_aurora(first.ask(BOB, AURORA, thread="after-restart"))
