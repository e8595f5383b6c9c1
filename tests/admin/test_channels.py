"""`qbot admin channels set|unset|list` through the command line entry point, against a real Redis: what the
command writes is what a bot reads; bad input exits 2 with a clear message and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.channel_policy import KEY
from qbot.cli import main

ONE_SOURCE = {"equalsTo": {"name": "_data_source_id", "value": {"stringValue": "ds-wiki"}}}


@pytest.fixture
def store(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The deployment's Redis, as the bot would read it; QBOT_REDIS_URL points the command at it."""
    monkeypatch.setenv("QBOT_REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def qbot(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout, stderr of `qbot admin channels ARGV` (argparse's own refusals included)."""
    try:
        code = main(["admin", "channels", *argv])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def stored(store: redis.Redis) -> dict[str, dict[str, object]]:
    return {str(field): json.loads(raw) for field, raw in store.hgetall(KEY).items()}


def test_set_list_unset(store: redis.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    assert qbot(capsys, "list")[:2] == (0, "no channel has a policy: every channel follows QBOT_CHANNEL_REPLY_MODE\n")

    code, out, _ = qbot(capsys, "set", "slack:C0GENERAL", "--reply", "thread")
    assert (code, out) == (0, "slack:C0GENERAL  reply=thread  chat-mode=default  attribute-filter=none\n")
    code, out, _ = qbot(capsys, "set", "teams:19:general@thread.tacv2", "--reply", "private",
                        "--attribute-filter", json.dumps(ONE_SOURCE), "--chat-mode", "RETRIEVAL_MODE")
    assert code == 0
    assert stored(store) == {
        "slack:C0GENERAL": {"reply": "thread"},
        "teams:19%3Ageneral%40thread.tacv2": {"reply": "private", "attribute_filter": ONE_SOURCE,
                                              "chat_mode": "RETRIEVAL_MODE"},
    }

    code, out, _ = qbot(capsys, "list")
    assert code == 0
    assert out.splitlines() == [
        "slack:C0GENERAL  reply=thread  chat-mode=default  attribute-filter=none",
        "teams:19:general@thread.tacv2  reply=private  chat-mode=RETRIEVAL_MODE  attribute-filter="
        '{"equalsTo":{"name":"_data_source_id","value":{"stringValue":"ds-wiki"}}}',
    ]

    code, out, _ = qbot(capsys, "unset", "slack:C0GENERAL")
    assert (code, out) == (0, "slack:C0GENERAL: policy removed (the channel follows the defaults)\n")
    assert list(stored(store)) == ["teams:19%3Ageneral%40thread.tacv2"]
    code, out, _ = qbot(capsys, "unset", "slack:C0GENERAL")
    assert (code, out) == (0, "slack:C0GENERAL had no policy: nothing changed\n")


def test_set_keeps_what_it_is_not_told_and_default_removes_a_setting(
    store: redis.Redis, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A careful admin's expectation: `set --chat-mode` alone does not reset the channel's --reply."""
    assert qbot(capsys, "set", "slack:C0GENERAL", "--reply", "thread")[0] == 0
    filter_file = tmp_path / "wiki-only.json"
    filter_file.write_text(json.dumps(ONE_SOURCE))

    assert qbot(capsys, "set", "slack:C0GENERAL", "--chat-mode", "CREATOR_MODE")[0] == 0
    assert qbot(capsys, "set", "slack:C0GENERAL", "--attribute-filter", f"@{filter_file}")[0] == 0
    assert stored(store) == {"slack:C0GENERAL": {"reply": "thread", "chat_mode": "CREATOR_MODE",
                                                 "attribute_filter": ONE_SOURCE}}

    assert qbot(capsys, "set", "slack:C0GENERAL", "--reply", "default", "--attribute-filter", "default")[0] == 0
    assert stored(store) == {"slack:C0GENERAL": {"chat_mode": "CREATOR_MODE"}}

    code, out, _ = qbot(capsys, "set", "slack:C0GENERAL", "--chat-mode", "default")
    assert (code, out) == (0, "slack:C0GENERAL: nothing left set, policy removed (the channel follows the "
                              "defaults)\n")
    assert stored(store) == {}


REFUSED = [
    (["set", "slack:#general", "--reply", "thread"], "'#general' is not a Slack channel id"),
    (["set", "web:console", "--reply", "thread"], "the web console has no shared places"),
    (["set", "slack", "--reply", "thread"], "is not PLATFORM:CHANNEL"),
    (["set", "slack:C0GENERAL", "--reply", "ephemeral"], "invalid choice: 'ephemeral'"),
    (["set", "slack:C0GENERAL", "--chat-mode", "EXPERT_MODE"], "invalid choice: 'EXPERT_MODE'"),
    (["set", "slack:C0GENERAL", "--chat-mode", "PLUGIN_MODE"], "PLUGIN_MODE needs the plugin to ask"),
    (["set", "slack:C0GENERAL"], "nothing to set: give --reply, --attribute-filter, --chat-mode or --plugin"),
    (["set", "slack:C0GENERAL", "--attribute-filter", "{equalsTo"], "--attribute-filter is not JSON"),
    (["set", "slack:C0GENERAL", "--attribute-filter", "[]"], "must be a JSON object (a Q Business AttributeFilter), "
                                                            "not list"),
    (["set", "slack:C0GENERAL", "--attribute-filter", "{}"], "must be a non-empty JSON object"),
    (["set", "slack:C0GENERAL", "--attribute-filter", '{"equalTo": {}}'], "not a Q Business AttributeFilter"),
    (["set", "slack:C0GENERAL", "--attribute-filter", "@/nonexistent/wiki.json"], "cannot read the attribute "
                                                                                  "filter file /nonexistent/wiki.json"),
    (["set", "slack:C0GENERAL", "--reply", "private", "--attribute-filter",
      json.dumps({"orAllFilters": [ONE_SOURCE] * 200})], "at most 8192 are kept"),
]


@pytest.mark.parametrize(("argv", "problem"), REFUSED, ids=[p for _, p in REFUSED])
def test_bad_input_exits_2_with_the_problem_and_writes_nothing(
    store: redis.Redis, capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    assert qbot(capsys, "set", "slack:C0GENERAL", "--chat-mode", "RETRIEVAL_MODE")[0] == 0
    before = store.hgetall(KEY)

    code, out, err = qbot(capsys, *argv)

    assert code == 2
    assert problem in err, err
    assert out == ""
    assert store.hgetall(KEY) == before


def test_without_qbot_redis_url_the_command_says_where_policies_live(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QBOT_REDIS_URL", raising=False)
    code, _, err = qbot(capsys, "set", "slack:C0GENERAL", "--reply", "thread")
    assert code == 2
    assert "QBOT_REDIS_URL is unset" in err
    assert "embedded Redis a `qbot serve` without QBOT_REDIS_URL starts cannot be reached from another process" in err


def test_a_qbot_redis_url_that_is_not_one_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBOT_REDIS_URL", "http://127.0.0.1:6379")
    code, _, err = qbot(capsys, "list")
    assert code == 2 and "qbot admin channels list: QBOT_REDIS_URL is not a Redis URL" in err


def test_an_unreachable_redis_fails_with_where_it_was_looked_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, refused_url: str
) -> None:
    where = refused_url.removeprefix("http://")
    monkeypatch.setenv("QBOT_REDIS_URL", f"redis://:hunter2@{where}/0")
    code, _, err = qbot(capsys, "list")
    assert code == 1
    assert f"qbot admin channels list: Redis at {where} failed" in err and "check QBOT_REDIS_URL" in err
    assert "hunter2" not in err


def test_list_shows_a_stored_policy_that_does_not_parse_and_fails_and_unset_removes_it(
    store: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert qbot(capsys, "set", "slack:C0GENERAL", "--reply", "thread")[0] == 0
    store.hset(KEY, "slack:C0RANDOM", '{"reply": "ephemeral"}')
    store.hset(KEY, "slack:%23general", '{"reply": "thread"}')  # written by hand: a name, not an id

    code, out, _ = qbot(capsys, "list")

    assert code == 1
    assert out.splitlines() == [
        "slack:#general  reply=thread  chat-mode=default  attribute-filter=none",
        "slack:C0GENERAL  reply=thread  chat-mode=default  attribute-filter=none",
        "slack:C0RANDOM  UNREADABLE: the stored policy of slack:C0RANDOM does not parse: reply must be thread or "
        "private, not 'ephemeral'; `qbot admin channels unset slack:C0RANDOM` removes it",
    ]
    assert qbot(capsys, "set", "slack:C0RANDOM", "--chat-mode", "RETRIEVAL_MODE")[0] == 2  # unset it first
    assert qbot(capsys, "unset", "slack:C0RANDOM")[0] == 0
    assert qbot(capsys, "unset", "slack:#general")[0] == 0  # what `set` refuses can still be removed
    assert list(stored(store)) == ["slack:C0GENERAL"]
    assert qbot(capsys, "list")[0] == 0


def test_plugin_mode_names_its_plugin_and_another_mode_drops_it(
    store: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = qbot(capsys, "set", "slack:C0TICKETS", "--chat-mode", "PLUGIN_MODE")
    assert code == 2 and "PLUGIN_MODE needs the plugin to ask (--plugin NAME)" in err and stored(store) == {}
    code, out, _ = qbot(capsys, "set", "slack:C0TICKETS", "--chat-mode", "PLUGIN_MODE", "--plugin", "jira")
    assert (code, out) == (0, "slack:C0TICKETS  reply=default  chat-mode=PLUGIN_MODE  plugin=jira  "
                              "attribute-filter=none\n")
    assert stored(store) == {"slack:C0TICKETS": {"chat_mode": "PLUGIN_MODE", "plugin": "jira"}}
    code, out, _ = qbot(capsys, "set", "slack:C0TICKETS", "--chat-mode", "RETRIEVAL_MODE")
    assert code == 0 and stored(store) == {"slack:C0TICKETS": {"chat_mode": "RETRIEVAL_MODE"}}
