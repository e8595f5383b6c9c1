"""The Slack adapter end to end: signed requests into /slack/events of a real bot, a fake Slack Web API,
the sandbox's IdP, STS and Q Business behind it, and the real link flow in between."""

from __future__ import annotations

import json
from typing import Any

from adapters.slack.render import parse_feedback_value
from sandbox.slack import TEAM
from tests.adapters.slack.conftest import CHANNEL, SlackBot, link_url
from tests.signin import follow_link

AURORA = "What is Project Aurora?"


def ids_of(message: dict[str, Any]) -> tuple[str, str]:
    """(conversation id, message id) from an answer's feedback buttons."""
    for block in message.get("blocks") or []:
        if block.get("block_id") == "qbot_feedback":
            ids = parse_feedback_value(block["elements"][0]["value"])
            assert ids is not None
            return ids
    raise AssertionError(f"no feedback buttons in {message}")


def contexts(message: dict[str, Any]) -> str:
    return " ".join(e["text"] for b in message.get("blocks") or [] if b["type"] == "context" for e in b["elements"])


def chat_calls(bot: SlackBot) -> int:
    return sum(bot.sandbox.q.stats.chat_calls.values())


def test_link_then_mention_answers_in_the_thread_with_citations_and_follow_ups_continue(slack: SlackBot) -> None:
    hook = slack.command("U_ALICE", "/qlink")
    [response] = slack.responses(hook)
    assert response["response_type"] == "ephemeral" and "/auth/start?t=" in response["text"]
    url = link_url(response)
    page = follow_link(url, "alice")
    assert page.status_code == 200 and "alice@example.com" in page.text
    [confirmation] = slack.fake.wait_for(
        lambda: [c for c in slack.fake.calls_to("chat.postMessage") if c.args["channel"] == "DU_ALICE"]
    )
    assert "linked as alice@example.com" in confirmation.args["text"]
    assert [c.args["users"] for c in slack.fake.calls_to("conversations.open")] == ["U_ALICE"]
    assert slack.fake.calls_to("users.info")[0].args["user"] == "U_ALICE"

    ts = slack.mention("U_ALICE", AURORA)
    answer = slack.answer_in(CHANNEL, ts)
    placeholder = slack.fake.calls_to("chat.postMessage")[-1].args
    assert placeholder["channel"] == CHANNEL and placeholder["thread_ts"] == ts and "Thinking" in placeholder["text"]
    [update] = slack.fake.calls_to("chat.update")
    assert update.args["channel"] == CHANNEL and update.token == "xoxb-test-bot-token"
    assert "Aurora" in answer["text"] and "[1]" in answer["text"]
    assert "*Sources:* [1] <https://intranet.example.com/product/aurora-roadmap-2027|" in contexts(answer)
    first_conversation, _ = ids_of(answer)

    follow_up = slack.mention("U_ALICE", "When does it launch?", thread_ts=ts)
    slack.fake.wait_calls("chat.update", 2)
    second = slack.fake.calls_to("chat.update")[1].args
    placeholder_2 = slack.fake.messages[(CHANNEL, second["ts"])]
    assert placeholder_2["thread_ts"] == ts != follow_up
    assert ids_of(second)[0] == first_conversation

    # Bob asks the same in Alice's thread: his own conversation, answered from what he may read.
    slack.linked("U_BOB", "bob")
    slack.mention("U_BOB", AURORA, thread_ts=ts)
    slack.fake.wait_calls("chat.update", 3)
    bobs = slack.fake.calls_to("chat.update")[2].args
    assert ids_of(bobs)[0] != first_conversation and "aurora-roadmap" not in contexts(bobs)

    # The one-time link never reached a place others can see.
    for call in slack.fake.calls_to("chat.postMessage", "chat.update", "chat.postEphemeral"):
        assert "/auth/start" not in json.dumps(call.args)


