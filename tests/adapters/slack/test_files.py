"""File downloads: the bot token goes only to Slack, sizes are capped while reading, every skip is explained."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from adapters.slack.files import SlackFiles, offered
from adapters.slack.replies import SlackReplies
from adapters.slack.settings import SlackSettings
from bot.attachments import MAX_FILE_BYTES, DownloadBudget, read_files
from bot.errors import ConfigError
from bot.model import ChatFile, FailedAttachment
from sandbox.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack
from tests.adapters.slack.conftest import SlackBot


def _files(fake: FakeSlack) -> SlackFiles:
    return SlackFiles(bot_token=BOT_TOKEN, api_url=fake.api_url())


@dataclass
class Fetched:
    files: tuple[ChatFile, ...]
    skipped: tuple[FailedAttachment, ...]


async def _fetch(files: SlackFiles, shared: list[dict[str, Any]]) -> Fetched:
    """Slack's files read as the core reads them: chosen by the core's policy, downloaded by the adapter."""
    budget = DownloadBudget(100 * MAX_FILE_BYTES, 100 * MAX_FILE_BYTES, 1)
    async with aiohttp.ClientSession() as session, budget.turn("U1") as allowance:
        read, skipped = await read_files(
            offered(shared), allowance, lambda file, room: files.download(session, shared[int(file.ref)], room)
        )
    assert budget.held == 0
    return Fetched(read, skipped)


def test_the_bot_token_is_only_sent_to_slack() -> None:
    files = SlackFiles(bot_token=BOT_TOKEN, api_url="https://slack.com/api/")
    assert files.may_carry_token("https://files.slack.com/files-pri/T1-F1/download/a.txt")
    assert not files.may_carry_token("http://files.slack.com/files-pri/T1-F1/a.txt")  # not over plain http
    assert not files.may_carry_token("https://files.slack.com.evil.example/a.txt")
    assert not files.may_carry_token("https://evil.example/?https://files.slack.com/")
    replies = SlackReplies(None, api_url="https://slack.com/api/")  # type: ignore[arg-type]
    assert replies._is_slack("https://hooks.slack.com/commands/T1/1/abc")
    assert not replies._is_slack("https://hooks.slack.com.evil.example/commands")


def test_the_configured_api_origin_is_compared_by_scheme_host_and_port() -> None:
    """The fake Slack of the tests is the configured Web API: only its exact origin may have the token."""
    files = SlackFiles(bot_token=BOT_TOKEN, api_url="http://127.0.0.1:4567/api/")
    replies = SlackReplies(None, api_url="http://127.0.0.1:4567/api/")  # type: ignore[arg-type]
    for trusts in (files.may_carry_token, replies._is_slack):
        assert trusts("http://127.0.0.1:4567/files-pri/T1-F1/download/a.txt")
        assert not trusts("http://127.0.0.1:80/files-pri/T1-F1/download/a.txt")  # another port, same host
        assert not trusts("http://127.0.0.1/files-pri/T1-F1/download/a.txt")
        assert not trusts("https://127.0.0.1:4567/files-pri/T1-F1/download/a.txt")  # another scheme
        assert not trusts("http://127.0.0.1:notaport/a.txt")
    slack = SlackSettings(bot_token=BOT_TOKEN)
    files = SlackFiles(bot_token=BOT_TOKEN, api_url=slack.api_url)
    assert files.may_carry_token("https://files.slack.com:443/files-pri/T1-F1/download/a.txt")
    assert not files.may_carry_token("https://files.slack.com:8443/files-pri/T1-F1/download/a.txt")
    assert not files.may_carry_token("http://slack.com/api/files.info")  # the API's host, but in clear text


def test_a_web_api_url_in_clear_text_is_refused_beyond_loopback() -> None:
    env = {"QBOT_SLACK_BOT_TOKEN": BOT_TOKEN, "QBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET}
    with pytest.raises(ConfigError, match="https"):
        SlackSettings.from_env({**env, "QBOT_SLACK_API_URL": "http://slack.example.com/api/"})
    local = SlackSettings.from_env({**env, "QBOT_SLACK_API_URL": "http://127.0.0.1:4567/api"})
    assert local is not None and local.api_url == "http://127.0.0.1:4567/api/"


async def test_downloads_are_capped_while_reading_and_failures_are_explained(fake_slack: FakeSlack) -> None:
    small = fake_slack.add_file("F1", "a.txt", b"hello")
    liar = fake_slack.add_file("F2", "big.csv", b"x" * (MAX_FILE_BYTES + 1))
    liar["size"] = 10  # Slack's metadata says small; the bytes say otherwise
    missing = fake_slack.add_file("F3", "gone.md", b"")
    del fake_slack.files["F3"]
    elsewhere = {**fake_slack.add_file("F4", "b.txt", b"x"), "url_private_download": "https://evil.example/b.txt"}
    many = [fake_slack.add_file(f"M{n}", f"m{n}.txt", b"m") for n in range(5)]
    fetched = await _fetch(_files(fake_slack), [small, liar, missing, elsewhere, *many])
    assert [f.name for f in fetched.files] == ["a.txt", "m0.txt"] and fetched.files[0].data == b"hello"
    reasons = {f.name: f.error for f in fetched.skipped}
    assert "10 MB" in reasons["big.csv"]
    assert "HTTP 404" in reasons["gone.md"]
    assert "did not share" in reasons["b.txt"]
    assert all("at most 5 files" in reasons[f"m{n}.txt"] for n in range(1, 5))
    assert all(call.token == BOT_TOKEN for call in fake_slack.calls_to("file"))
    assert "F4" not in {call.args["id"] for call in fake_slack.calls_to("file")}


async def test_a_download_slack_refuses_is_explained(fake_slack: FakeSlack) -> None:
    shared = fake_slack.add_file("F1", "a.pdf", b"%PDF", "application/pdf")
    fetched = await _fetch(SlackFiles(bot_token="xoxb-wrong", api_url=fake_slack.api_url()), [shared])
    assert fetched.files == () and "files:read" in fetched.skipped[0].error


KIB = 1024


def _big_file(fake: FakeSlack, file_id: str, size: int) -> dict[str, object]:
    line = f"File {file_id}: the Zephyr launch codename is BLUEBIRD.\n".encode()
    return fake.add_file(file_id, f"{file_id}.txt", (line * (size // len(line) + 1))[:size])


def _notes(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks") or [])


def test_a_burst_of_big_files_never_holds_more_than_the_budget(make_slack_bot: Callable[..., SlackBot]) -> None:
    """Six DMs at once, three users, 900 KiB of files each, a budget of 2 MiB (1 MiB per user): every DM is
    answered from its files, yet never more than two messages' files are held (by the bot: its budget's
    high-water mark; and as Q sees it: ChatSyncs with files in flight at once). Before, all six were."""
    slack = make_slack_bot(
        QBOT_FILE_BUDGET_MB="2", QBOT_FILE_BUDGET_PER_USER_MB="1", QBOT_FILE_WAIT_SECONDS="120"
    )
    users = {"U_ALICE": "alice", "U_BOB": "bob", "U_CAROL": "carol"}
    for user, username in users.items():
        slack.linked(user, username)
    slack.sandbox.q.faults.delay_seconds = 0.5
    asked = []
    for round_ in range(2):
        for user in users:
            files = [_big_file(slack.fake, f"F{user}{round_}{n}", 300 * KIB) for n in range(3)]
            asked.append((user, slack.dm(user, "What is the Zephyr launch codename?", files=files)))
    for user, ts in asked:
        answer = slack.answer_in("D" + user, ts, timeout=60)
        assert "BLUEBIRD" in answer["text"] and "not read" not in _notes(answer), answer
    assert len(slack.fake.calls_to("file")) == 18
    assert slack.sandbox.q.stats.max_in_flight <= 2
    downloads = slack.graph.core.downloads
    assert 900 * KIB <= downloads.high_water <= 2 * 1024 * KIB
    assert downloads.held == 0  # all given back once the turns ended


def test_files_beyond_the_budget_are_left_out_with_a_note(make_slack_bot: Callable[..., SlackBot]) -> None:
    slack = make_slack_bot(
        QBOT_FILE_BUDGET_MB="1", QBOT_FILE_BUDGET_PER_USER_MB="1", QBOT_FILE_WAIT_SECONDS="0"
    )
    slack.linked("U_ALICE", "alice")
    slack.linked("U_BOB", "bob")
    # More than one user's share in one message: the files past it are not read, and the user is told why.
    files = [_big_file(slack.fake, f"F{n}", 300 * KIB) for n in range(5)]
    answer = slack.answer_in("DU_ALICE", slack.dm("U_ALICE", "What is the Zephyr launch codename?", files=files))
    assert "BLUEBIRD" in answer["text"]
    assert sorted(c.args["id"] for c in slack.fake.calls_to("file")) == ["F0", "F1", "F2"]
    for name in ("F3.txt", "F4.txt"):
        assert f"{name}: not read: the files of one message may total at most 1 MB" in _notes(answer)
    # While alice's files fill the budget (Q holds her answer), bob's file finds no room: said, and his text answered.
    slack.sandbox.q.faults.held.add("alice@example.com")
    files = [_big_file(slack.fake, f"A{n}", 300 * KIB) for n in range(3)]
    alice = slack.dm("U_ALICE", "What is the Zephyr launch codename?", files=files)
    slack.fake.wait_for(lambda: len(slack.fake.calls_to("file")) == 6)
    bob = slack.dm("U_BOB", "What is the Zephyr launch codename?", files=[_big_file(slack.fake, "B0", 300 * KIB)])
    busy = slack.answer_in("DU_BOB", bob, timeout=30)
    assert "B0.txt: not read: I'm busy reading other files right now" in _notes(busy)
    slack.sandbox.q.faults.held.clear()
    assert "BLUEBIRD" in slack.answer_in("DU_ALICE", alice, timeout=30)["text"]
    assert "B0" not in {c.args["id"] for c in slack.fake.calls_to("file")}
    assert slack.graph.core.downloads.held == 0
