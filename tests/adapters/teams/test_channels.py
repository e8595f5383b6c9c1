"""Channels and group chats: only @mentions are answered; with `QBOT_CHANNEL_REPLY_MODE=thread` in the reply
chain for everyone (answers given privately are in test_private.py); links and private notices never land
where others can see them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sandbox.botframework import FakeBotFramework
from tests.adapters.teams.conftest import (
    ALICE,
    BOB,
    BOT,
    CAROL,
    CHANNEL,
    GROUP_CHAT,
    TEAM,
    TeamsBot,
    next_id,
    questions_seen_by_q,
    sign_in_url,
    teams_env,
)

AURORA = "What is Project Aurora?"


@pytest.fixture
def threaded(make_teams: Callable[..., TeamsBot], bot_framework: FakeBotFramework) -> TeamsBot:
    """A bot whose channels and group chats answer in the thread, for everyone there."""
    return make_teams(**teams_env(bot_framework, QBOT_CHANNEL_REPLY_MODE="thread"))


def _conversation(call) -> str:  # type: ignore[no-untyped-def]
    return str(call.cards[-1]["actions"][0]["data"]["conversation_id"])


def test_channel_mention_is_answered_in_its_reply_chain_one_conversation_per_user(threaded: TeamsBot) -> None:
    teams = threaded
    teams.linked(ALICE)
    teams.linked(BOB)
    bf = teams.bf

    root = next_id()
    chain = f"{CHANNEL};messageid={root}"
    post = teams.message(ALICE, AURORA, scope="channel", mention=True, activity_id=root)
    answer = teams.answer(post)
    assert answer.conversation_id == chain and answer.activity_id == root  # replies into the chain
    assert "Aurora" in answer.cards[-1]["body"][0]["text"]
    assert not answer.targeted and not bf.targeted()  # for everyone there, so no "Share in thread" either
    assert [a["verb"] for a in answer.cards[-1]["actions"]] == ["qbot.feedback", "qbot.feedback"]
    # the mention was stripped: Q saw the question alone
    assert questions_seen_by_q(teams.sandbox, ALICE.email) == [AURORA]

    follow_up = teams.answer(
        teams.message(ALICE, "When does it launch?", scope="channel", conversation_id=chain, mention=True)
    )
    assert follow_up.conversation_id == chain and _conversation(follow_up) == _conversation(answer)

    bobs = teams.answer(teams.message(BOB, AURORA, scope="channel", conversation_id=chain, mention=True))
    assert bobs.conversation_id == chain and _conversation(bobs) != _conversation(answer)

    # another post in the channel is another conversation for Alice
    other = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True))
    assert _conversation(other) != _conversation(answer)

    # without a mention nothing happens in a channel
    unmentioned = teams.message(ALICE, "Anyone seen the roadmap?", scope="channel", conversation_id=chain)
    assert teams.post(unmentioned).status_code == 202
    teams.answer(teams.message(ALICE, "One more thing?", scope="channel", conversation_id=chain, mention=True))
    assert not any(c.activity_id == unmentioned["id"] for c in bf.calls)
    assert "Anyone seen the roadmap?" not in questions_seen_by_q(teams.sandbox, ALICE.email)


def test_only_the_bots_own_mention_is_stripped(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    activity = teams.message(ALICE, "", scope="channel")
    activity["text"] = "<at>qbot</at> ask <at>Bob Brown</at> whether qbot knows Project Aurora"
    activity["entities"] = [
        {"type": "mention", "text": "<at>qbot</at>", "mentioned": BOT},
        {"type": "mention", "text": "<at>Bob Brown</at>", "mentioned": {"id": BOB.id, "name": BOB.name}},
    ]
    teams.answer(activity)
    assert questions_seen_by_q(teams.sandbox, ALICE.email) == ["ask Bob Brown whether qbot knows Project Aurora"]


def test_link_from_a_channel_goes_to_the_personal_chat_only(teams: TeamsBot) -> None:
    bf = teams.bf
    page = teams.link(ALICE, scope="channel")
    assert page.status_code == 200
    channel_posts = [c for c in bf.calls if c.conversation_id.startswith(CHANNEL)]
    assert channel_posts and not any(sign_in_url(c) or "/auth/start" in str(c.body) for c in channel_posts)
    assert any("private chat" in c.text for c in channel_posts if c.type == "message")
    created = [c for c in bf.calls if c.kind == "create"]
    assert created and created[0].body["members"] == [{"id": ALICE.id}]
    assert created[0].body["channelData"]["tenant"]["id"]
    # the member lookup for the email went to the team, as Teams wants in channels
    assert any(c.kind == "member" and c.conversation_id == TEAM for c in bf.calls)


def test_unlinked_in_a_channel_gets_a_short_pointer_and_the_link_privately(teams: TeamsBot) -> None:
    replies = teams.ask(teams.message(BOB, AURORA, scope="channel", mention=True), count=2)
    in_channel = [c for c in replies if c.conversation_id.startswith(CHANNEL)]
    private = [c for c in replies if c.conversation_id == BOB.personal_chat]
    assert len(in_channel) == 1 and "private chat" in in_channel[0].text and not in_channel[0].cards
    assert private and sign_in_url(private[0])
    assert sum(teams.sandbox.q.stats.chat_calls.values()) == 0


def test_private_notices_from_a_channel_are_shown_to_the_asker_only(threaded: TeamsBot) -> None:
    teams = threaded
    teams.linked(ALICE)
    (status,) = teams.ask(teams.message(ALICE, "qstatus", scope="channel", mention=True))
    assert status.targeted and status.recipient == ALICE.id and status.conversation_id.startswith(CHANNEL)
    assert "alice@example.com" in status.text

    teams.bf.refuse_targeted = True  # a tenant without targeted messages: the personal chat, a pointer in place
    replies = teams.ask(teams.message(ALICE, "qstatus", scope="channel", mention=True), count=2)
    status = next(c for c in replies if c.conversation_id == ALICE.personal_chat)
    pointer = next(c for c in replies if c.conversation_id.startswith(CHANNEL))
    assert "alice@example.com" in status.text and "alice@example.com" not in pointer.text
    assert not status.targeted and not pointer.targeted and teams.bf.refused


def test_no_private_chat_possible_says_how_to_open_one(teams: TeamsBot) -> None:
    teams.bf.refuse_personal_chats.add(CAROL.id)
    replies = teams.ask(teams.message(CAROL, "qlink", scope="channel", mention=True))
    assert "Open a chat with me" in replies[0].text and replies[0].conversation_id.startswith(CHANNEL)
    assert not any(sign_in_url(c) for c in teams.bf.calls)


def test_group_chat_mention_is_answered_and_unmentioned_messages_ignored(threaded: TeamsBot) -> None:
    teams = threaded
    teams.linked(ALICE)
    bf = teams.bf
    before = len(bf.calls)
    ignored = teams.message(ALICE, AURORA, scope="groupChat")
    assert teams.post(ignored).status_code == 202
    answer = teams.answer(teams.message(ALICE, AURORA, scope="groupChat", mention=True))
    assert answer.conversation_id == GROUP_CHAT and not answer.targeted
    assert not any(c.activity_id == ignored["id"] for c in bf.calls[before:])
    follow_up = teams.answer(teams.message(ALICE, "When does it launch?", scope="groupChat", mention=True))
    assert _conversation(follow_up) == _conversation(answer)  # a group chat is one thread per user
    assert teams.sandbox.q.stats.chat_calls["alice@example.com"] == 2