def test_a_dm_conversation_continues_in_its_thread_without_a_mention(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    ts = slack.dm("U_ALICE", AURORA)
    answer = slack.answer_in("DU_ALICE", ts)
    conversation, _ = ids_of(answer)
    slack.dm("U_ALICE", "When does it launch?", thread_ts=ts)
    slack.fake.wait_calls("chat.update", 2)
    assert ids_of(slack.fake.calls_to("chat.update")[1].args)[0] == conversation
    other = slack.dm("U_ALICE", AURORA)
    assert ids_of(slack.answer_in("DU_ALICE", other))[0] != conversation
    assert not slack.fake.calls_to("chat.postEphemeral")


def test_command_words_in_dms_and_mentions_and_the_link_stays_private(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    ts = slack.dm("U_ALICE", "qstatus")
    status = slack.fake.wait_for(lambda: [c for c in slack.fake.calls_to("chat.postMessage")
                                          if c.args.get("thread_ts") == ts])
    assert "Linked as alice@example.com" in status[0].args["text"]

    ts = slack.dm("U_BOB", "qlink")  # in a DM the link may be posted: only Bob and the bot are there
    dm_link = slack.fake.wait_for(lambda: [c for c in slack.fake.calls_to("chat.postMessage")
                                           if c.args.get("thread_ts") == ts])
    assert dm_link[0].args["channel"] == "DU_BOB" and "/auth/start?t=" in dm_link[0].args["text"]

    posted = len(slack.fake.calls_to("chat.postMessage"))
    slack.mention("U_BOB", "qlink")  # in a channel only Bob may see it
    [ephemeral] = slack.fake.wait_calls("chat.postEphemeral")
    assert ephemeral.args["user"] == "U_BOB" and ephemeral.args["channel"] == CHANNEL
    assert "/auth/start?t=" in link_url(ephemeral.args)
    assert len(slack.fake.calls_to("chat.postMessage")) == posted

    hook = slack.command("U_ALICE", "/qnew")
    assert "new conversation" in slack.responses(hook)[0]["text"]
    hook = slack.command("U_ALICE", "/qunlink")
    assert "Unlinked alice@example.com" in slack.responses(hook)[0]["text"]
    hook = slack.command("U_ALICE", "/qstatus")
    assert "/qlink" in slack.responses(hook)[0]["text"]


def test_an_unlinked_user_gets_a_private_prompt_and_q_is_not_called(slack: SlackBot) -> None:
    ts = slack.mention("U_CAROL", AURORA)
    [prompt] = slack.fake.wait_calls("chat.postEphemeral")
    assert prompt.args["user"] == "U_CAROL" and prompt.args["thread_ts"] == ts
    assert "/qlink" in prompt.args["text"]
    button = prompt.args["blocks"][-1]["elements"][0]
    assert button["action_id"] == "qbot_link"
    assert not slack.fake.calls_to("chat.postMessage")  # no public placeholder either
    assert chat_calls(slack) == 0

    hook = slack.click("U_CAROL", {"action_id": "qbot_link", "value": "link"}, message=None, ephemeral=True)
    [response] = slack.responses(hook)
    assert response["replace_original"] is True and response["response_type"] == "ephemeral"
    assert follow_link(link_url(response), "carol").status_code == 200
    assert chat_calls(slack) == 0


def test_email_mismatch_is_refused_with_the_reason(slack: SlackBot) -> None:
    page = slack.link("U_BOB", "alice")
    assert page.status_code == 400 and "bob@example.com" in page.text and "alice@example.com" in page.text
    assert slack.run(slack.graph.core.accounts.linked_email(_identity("U_BOB"))) is None
    assert not [c for c in slack.fake.calls_to("chat.postMessage") if c.args["channel"] == "DU_BOB"]


def test_an_unreadable_profile_email_is_said(make_slack_bot: Any) -> None:
    strict = make_slack_bot()
    strict.fake.user_errors["U_CAROL"] = "missing_scope"
    [refusal] = strict.responses(strict.command("U_CAROL", "/qlink"))
    assert "users:read.email" in refusal["text"] and "/auth/start" not in json.dumps(refusal)
    strict.fake.emails["U_BOB"] = None  # a profile without an email
    [refusal] = strict.responses(strict.command("U_BOB", "/qlink"))
    assert "no email address" in refusal["text"] and "/auth/start" not in json.dumps(refusal)

    # Even with the email check off, a link nobody can check (no browser binding, no email) is not made.
    lenient = make_slack_bot(QBOT_REQUIRE_EMAIL_MATCH="false")
    [refusal] = lenient.responses(lenient.command("U_CAROL", "/qlink"))
    assert "users:read.email" in refusal["text"] and "/auth/start" not in json.dumps(refusal)


def test_feedback_by_the_asker_is_recorded_and_anyone_else_is_refused(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    ts = slack.mention("U_ALICE", AURORA)
    answer = slack.answer_in(CHANNEL, ts)
    conversation, message_id = ids_of(answer)
    buttons = next(b for b in answer["blocks"] if b.get("block_id") == "qbot_feedback")["elements"]
    message = {"type": "message", "ts": answer["ts"], "text": answer["text"], "blocks": answer["blocks"],
               "thread_ts": ts}

    hook = slack.click("U_BOB", buttons[0], message=message, message_ts=answer["ts"])
    [refusal] = slack.responses(hook)
    assert "Only the person who asked" in refusal["text"] and refusal["response_type"] == "ephemeral"
    assert refusal["replace_original"] is False
    assert slack.sandbox.q.stats.feedback == []

    slack.click("U_ALICE", buttons[0], message=message, message_ts=answer["ts"])  # 👎 asks why: test_feedback.py
    [thanked] = slack.fake.wait_calls("chat.update", 2)[1:]
    assert thanked.args["ts"] == answer["ts"] and "Thanks for the feedback" in contexts(thanked.args)
    assert not any(b["type"] == "actions" for b in thanked.args["blocks"])
    [record] = slack.sandbox.q.stats.feedback
    assert (record.email, record.conversation_id, record.message_id) == ("alice@example.com", conversation,
                                                                          message_id)
    assert record.usefulness is not None and record.usefulness["usefulness"] == "USEFUL"


def test_files_reach_chatsync_and_the_rest_get_a_note(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    fake = slack.fake
    notes = fake.add_file("F1", "launch-notes.txt", b"The Zephyr launch codename is BLUEBIRD. Zephyr ships in May.")
    picture = fake.add_file("F2", "diagram.png", b"\x89PNG....", "image/png")
    huge = fake.add_file("F3", "huge.pdf", b"%PDF small really", "application/pdf")
    huge["size"] = 50 * 1024 * 1024
    ts = slack.dm("U_ALICE", "What is the Zephyr launch codename?", files=[notes, picture, huge])
    answer = slack.answer_in("DU_ALICE", ts)
    assert "BLUEBIRD" in answer["text"]
    assert "launch-notes.txt" in contexts(answer) or "launch-notes.txt" in answer["text"]
    skipped = contexts(answer)
    assert "diagram.png: not read: png files aren't supported" in skipped
    assert "huge.pdf: not read: larger than the 10 MB limit" in skipped
    downloads = fake.calls_to("file")
    assert [d.args["id"] for d in downloads] == ["F1"] and downloads[0].token == "xoxb-test-bot-token"


def test_a_file_alone_is_a_question_and_unreadable_files_alone_are_said(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    notes = slack.fake.add_file("F1", "notes.md", b"# Zephyr\nZephyr is the codename BLUEBIRD.")
    ts = slack.dm("U_ALICE", "", files=[notes])
    assert "BLUEBIRD" in slack.answer_in("DU_ALICE", ts)["text"]
    picture = slack.fake.add_file("F2", "diagram.png", b"\x89PNG", "image/png")
    ts = slack.dm("U_ALICE", "", files=[picture])
    said = slack.answer_in("DU_ALICE", ts)
    assert "None of your files could be read" in said["text"] and "png files" in json.dumps(said["blocks"])


def _block(message: dict[str, Any], block_id: str) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = next(b for b in message["blocks"] if b.get("block_id") == block_id)["elements"]
    return elements


def test_channel_questions_are_answered_privately_by_default_and_shared_by_choice(make_slack_bot: Any) -> None:
    slack = make_slack_bot(QBOT_CHANNEL_REPLY_MODE="")  # the default: private
    slack.linked("U_ALICE", "alice")
    posted = len(slack.fake.calls_to("chat.postMessage"))
    ts = slack.mention("U_ALICE", AURORA)
    thinking, answer = slack.fake.wait_calls("chat.postEphemeral", 2)
    assert "Thinking" in thinking.args["text"] and thinking.args["user"] == "U_ALICE"
    assert answer.args["user"] == "U_ALICE" and answer.args["thread_ts"] == ts and "[1]" in answer.args["text"]
    assert "Sources" in contexts(answer.args)
    assert len(slack.fake.calls_to("chat.postMessage")) == posted  # nothing for the others in the channel

    [share] = _block(answer.args, "qbot_share")
    refused = slack.responses(slack.click("U_BOB", share, message=None, ephemeral=True))[0]
    assert "Only the person who asked" in refused["text"]
    assert len(slack.fake.calls_to("chat.postMessage")) == posted  # bob's click shared nothing

    done = slack.responses(slack.click("U_ALICE", share, message=None, ephemeral=True))[0]
    assert "Shared in the thread" in done["text"]
    [shared] = slack.fake.calls_to("chat.postMessage")[posted:]
    assert shared.args["channel"] == CHANNEL and shared.args["thread_ts"] == ts
    assert "Shared by <@U_ALICE>" in json.dumps(shared.args["blocks"]) and "[1]" in shared.args["text"]
    assert not any(b.get("block_id") == "qbot_share" for b in shared.args["blocks"])
    again = slack.responses(slack.click("U_ALICE", share, message=None, ephemeral=True))[0]
    assert "already shared" in again["text"]
    assert len(slack.fake.calls_to("chat.postMessage")) == posted + 1

    # The shared answer's feedback buttons still work for the asker (and only for her).
    up = _block(shared.args, "qbot_feedback")[0]
    hook = slack.click("U_ALICE", up, message=None, ephemeral=True)
    assert "Thanks for the feedback" in slack.responses(hook)[0]["text"]
    # A follow-up in the thread continues the same Q conversation.
    slack.mention("U_ALICE", "When does it launch?", thread_ts=ts)
    follow_up = slack.fake.wait_calls("chat.postEphemeral", 4)[3]
    conversation = json.loads(_block(answer.args, "qbot_feedback")[0]["value"])["c"]
    assert json.loads(_block(follow_up.args, "qbot_feedback")[0]["value"])["c"] == conversation

    dm = slack.dm("U_ALICE", AURORA)  # DMs are unchanged: answered in the DM
    assert "[1]" in slack.answer_in("DU_ALICE", dm)["text"]



def test_errors_are_said_in_the_thread_never_silently(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    q = slack.sandbox.q
    q.faults.throttle_next = 10
    busy = slack.answer_in(CHANNEL, slack.mention("U_ALICE", AURORA))
    assert "try again in a minute" in busy["text"] and "request id" in busy["text"]
    q.faults.reset()
    q.faults.internal_error_next = 10
    down = slack.answer_in(CHANNEL, slack.mention("U_ALICE", AURORA))
    assert "not answering right now" in down["text"] and "request id" in down["text"]
    q.faults.reset()
    nothing = slack.answer_in(CHANNEL, slack.mention("U_ALICE", "xyzzy plugh frobnicate"))
    assert "couldn't find" in nothing["text"]
    slack.sandbox.idp.revoke_user("alice")
    slack.run(slack.graph.core.accounts.vault.delete_credentials(_identity("U_ALICE")))
    expired = slack.answer_in(CHANNEL, slack.mention("U_ALICE", AURORA))
    assert "/qlink" in expired["text"]
    for message in slack.fake.messages.values():
        assert "Traceback" not in message["text"] and "Error:" not in message["text"]


def test_a_slack_failure_while_answering_is_still_said(slack: SlackBot) -> None:
    slack.linked("U_ALICE", "alice")
    slack.fake.fail["chat.update"] = "ratelimited"  # the placeholder can't be updated: post the answer anew
    ts = slack.mention("U_ALICE", AURORA)
    answer = slack.fake.wait_for(lambda: [c for c in slack.fake.calls_to("chat.postMessage")
                                          if c.args.get("thread_ts") == ts and "Thinking" not in c.args["text"]])
    assert "[1]" in answer[0].args["text"]


def _identity(user: str) -> Any:
    from bot.model import ChatIdentity

    return ChatIdentity("slack", TEAM, user)
