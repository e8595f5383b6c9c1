"""Answers given privately in channels and group chats (the default, `QBOT_CHANNEL_REPLY_MODE=private`): a
targeted message only the asker sees, or, where Teams refuses those, the asker's personal chat with a pointer
in the thread; "Share in thread" by the asker posts the answer there for everyone, anyone else's is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sandbox.botframework import Call, FakeBotFramework
from tests.adapters.teams.conftest import (
    ALICE,
    BOB,
    BOT,
    CHANNEL,
    GROUP_CHAT,
    TeamsBot,
    next_id,
    teams_env,
)

AURORA = "What is Project Aurora?"
MESSAGE = "application/vnd.microsoft.activity.message"
CARD = "application/vnd.microsoft.card.adaptive"


def _text(call: Call) -> str:
    return str(call.cards[-1]["body"][0]["text"])


def _verbs(call: Call) -> list[str]:
    return [a["verb"] for a in call.cards[-1].get("actions", [])]


def _shows_nobody_else(bf: FakeBotFramework, answer_text: str) -> None:
    """Everything anyone but the asker can see: no card, no answer text."""
    for call in bf.public():
        if call.conversation_id.startswith((CHANNEL, GROUP_CHAT)):
            assert not call.cards and answer_text not in str(call.body), call.body


def test_a_channel_question_is_answered_to_the_asker_alone(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    bf = teams.bf
    root = next_id()
    before = len(bf.posted())
    answer = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True, activity_id=root))
    assert answer.targeted and answer.recipient == ALICE.id
    assert answer.conversation_id == f"{CHANNEL};messageid={root}" and answer.activity_id == root  # in place
    assert "Aurora" in _text(answer)
    assert _verbs(answer) == ["qbot.share", "qbot.feedback", "qbot.feedback"]
    assert bf.posted()[before:] == [answer]  # nothing else: no pointer, no personal chat
    _shows_nobody_else(bf, _text(answer))
    assert not bf.refused


def test_share_in_thread_posts_the_answer_for_everyone_once_and_only_for_the_asker(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    teams.linked(BOB)
    bf = teams.bf
    root = next_id()
    chain = f"{CHANNEL};messageid={root}"
    answer = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True, activity_id=root))
    posted = len(bf.posted())

    refused = teams.post(teams.share(BOB, answer)).json()  # Bob can't see it; a forged click is still refused
    assert refused["type"] == MESSAGE and refused["value"] == "Only the person who asked can share this answer."
    assert len(bf.posted()) == posted
    _shows_nobody_else(bf, _text(answer))

    shared = teams.post(teams.share(ALICE, answer)).json()
    assert shared["type"] == CARD and "actions" not in shared["value"]  # the clicked card, without its buttons
    assert shared["value"]["body"][-1]["text"] == "You shared this answer in the thread."
    assert shared["value"]["body"][0]["text"] == _text(answer)
    (public,) = bf.public(chain)
    assert public.kind == "send" and public.conversation_id == chain and public.cards
    assert public.cards[0]["body"][0]["text"] == "Shared by Alice Anders"
    assert any("Aurora" in block["text"] for block in public.cards[-1]["body"])
    assert any(block["text"] == "Sources" for block in public.cards[-1]["body"])
    assert _verbs(public) == ["qbot.feedback", "qbot.feedback"]  # shared: nothing left to share

    again = teams.post(teams.share(ALICE, answer)).json()  # a second click posts nothing twice
    assert again["type"] == MESSAGE and "already shared" in again["value"]
    assert bf.public(chain) == [public]

    # the shared card's 👍/👎 stay Alice's: Bob is refused, Alice's rating reaches Q
    public.body["conversation"] = {"id": chain, "conversationType": "channel"}
    assert teams.post(teams.click(BOB, public, useful=True)).json()["type"] == MESSAGE
    assert teams.sandbox.q.stats.feedback == []
    rated = teams.post(teams.click(ALICE, public, useful=True)).json()
    assert rated["type"] == CARD and rated["value"]["body"][0]["text"] == "Shared by Alice Anders"
    assert [r.email for r in teams.sandbox.q.stats.feedback] == [ALICE.email]

    # the next question in the thread continues Alice's Q conversation there
    follow_up = teams.answer(
        teams.message(ALICE, "When does it launch?", scope="channel", conversation_id=chain, mention=True)
    )
    data = follow_up.cards[-1]["actions"][0]["data"]
    assert follow_up.targeted and data["conversation_id"] == answer.cards[-1]["actions"][0]["data"]["conversation_id"]


def test_without_targeted_messages_the_answer_goes_to_the_personal_chat(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    bf = teams.bf
    bf.refuse_targeted = True
    root = next_id()
    chain = f"{CHANNEL};messageid={root}"
    before = len(bf.posted())
    replies = teams.ask(teams.message(ALICE, AURORA, scope="channel", mention=True, activity_id=root), count=2)
    private = next(c for c in replies if c.conversation_id == ALICE.personal_chat)
    (pointer,) = bf.public(chain)
    assert private.cards and "Aurora" in _text(private) and not private.targeted
    assert _verbs(private) == ["qbot.share", "qbot.feedback", "qbot.feedback"]
    assert pointer.text == "I answered you in our private chat." and not pointer.cards
    assert bf.posted()[before:] == [private, pointer]
    assert [c.recipient for c in bf.refused] == [ALICE.id]  # a targeted message was tried first
    _shows_nobody_else(bf, _text(private))

    # shared from the personal chat, it lands in the thread where it was asked
    shared = teams.post(teams.share(ALICE, private)).json()
    assert shared["type"] == CARD and shared["value"]["body"][-1]["text"] == "You shared this answer in the thread."
    card = next(c for c in bf.public(chain) if c.cards)
    assert card.cards[0]["body"][0]["text"] == "Shared by Alice Anders" and card.kind == "send"


def test_a_share_teams_refuses_to_post_is_said_to_the_asker(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    answer = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True))
    teams.bf.fail_card_posts = 1
    failed = teams.post(teams.share(ALICE, answer)).json()
    assert failed["type"] == MESSAGE and failed["value"].startswith("I couldn't post your answer in the thread.")
    _shows_nobody_else(teams.bf, _text(answer))


def test_the_ephemeral_setting_is_private_too(
    make_teams: Callable[..., TeamsBot], bot_framework: FakeBotFramework
) -> None:
    teams = make_teams(**teams_env(bot_framework, QBOT_CHANNEL_REPLY_MODE="ephemeral"))
    teams.linked(ALICE)
    answer = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True))
    assert answer.targeted and answer.recipient == ALICE.id
    _shows_nobody_else(teams.bf, _text(answer))


def test_a_group_chat_question_is_private_until_shared(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    teams.linked(BOB)
    bf = teams.bf
    answer = teams.answer(teams.message(ALICE, AURORA, scope="groupChat", mention=True))
    assert answer.targeted and answer.recipient == ALICE.id and answer.conversation_id == GROUP_CHAT
    _shows_nobody_else(bf, _text(answer))

    assert teams.post(teams.share(BOB, answer)).json()["type"] == MESSAGE
    _shows_nobody_else(bf, _text(answer))
    assert teams.post(teams.share(ALICE, answer)).json()["type"] == CARD
    (public,) = [c for c in bf.public(GROUP_CHAT) if c.cards]
    assert public.cards[0]["body"][0]["text"] == "Shared by Alice Anders"


def test_thread_mode_answers_in_the_thread_for_everyone(
    make_teams: Callable[..., TeamsBot], bot_framework: FakeBotFramework
) -> None:
    teams = make_teams(**teams_env(bot_framework, QBOT_CHANNEL_REPLY_MODE="thread"))
    teams.linked(ALICE)
    root = next_id()
    answer = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True, activity_id=root))
    assert not answer.targeted and answer.conversation_id == f"{CHANNEL};messageid={root}"
    assert "qbot.share" not in _verbs(answer) and not teams.bf.targeted()


# -- the stand-in refuses targeted messages the way Teams does ------------------------------------------------


def _targeted(recipient: str, *, entity: bool = True) -> dict[str, Any]:
    entities = [{"type": "activityTreatment", "treatment": "targeted"}] if entity else []
    return {"type": "message", "text": "only you", "recipient": {"id": recipient}, "from": BOT, "entities": entities}


@pytest.mark.parametrize(
    ("conversation", "recipient", "entity", "query", "refused"),
    [
        (f"{CHANNEL};messageid=1", ALICE.id, True, True, False),
        (GROUP_CHAT, ALICE.id, True, True, False),
        (f"{CHANNEL};messageid=1", "29:stranger", True, True, True),  # not a member
        (ALICE.personal_chat, ALICE.id, True, True, True),  # a personal chat is no place for them
        ("19:unknown@thread.v2", ALICE.id, True, True, True),
        (GROUP_CHAT, ALICE.id, False, True, True),  # flagged, but the activity doesn't say so
        (GROUP_CHAT, ALICE.id, True, False, True),  # marked targeted yet sent to everyone
    ],
)
def test_the_stand_in_checks_targeted_messages(
    bot_framework: FakeBotFramework, conversation: str, recipient: str, entity: bool, query: bool, refused: bool
) -> None:
    url = f"{bot_framework.url}/v3/conversations/{conversation}/activities/1"
    params = {"isTargetedActivity": "true"} if query else {}
    response = httpx.post(url, params=params, json=_targeted(recipient, entity=entity) | {"channelId": "msteams"})
    assert (response.status_code >= 400) is refused, response.text
    assert bool(bot_framework.posted()) is not refused
    if not refused:
        assert bot_framework.targeted(recipient)[0].conversation_id == conversation


def test_the_stand_in_refuses_every_targeted_message_when_told(bot_framework: FakeBotFramework) -> None:
    bot_framework.refuse_targeted = True
    url = f"{bot_framework.url}/v3/conversations/{GROUP_CHAT}/activities"
    response = httpx.post(url, params={"isTargetedActivity": "true"}, json=_targeted(ALICE.id))
    assert response.status_code == 403 and not bot_framework.posted() and len(bot_framework.refused) == 1


def test_a_rated_private_answer_can_still_be_shared_and_is_not_edited_for_others(teams: TeamsBot) -> None:
    """Rating a private (targeted) answer redraws it for the asker alone, keeping "Share in thread": the
    connector cannot edit a targeted message, and the answer is nobody else's to see yet."""
    teams.linked(ALICE)
    bf = teams.bf
    root = next_id()
    answer = teams.answer(teams.message(ALICE, AURORA, scope="channel", mention=True, activity_id=root))
    rated = teams.post(teams.click(ALICE, answer, True)).json()
    assert rated["type"] == CARD and [a["verb"] for a in rated["value"]["actions"]] == ["qbot.share"]
    assert not [c for c in bf.calls if c.kind == "update"]
    shared = teams.post(teams.share(ALICE, answer)).json()
    assert shared["type"] == CARD
    (public,) = bf.public(f"{CHANNEL};messageid={root}")
    assert public.cards[0]["body"][0]["text"] == "Shared by Alice Anders"
