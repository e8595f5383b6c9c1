"""File downloads: the bot token goes only to Slack, sizes are capped while reading, every skip is explained."""

from __future__ import annotations

import aiohttp

from adapters.slack.files import SlackFiles
from adapters.slack.replies import SlackReplies
from bot.attachments import MAX_FILE_BYTES
from tests.adapters.slack.fake_slack import BOT_TOKEN, FakeSlack


def _files(fake: FakeSlack) -> SlackFiles:
    return SlackFiles(bot_token=BOT_TOKEN, api_url=fake.api_url())


def test_the_bot_token_is_only_sent_to_slack() -> None:
    files = SlackFiles(bot_token=BOT_TOKEN, api_url="https://slack.com/api/")
    assert files.may_carry_token("https://files.slack.com/files-pri/T1-F1/download/a.txt")
    assert not files.may_carry_token("http://files.slack.com/files-pri/T1-F1/a.txt")  # not over plain http
    assert not files.may_carry_token("https://files.slack.com.evil.example/a.txt")
    assert not files.may_carry_token("https://evil.example/?https://files.slack.com/")
    replies = SlackReplies(None, api_url="https://slack.com/api/")  # type: ignore[arg-type]
    assert replies._is_slack("https://hooks.slack.com/commands/T1/1/abc")
    assert not replies._is_slack("https://hooks.slack.com.evil.example/commands")


async def test_downloads_are_capped_while_reading_and_failures_are_explained(fake_slack: FakeSlack) -> None:
    small = fake_slack.add_file("F1", "a.txt", b"hello")
    liar = fake_slack.add_file("F2", "big.csv", b"x" * (MAX_FILE_BYTES + 1))
    liar["size"] = 10  # Slack's metadata says small; the bytes say otherwise
    missing = fake_slack.add_file("F3", "gone.md", b"")
    del fake_slack.files["F3"]
    elsewhere = {**fake_slack.add_file("F4", "b.txt", b"x"), "url_private_download": "https://evil.example/b.txt"}
    many = [fake_slack.add_file(f"M{n}", f"m{n}.txt", b"m") for n in range(5)]
    async with aiohttp.ClientSession() as session:
        fetched = await _files(fake_slack).fetch(session, [small, liar, missing, elsewhere, *many])
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
    async with aiohttp.ClientSession() as session:
        fetched = await SlackFiles(bot_token="xoxb-wrong", api_url=fake_slack.api_url()).fetch(session, [shared])
    assert fetched.files == () and "files:read" in fetched.skipped[0].error
