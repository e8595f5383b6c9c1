"""Files sent in personal chat reach ChatSync as attachments, under the same limits as every adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.teams.activities import FileOffer
from adapters.teams.files import NOT_FROM_MICROSOFT, FileHosts, download
from adapters.teams.settings import TeamsSettings
from bot.attachments import MAX_FILE_BYTES, MAX_FILES, DownloadBudget, FileAllowance, read_files
from bot.config import Settings
from bot.errors import ConfigError
from bot.model import ChatFile, FailedAttachment, OfferedFile
from sandbox.botframework import FakeBotFramework
from sandbox.serving import Served, bind
from tests.adapters.teams.conftest import ALICE, TeamsBot, questions_seen_by_q, teams_env

FILE_INFO = "application/vnd.microsoft.teams.file.download.info"


async def fetch_files(
    http: aiohttp.ClientSession, offers: list[FileOffer], hosts: FileHosts, allowance: FileAllowance
) -> tuple[tuple[ChatFile, ...], tuple[FailedAttachment, ...]]:
    """Teams' files read as the core reads them: its policy and budget, the adapter's download."""
    offered = [OfferedFile(offer.name, None, None, str(n)) for n, offer in enumerate(offers)]
    return await read_files(
        offered, allowance, lambda file, room: download(http, offers[int(file.ref)], hosts, room)
    )


def _file(teams: TeamsBot, name: str, data: bytes | None = None) -> dict[str, Any]:
    if data is not None:
        teams.bf.files[name] = data
    return {
        "contentType": FILE_INFO,
        "name": name,
        "contentUrl": f"https://contoso.sharepoint.com/personal/alice/Documents/{name}",
        "content": {
            "downloadUrl": f"{teams.bf.url}/files/{name}",
            "uniqueId": name,
            "fileType": name.rsplit(".", 1)[-1],
        },
    }


def _notes(card: dict[str, Any]) -> str:
    return "\n".join(b["text"] for b in card["body"] if b.get("isSubtle"))


def test_a_file_in_personal_chat_reaches_chatsync_and_problems_are_noted(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    note = b"Zephyr budget memo: the Zephyr project has a budget of 42 thousand euros for 2026."
    attachments = [
        _file(teams, "zephyr.txt", note),
        _file(teams, "setup.exe", b"MZ..."),
        _file(teams, "huge.txt", b"x" * (MAX_FILE_BYTES + 1)),
        _file(teams, "missing.md"),  # the download link answers 404
        {"contentType": "image/png", "name": "screenshot.png", "contentUrl": "https://smba.example/img"},
    ]
    answer = teams.answer(teams.message(ALICE, "What is the Zephyr budget?", attachments=attachments))
    card = answer.cards[-1]
    text = "\n".join(b["text"] for b in card["body"])
    assert "42" in text  # answered from the attached file
    notes = _notes(card)
    assert "setup.exe" in notes and "aren't supported" in notes
    assert "huge.txt" in notes and "MB limit" in notes
    assert "missing.md" in notes and "HTTP 404" in notes
    assert "screenshot.png" in notes and "images" in notes
    (conversation,) = teams.sandbox.q.conversations.of("5a4db0a1-1b0e-4f43-9d5c-0e7f3b6a2c11", ALICE.email)
    user_message = next(m for m in conversation.messages if m.type == "USER")
    assert [a.get("name") for a in user_message.attachments] == ["zephyr.txt"]


def test_file_only_message_is_summarized_and_limits_hold(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    names = [f"note{n}.md" for n in range(MAX_FILES + 2)]
    attachments = [_file(teams, name, f"# Note {name}\nThe Zephyr codename is {name}.".encode()) for name in names]
    answer = teams.answer(teams.message(ALICE, "", attachments=attachments))
    notes = _notes(answer.cards[-1])
    for skipped in names[MAX_FILES:]:
        assert skipped in notes and f"at most {MAX_FILES} files" in notes
    assert questions_seen_by_q(teams.sandbox, ALICE.email) == [""]  # the files alone are the question
    fetched = [c.activity_id for c in teams.bf.calls if c.kind == "file"]
    assert sorted(fetched) == sorted(names[:MAX_FILES])  # files past the limit are never downloaded


def test_files_in_channels_are_not_read(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    attachment = {"contentType": "reference", "name": "plan.docx", "contentUrl": "https://contoso.sharepoint.com/x"}
    answer = teams.answer(
        teams.message(ALICE, "What is Project Aurora?", scope="channel", mention=True, attachments=[attachment])
    )
    assert "plan.docx" in _notes(answer.cards[-1]) and "private chat" in _notes(answer.cards[-1])
    assert not [c for c in teams.bf.calls if c.kind == "file"]


def test_a_download_link_outside_microsofts_file_hosts_is_not_fetched(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    teams.bf.files["plan.txt"] = b"The Zephyr budget is 42 thousand euros."
    elsewhere = {**_file(teams, "notes.txt"), "content": {"downloadUrl": "https://files.evil.example/notes.txt"}}
    answer = teams.answer(
        teams.message(ALICE, "What is the Zephyr budget?", attachments=[elsewhere, _file(teams, "plan.txt")])
    )
    notes = _notes(answer.cards[-1])
    assert "notes.txt" in notes and "Microsoft's file storage" in notes
    assert [c.activity_id for c in teams.bf.calls if c.kind == "file"] == ["plan.txt"]


async def test_outside_development_mode_only_https_microsoft_hosts_are_fetched() -> None:
    """The review made the bot fetch a loopback admin page and quote its secret: a bot that checks tokens
    (not anonymous) fetches downloadUrls only over https from the allowed hosts; the user is told why not."""
    fetched: list[str] = []

    async def admin(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.Response(text="ADMIN_SECRET=hunter2")

    app = web.Application()
    app.router.add_get("/{tail:.*}", admin)
    admin_page = Served(app, bind("127.0.0.1", 0))
    await admin_page.start()
    production = FileHosts(TeamsSettings.from_settings(Settings.from_env({})).file_hosts)
    try:
        offers = [
            FileOffer("admin.txt", f"{admin_page.url}/admin.txt"),
            FileOffer("localhost.txt", admin_page.url.replace("127.0.0.1", "localhost") + "/x.txt"),
        ]
        budget = DownloadBudget(MAX_FILES * MAX_FILE_BYTES, MAX_FILES * MAX_FILE_BYTES, 1)
        async with aiohttp.ClientSession() as http, budget.turn("teams:t:alice") as allowance:
            files, notes = await fetch_files(http, offers, production, allowance)
        assert files == ()
        assert {n.name: n.error for n in notes} == {o.name: NOT_FROM_MICROSOFT for o in offers}
        assert fetched == []
        async with aiohttp.ClientSession() as http, budget.turn("teams:t:alice") as allowance:
            files, notes = await fetch_files(http, offers, FileHosts(development=True), allowance)
        assert [f.data for f in files] == [b"ADMIN_SECRET=hunter2"] * 2  # what anonymous (local) mode allows
    finally:
        await admin_page.stop()
        admin_page.sock.close()
    assert budget.held == 0
    assert production.allows("https://contoso-my.sharepoint.com/personal/alice/_layouts/15/download.aspx?x=1")
    assert production.allows("https://contoso.sharepoint.com:443/sites/x/a.docx")
    for refused in (
        "http://contoso-my.sharepoint.com/a.txt",  # not over plain http
        "https://contoso-my.sharepoint.com:8443/a.txt",
        "https://sharepoint.com.evil.example/a.txt",
        "https://evilsharepoint.com/a.txt",
        "https://graph.microsoft.com/v1.0/me/drive",  # not on the default list
        "ftp://contoso.sharepoint.com/a.txt",
        "https://[::1/a.txt",
    ):
        assert not production.allows(refused), refused
    hosts = "files.contoso.com, *.sharepoint.us"
    custom = TeamsSettings.from_settings(Settings.from_env({"QBOT_TEAMS_FILE_HOSTS": hosts}))
    assert FileHosts(custom.file_hosts).allows("https://files.contoso.com/a.txt")
    assert FileHosts(custom.file_hosts).allows("https://x.sharepoint.us/a.txt")
    assert not FileHosts(custom.file_hosts).allows("https://x.sharepoint.com/a.txt")
    with pytest.raises(ConfigError):
        TeamsSettings.from_settings(Settings.from_env({"QBOT_TEAMS_FILE_HOSTS": "https://x.sharepoint.com/"}))


def test_files_take_the_most_a_file_may_be_from_the_budget_until_read(
    make_teams: Callable[..., TeamsBot], bot_framework: FakeBotFramework
) -> None:
    """Teams says no size up front: each file holds the per-file maximum (10 MB) of its user's 20 MB until it
    has been read, so the third file of one message is left out, with a note; all room is back afterwards."""
    teams = make_teams(**teams_env(bot_framework, QBOT_FILE_BUDGET_PER_USER_MB="20"))
    teams.linked(ALICE)
    names = ["a.txt", "b.txt", "c.txt"]
    attachments = [_file(teams, name, f"{name}: the Zephyr codename is BLUEBIRD.".encode()) for name in names]
    answer = teams.answer(teams.message(ALICE, "What is the Zephyr codename?", attachments=attachments))
    assert "c.txt: not read: the files of one message may total at most 20 MB" in _notes(answer.cards[-1])
    assert sorted(c.activity_id for c in teams.bf.calls if c.kind == "file") == ["a.txt", "b.txt"]
    assert teams.bot.graph.core.downloads.held == 0
