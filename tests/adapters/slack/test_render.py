"""Rendering: answers of any length, their sources and notices within Slack's Block Kit limits."""

from __future__ import annotations

import json

from adapters.slack.blocks import MESSAGE_BUDGET, split_text
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.slack.render import FEEDBACK_BLOCK, parse_feedback_value, render_answer, render_notice, thanked
from bot.model import Answer, FailedAttachment, Notice, NoticeKind, Source
from sandbox.slack import block_problem


def _sources(count: int) -> tuple[Source, ...]:
    return tuple(
        Source(n, f"Document {n} — a title | with a pipe & more", f"https://docs.example.com/{n}?a=1&b=<2>")
        for n in range(1, count + 1)
    )


def _assert_valid(messages: list[dict[str, object]]) -> None:
    for message in messages:
        assert message["text"], "every message has a plain-text fallback"
        assert len(str(message["text"])) <= 3000
        assert block_problem(message["blocks"]) is None, message


def test_a_9000_character_answer_with_12_citations_fits_slack() -> None:
    paragraph = "Aurora **replaces** the reporting suite with _real-time_ dashboards [1]. " * 8
    text = "\n\n".join(f"## Part {n}\n{paragraph}\n- item [{n % 12 + 1}]" for n in range(15))[:9000]
    answer = Answer(text, _sources(12), "c" * 36, "m" * 36)
    messages = render_answer(answer)
    assert len(messages) == 1
    payload = [m.payload() for m in messages]
    _assert_valid(payload)  # type: ignore[arg-type]
    blocks = messages[0].blocks
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) >= 3 and all(len(b["text"]["text"]) <= 3000 for b in sections)
    sources = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    joined = " ".join(sources)
    assert joined.startswith("*Sources:* [1] <https://docs.example.com/1?a=1&b=%3C2%3E|Document 1")
    assert all(f"[{n}] <https://docs.example.com/{n}" in joined for n in range(1, 13))
    assert "¦ with a pipe &amp; more" in joined
    assert blocks[-1]["block_id"] == FEEDBACK_BLOCK
    assert "\n".join(b["text"]["text"] for b in sections) == to_mrkdwn(text)  # split at lines, nothing lost


def test_a_huge_answer_becomes_several_messages_with_buttons_on_the_last() -> None:
    text = "\n".join(f"Line {n}: " + "word " * 30 for n in range(1500))  # ~240,000 characters
    messages = render_answer(Answer(text, _sources(3), "c", "m"))
    assert len(messages) > 10
    _assert_valid([m.payload() for m in messages])  # type: ignore[misc]
    for message in messages:
        assert len(message.blocks) <= 50
        assert sum(len(b["text"]["text"]) for b in message.blocks if b["type"] == "section") <= MESSAGE_BUDGET
    assert all(b.get("block_id") != FEEDBACK_BLOCK for m in messages[:-1] for b in m.blocks)
    assert messages[-1].blocks[-1]["block_id"] == FEEDBACK_BLOCK
    assert messages[1].text.startswith("(2/")


def test_splitting_keeps_code_blocks_and_links_whole() -> None:
    code = "```\n" + "\n".join(f"line {n} = {n * 'x'}" for n in range(200)) + "\n```"
    link = "<https://example.com/" + "p" * 100 + "|a link>"
    chunks = split_text(code + "\n" + ("word " * 500) + link + (" word" * 600))
    assert all(len(c) <= 3000 for c in chunks) and len(chunks) > 3
    for chunk in chunks:
        assert chunk.count("```") % 2 == 0, chunk[-50:]
        assert chunk.count("<") == chunk.count(">")
    assert sum(link in c for c in chunks) == 1
    huge_word = "y" * 7000
    assert all(len(c) <= 3000 for c in split_text(huge_word)) and "".join(split_text(huge_word)) == huge_word


def test_failed_attachments_and_sources_without_url() -> None:
    answer = Answer(
        "Answer", (Source(1, "Intranet page", None), Source(2, "Wiki", "https://wiki.example/a b|c>")), "c", "m",
        failed_attachments=(
            FailedAttachment("big.pdf", "not read: larger than the 10 MB limit"),
            FailedAttachment("scan.png", "The file type is not supported"),
        ),
    )
    [message] = render_answer(answer)
    contexts = [e["text"] for b in message.blocks if b["type"] == "context" for e in b["elements"]]
    assert contexts[0].startswith("*Files not read:*")
    assert "big.pdf: not read: larger than the 10 MB limit" in contexts[0] and "scan.png" in contexts[0]
    # the core dropped what was no link; a kept URL is only escaped so it cannot end `<url|label>` early
    assert contexts[1] == "*Sources:* [1] Intranet page  ·  [2] <https://wiki.example/a%20b%7Cc%3E|Wiki>"


def test_no_ids_no_buttons_and_feedback_values_round_trip() -> None:
    [message] = render_answer(Answer("Nothing found.", (), "", ""))
    assert [b["type"] for b in message.blocks] == ["section"]
    [message] = render_answer(Answer("x", (), "conv-1", "msg-1"))
    value = message.blocks[-1]["elements"][0]["value"]
    assert parse_feedback_value(value) == ("conv-1", "msg-1")
    assert parse_feedback_value("not json") is None and parse_feedback_value('{"c": 1}') is None
    redrawn = thanked(message.blocks, useful=True)
    assert redrawn[-1]["type"] == "context" and "Thanks for the feedback" in redrawn[-1]["elements"][0]["text"]
    assert not any(b["type"] == "actions" for b in redrawn)


def test_notices() -> None:
    link = render_notice(Notice(NoticeKind.LINK, "Open this link.", url="https://bot.example/auth/start?t=x"))
    assert link.blocks[-1]["elements"][0]["url"] == "https://bot.example/auth/start?t=x"
    assert "https://bot.example/auth/start?t=x" in link.text
    prompt = render_notice(Notice(NoticeKind.NOT_LINKED, "You haven't linked. Run qlink.", private=True))
    assert "Run /qlink" in prompt.text and prompt.blocks[-1]["elements"][0]["action_id"] == "qbot_link"
    error = render_notice(Notice(NoticeKind.ERROR, "Busy <now> (request id r-1)"))
    assert error.text == ":warning: Busy &lt;now&gt; (request id r-1)"
    assert json.dumps(error.blocks).count("request id r-1") == 1
