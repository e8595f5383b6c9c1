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
    SharedAnswer,
)
from sandbox.world import Sandbox
from tests.conftest import until
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

    def address(self) -> str:
        return "where: the test platform"

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
        await until(lambda: bot.sandbox.q.stats.in_flight == 1)  # the first holds the thread's turn, at Q
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
    private_bot = make_bot(QBOT_CHANNEL_REPLY_MODE="private", QBOT_TOKEN_KEYS=keys)
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


SLACK_ALICE = ChatIdentity("slack", "T1", "U-ALICE")
SLACK_BOB = ChatIdentity("slack", "T1", "U-BOB")


def in_channel(identity: ChatIdentity, text: str, message_id: str, channel: str = "C1") -> IncomingMessage:
    return IncomingMessage(identity, text, channel=channel, thread="1700.1", message_id=message_id, shared=True)


def test_a_channel_policy_set_by_an_admin_applies_at_once_on_every_replica(make_bot: Any, redis_url: str) -> None:
    from redis.asyncio import Redis

    from bot.channel_policy import ChannelPolicies, ChannelPolicy

    keys = Fernet.generate_key().decode()
    one, two = make_bot(QBOT_TOKEN_KEYS=keys), make_bot(QBOT_TOKEN_KEYS=keys)
    link(one, SLACK_ALICE, "alice")
    turn = PlatformTurn(one.sandbox)
    by_default = one.run(one.core.handle(in_channel(SLACK_ALICE, AURORA, "m1"), turn))
    assert isinstance(by_default, Answer) and by_default.private  # private unless the channel says otherwise

    async def admin(policy: ChannelPolicy | None) -> None:  # `qbot admin channels set/unset`, another process
        client = Redis.from_url(redis_url)
        try:
            if policy is None:
                await ChannelPolicies(client).unset("slack", "C1")
            else:
                await ChannelPolicies(client).set("slack", "C1", policy)
        finally:
            await client.aclose()

    one.run(admin(ChannelPolicy(reply="thread")))
    for n, bot in enumerate((one, two)):
        reply = bot.run(bot.core.handle(in_channel(SLACK_ALICE, AURORA, f"m{n + 2}"), turn))
        assert isinstance(reply, Answer) and not reply.private
    other_channel = two.run(two.core.handle(in_channel(SLACK_ALICE, AURORA, "m4", channel="C2"), turn))
    assert isinstance(other_channel, Answer) and other_channel.private
    one.run(admin(None))
    reverted = two.run(two.core.handle(in_channel(SLACK_ALICE, AURORA, "m5"), turn))
    assert isinstance(reverted, Answer) and reverted.private


def test_a_private_answer_is_shared_once_and_only_by_its_asker(bot: RunningBot) -> None:
    link(bot, SLACK_ALICE, "alice")
    link(bot, SLACK_BOB, "bob")
    answer = bot.run(bot.core.handle(in_channel(SLACK_ALICE, AURORA, "m1"), PlatformTurn(bot.sandbox)))
    assert isinstance(answer, Answer) and answer.private
    ids = (answer.conversation_id, answer.message_id)
    by_bob = bot.run(bot.core.share(SLACK_BOB, *ids))
    assert isinstance(by_bob, Notice) and by_bob.kind is NoticeKind.REFUSED and by_bob.private
    shared = bot.run(bot.core.share(SLACK_ALICE, *ids))
    assert isinstance(shared, SharedAnswer)
    assert (shared.channel, shared.thread) == ("C1", "1700.1")
    assert shared.answer.shared_by == SLACK_ALICE and not shared.answer.private
    assert shared.answer.text == answer.text and shared.answer.sources == answer.sources
    again = bot.run(bot.core.share(SLACK_ALICE, *ids))
    assert isinstance(again, Notice) and "already shared" in again.text
    registry = bot.graph.metrics.registry
    assert registry.get_sample_value("qbot_shared_answers_total", {"platform": "slack"}) == 1
