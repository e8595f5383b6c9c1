"""The turn port: the core drives every platform's message the same way through a small `Turn`.

The turn here is a stand-in for a chat platform (it records what the core asked of it), wired to a whole bot
with real Redis, the sandbox IdP, STS and Q Business.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet

from bot.attachments import FileRoom
from bot.core import NOTHING_READABLE
from bot.model import (
    Answer,
    ChatFile,
    ChatIdentity,
    FailedAttachment,
    IncomingMessage,
    Notice,
    NoticeKind,
    OfferedFile,
    ProfileEmail,
)
from sandbox.world import Sandbox
from tests.e2e.conftest import RunningBot
from tests.e2e.test_chain import AURORA, link

ALICE = ChatIdentity("test", "T1", "U-ALICE")
ZEPHYR = b"Project Zephyr's launch codename is BLUEBIRD."


@dataclass
class PlatformTurn:
    """A chat platform as the core sees it: progress, the profile's email, files on demand."""

    sandbox: Sandbox
    email: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    progress: list[bool] = field(default_factory=list)  # the `private` of every progress shown
    chats_before_download: list[int] = field(default_factory=list)
    failing_progress: bool = False
    signs_in_itself: bool = False

    async def show_progress(self, *, private: bool) -> None:
        self.progress.append(private)
        if self.failing_progress:
            raise ConnectionError("the platform is down")

    async def profile_email(self) -> ProfileEmail:
        return ProfileEmail(self.email, "" if self.email else "the profile hides its email")

    async def download(self, file: OfferedFile, room: FileRoom) -> ChatFile | FailedAttachment:
        self.chats_before_download.append(sum(self.sandbox.q.stats.chat_calls.values()))
        data = self.files[file.ref]
        if refusal := room.refuse(len(data)):
            return FailedAttachment(file.name, refusal)
        return ChatFile(file.name, data, "text/plain")


def message(text: str, *, thread: str = "t1", message_id: str = "m1", **fields: Any) -> IncomingMessage:
    return IncomingMessage(ALICE, text, channel="c1", thread=thread, message_id=message_id, **fields)


def test_files_are_read_only_when_it_is_their_messages_turn(bot: RunningBot) -> None:
    """Two messages in one thread: the second's file is read after the first was answered, not while waiting,
    so a message waiting for its turn holds no file bytes."""
    link(bot, ALICE, "alice")
    bot.sandbox.q.faults.delay_seconds = 0.3
    turn = PlatformTurn(bot.sandbox, files={"0": ZEPHYR})
    offered = (OfferedFile("zephyr.txt", len(ZEPHYR), None, "0"),)

    async def both() -> list[Any]:
        first = asyncio.create_task(bot.core.handle(message("What is Zephyr's codename?", offered=offered), turn))
        await asyncio.sleep(0.05)  # the first holds the thread's turn
        second = bot.core.handle(message("And its codename?", message_id="m2", offered=offered), turn)
        return list(await asyncio.gather(first, second))

    replies = bot.run(both())
    assert all(isinstance(r, Answer) and "BLUEBIRD" in r.text for r in replies), replies
    assert turn.chats_before_download == [0, 1]
    assert bot.core.downloads.held == 0 and bot.core.downloads.high_water == len(ZEPHYR)


def test_an_unlinked_asker_sees_no_progress_and_no_file_is_read(bot: RunningBot) -> None:
    turn = PlatformTurn(bot.sandbox, files={"0": ZEPHYR})
    reply = bot.run(bot.core.handle(message(AURORA, offered=(OfferedFile("z.txt", 10, None, "0"),)), turn))
    assert isinstance(reply, Notice) and reply.kind is NoticeKind.NOT_LINKED and reply.private
    assert turn.progress == [] and turn.chats_before_download == []


def test_answers_in_shared_places_follow_the_reply_mode(make_bot: Any) -> None:
    keys = Fernet.generate_key().decode()  # two bots (processes) of one deployment
    private_bot = make_bot(QBOT_CHANNEL_REPLY_MODE="ephemeral", QBOT_TOKEN_KEYS=keys)
    link(private_bot, ALICE, "alice")
    turn = PlatformTurn(private_bot.sandbox)
    shared = private_bot.run(private_bot.core.handle(message(AURORA, shared=True), turn))
    direct = private_bot.run(private_bot.core.handle(message(AURORA, message_id="m2"), turn))
    assert isinstance(shared, Answer) and shared.private
    assert isinstance(direct, Answer) and not direct.private
    assert turn.progress == [True, False]  # the progress of a private answer is private too
    new = private_bot.run(private_bot.core.handle(message("qnew", message_id="m3", shared=True), turn))
    assert isinstance(new, Notice) and new.private  # where answers are private, so is everything said

    thread_bot = make_bot(QBOT_CHANNEL_REPLY_MODE="thread", QBOT_TOKEN_KEYS=keys)
    in_thread = thread_bot.run(thread_bot.core.handle(message(AURORA, message_id="m4", shared=True), turn))
    assert isinstance(in_thread, Answer) and not in_thread.private


def test_a_delivery_is_handled_once(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    turn = PlatformTurn(bot.sandbox)
    once = message(AURORA, delivery_ids=("event:Ev1", "message:c1:m1"))
    first = bot.run(bot.core.handle(once, turn))
    again = bot.run(bot.core.handle(message(AURORA, delivery_ids=("event:Ev2", "message:c1:m1")), turn))
    assert isinstance(first, Answer) and again is None
    assert sum(bot.sandbox.q.stats.chat_calls.values()) == 1


def test_files_that_cannot_be_read_are_said_and_nothing_is_asked(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    turn = PlatformTurn(bot.sandbox)
    offered = (OfferedFile("photo.png", 10, None, "0"), OfferedFile("chan.docx", None, "not read: in a channel", "1"))
    reply = bot.run(bot.core.handle(message("", offered=offered), turn))
    assert isinstance(reply, Notice) and reply.text == NOTHING_READABLE
    assert [f.name for f in reply.failed_attachments] == ["photo.png", "chan.docx"]
    assert "aren't supported" in reply.failed_attachments[0].error
    assert sum(bot.sandbox.q.stats.chat_calls.values()) == 0


def test_progress_that_fails_does_not_lose_the_answer(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    turn = PlatformTurn(bot.sandbox, failing_progress=True)
    reply = bot.run(bot.core.handle(message(AURORA), turn))
    assert isinstance(reply, Answer) and turn.progress == [False]


def test_qlink_reads_the_profile_email_through_the_turn(bot: RunningBot) -> None:
    with_email = bot.run(bot.core.handle(message("qlink"), PlatformTurn(bot.sandbox, email="alice@example.com")))
    assert isinstance(with_email, Notice) and with_email.kind is NoticeKind.LINK and with_email.url
    without = bot.run(bot.core.handle(message("qlink", message_id="m2"), PlatformTurn(bot.sandbox)))
    assert isinstance(without, Notice) and without.url is None and without.private
    assert "the profile hides its email" in without.text
