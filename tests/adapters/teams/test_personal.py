"""Personal chat (1:1 with the bot), end to end: link, questions, conversations, commands, files, errors."""

from __future__ import annotations

from bot.commands import HELP_TEXT
from bot.errors import ProfileEmailUnknown
from sandbox.botframework import Member
from tests.adapters.teams.conftest import ALICE, BOT, TENANT, TeamsBot, link_token, next_id, sign_in_url

AURORA = "What is Project Aurora?"


def _card_text(card: dict) -> str:
    return "\n".join(block.get("text", "") for block in card.get("body", []))


def test_link_then_ask_in_personal_chat_with_citations_follow_up_and_qnew(teams: TeamsBot) -> None:
    bf = teams.bf
    before = len(bf.calls)
    page = teams.link(ALICE)
    assert page.status_code == 200 and "Linked as alice@example.com" in page.text

    # the link went out as a sign-in card in Alice's personal chat, after a member lookup for her email
    card_call = next(c for c in bf.calls[before:] if sign_in_url(c))
    assert card_call.conversation_id == ALICE.personal_chat
    assert card_call.cards[0]["actions"][0]["type"] == "Action.OpenUrl"
    assert any(c.kind == "member" and c.activity_id == ALICE.id for c in bf.calls[before:])
    assert card_call.authorization is None  # anonymous outbound auth against the local connector
    # ... and the confirmation arrived in the same chat, proactively
    confirmation = bf.wait_for(
        lambda calls: next((c for c in calls if "linked as alice@example.com" in c.text.lower()), None)
    )
    assert confirmation.kind == "send" and confirmation.conversation_id == ALICE.personal_chat

    question = teams.message(ALICE, AURORA)
    first = teams.answer(question)
    assert first.conversation_id == ALICE.personal_chat
    card = first.cards[-1]
    text = _card_text(card)
    assert "Aurora" in text and "Sources" in text
    source_lines = [b["text"] for b in card["body"] if b.get("text", "").startswith("[1] [")]
    assert source_lines and "](https://" in source_lines[0]
    assert card["fallbackText"].count("Aurora") >= 1
    verbs = {a["verb"] for a in card["actions"]}
    assert verbs == {"qbot.feedback"}
    # typing came first, replying to the question
    typing = [c for c in bf.calls if c.type == "typing" and c.activity_id == question["id"]]
    assert typing and bf.calls.index(typing[0]) < bf.calls.index(first)

    conversation = card["actions"][0]["data"]["conversation_id"]
    follow_up = teams.answer(teams.message(ALICE, "When does it launch?"))
    assert follow_up.cards[-1]["actions"][0]["data"]["conversation_id"] == conversation

    reset = teams.ask(teams.message(ALICE, "qnew"))
    assert "new conversation" in reset[0].text.lower()
    fresh = teams.answer(teams.message(ALICE, AURORA))
    assert fresh.cards[-1]["actions"][0]["data"]["conversation_id"] != conversation

    status = teams.ask(teams.message(ALICE, "qstatus"))
    assert "Linked as alice@example.com" in status[0].text and status[0].conversation_id == ALICE.personal_chat


def test_redelivered_activity_is_answered_once(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    question = teams.message(ALICE, AURORA)
    teams.answer(question)
    again = teams.post(question)
    assert again.status_code == 200
    teams.answer(teams.message(ALICE, "Who leads it?"))  # a later message is answered: the first is done
    answers = [c for c in teams.bf.calls if c.cards and c.activity_id == question["id"]]
    assert len(answers) == 1
    assert sum(teams.sandbox.q.stats.chat_calls.values()) == 2


def test_unlinked_user_gets_a_private_sign_in_prompt_and_no_chatsync(teams: TeamsBot) -> None:
    replies = teams.ask(teams.message(ALICE, AURORA))
    prompt = replies[0]
    assert prompt.conversation_id == ALICE.personal_chat
    assert sign_in_url(prompt) and "haven't linked" in prompt.cards[0]["body"][0]["text"]
    assert sum(teams.sandbox.q.stats.chat_calls.values()) == 0
    # the prompt's link works
    assert link_token(sign_in_url(prompt))


def test_help_welcome_unknown_words_and_qunlink(teams: TeamsBot) -> None:
    bf = teams.bf
    added = {
        "type": "conversationUpdate",
        "id": next_id(),
        "channelId": "msteams",
        "serviceUrl": bf.url + "/",
        "from": {"id": ALICE.id, "aadObjectId": ALICE.aad},
        "recipient": BOT,
        "conversation": {"id": ALICE.personal_chat, "conversationType": "personal", "tenantId": TENANT},
        "membersAdded": [BOT],
        "channelData": {"tenant": {"id": TENANT}},
    }
    assert teams.post(added).status_code == 202
    welcome = bf.wait_for(lambda calls: next((c for c in calls if c.text == HELP_TEXT), None))
    assert welcome.conversation_id == ALICE.personal_chat

    assert teams.ask(teams.message(ALICE, "help"))[0].text == HELP_TEXT
    teams.linked(ALICE)
    gone = teams.ask(teams.message(ALICE, "qunlink"))
    assert "Unlinked alice@example.com" in gone[0].text
    again = teams.ask(teams.message(ALICE, AURORA))
    assert sign_in_url(again[0])


def test_unreadable_profile_email_is_said_and_no_link_is_made(teams: TeamsBot) -> None:
    teams.bf.members[ALICE.id] = Member(ALICE.id, ALICE.aad, ALICE.name, None)
    replies = teams.ask(teams.message(ALICE, "qlink"))
    assert replies[0].text == ProfileEmailUnknown.user_message
    assert not any(sign_in_url(c) for c in teams.bf.calls)


def test_email_mismatch_is_refused_with_the_reason(teams: TeamsBot) -> None:
    teams.bf.members[ALICE.id] = Member(ALICE.id, ALICE.aad, ALICE.name, "alice@example.com")
    replies = teams.ask(teams.message(ALICE, "qlink"))
    from tests.signin import follow_link

    page = follow_link(sign_in_url(replies[0]), "bob")
    assert page.status_code == 400 and "bob@example.com" in page.text and "alice@example.com" in page.text
    assert teams.bot.run(teams.bot.core.accounts.linked_email(_identity(ALICE))) is None


def _identity(user):  # type: ignore[no-untyped-def]
    from bot.model import ChatIdentity

    return ChatIdentity("teams", TENANT, user.aad)


def test_errors_read_as_actionable_text_never_a_stack_trace(teams: TeamsBot) -> None:
    teams.linked(ALICE)
    teams.sandbox.q.faults.internal_error_next = 5  # more than the client's retries
    failed = teams.ask(teams.message(ALICE, AURORA))[0]
    assert failed.text.startswith("Amazon Q is not answering right now. Please try again in a minute.")
    assert "request id" in failed.text
    teams.sandbox.q.faults.reset()

    # an unexpected failure inside the turn: the user hears that something went wrong, and nothing more
    teams.bf.fail_card_posts = 1
    broken = teams.ask(teams.message(ALICE, AURORA))[0]
    assert broken.text == "Something went wrong on our side. Please try again in a minute."
    assert not any("Exception" in c.text or "Traceback" in c.text or "boom" in c.text for c in teams.bf.calls)
