"""Rendering: Teams' markdown subset, Sources, feedback buttons, and the message size limit."""

from __future__ import annotations

import dataclasses
import json

from adapters.teams.agent import card_activity
from adapters.teams.cards import (
    MAX_CARD_BYTES,
    answer_cards,
    parse_feedback,
    parse_share,
    shared,
    sign_in_card,
    thanked,
)
from adapters.teams.markdown import Segment, link_target, to_teams
from bot.model import Answer, ChatIdentity, FailedAttachment, Source, Usefulness

TEAMS_MESSAGE_LIMIT = 28 * 1024


def _answer(text: str, sources: int = 0) -> Answer:
    return Answer(
        text=text,
        sources=tuple(
            Source(n, f"Document [{n}] about *things*", f"https://docs.example.com/d/{n}?q=a b&x=(y)", "snippet")
            for n in range(1, sources + 1)
        ),
        conversation_id="c" * 36,
        message_id="m" * 36,
    )


def _wire_size(card: dict) -> int:
    activity = card_activity(card)
    activity.conversation = None
    body = activity.model_dump(by_alias=True, exclude_unset=True, mode="json")
    body.update(
        {
            "conversation": {"id": "19:" + "x" * 100 + "@thread.tacv2;messageid=1700000000000"},
            "from": {"id": "28:" + "b" * 36, "name": "qbot"},
            "recipient": {"id": "29:" + "u" * 120, "aadObjectId": "a" * 36},
            "replyToId": "1700000000000",
            "serviceUrl": "https://smba.trafficmanager.net/emea/",
            "channelId": "msteams",
        }
    )
    return len(json.dumps(body).encode())


def _texts(cards: list[dict]) -> str:
    return "\n".join(block["text"] for card in cards for block in card["body"])


def test_long_answer_with_many_citations_stays_within_the_teams_limit() -> None:
    paragraph = "Project Aurora ships the new billing engine [1]. It replaces the legacy system [2]. " * 6
    text = "\n\n".join(f"{n}. {paragraph}" for n in range(18))[:9000]
    assert len(text) == 9000
    cards = answer_cards(_answer(text, sources=12))
    for card in cards:
        assert len(json.dumps(card, ensure_ascii=False).encode()) <= MAX_CARD_BYTES
        assert _wire_size(card) < TEAMS_MESSAGE_LIMIT
        assert card["fallbackText"]
    assert "actions" in cards[-1] and all("actions" not in c for c in cards[:-1])
    rendered = _texts(cards)
    assert rendered.replace("\n", "").count("Project Aurora ships") == text.count("Project Aurora ships")
    sources = [b["text"] for c in cards for b in c["body"] if b["text"].startswith("[")]
    assert len(sources) == 12 and sources[0].startswith("[1] [Document (1) about *things*](https://")
    assert "q=a%20b&x=%28y%29" in sources[0]  # spaces and parentheses can't end the link early


def test_huge_multibyte_answer_is_split_without_losing_text() -> None:
    text = ("Überblick über das Projekt 🚀 — " * 40 + "\n") * 40
    cards = answer_cards(_answer(text))
    assert len(cards) > 1
    for card in cards:
        assert _wire_size(card) < TEAMS_MESSAGE_LIMIT
    assert _texts(cards).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")


def test_feedback_buttons_carry_the_turn_and_thanks_removes_them() -> None:
    (card,) = answer_cards(_answer("Short answer.", sources=1))
    up, down = card["actions"]
    assert up["type"] == "Action.Execute" and up["verb"] == "qbot.feedback"
    assert up["data"] == {"useful": True, "conversation_id": "c" * 36, "message_id": "m" * 36}
    assert down["data"]["useful"] is False
    assert parse_feedback(up["verb"], up["data"]).usefulness is Usefulness.USEFUL  # type: ignore[union-attr]
    assert parse_feedback("other", up["data"]) is None
    assert parse_feedback(up["verb"], {**up["data"], "useful": "true"}) is None
    assert parse_feedback(up["verb"], {**up["data"], "message_id": "m" * 300}) is None
    done = thanked(card)
    assert "actions" not in done and done["body"][:-1] == card["body"]
    assert done["body"][-1]["text"] == "Thanks for the feedback." and "actions" in card


def test_failed_attachments_empty_answers_and_sources_with_and_without_links() -> None:
    answer = Answer(
        text="",
        sources=(Source(1, "Wiki (old)", "https://wiki.example/a b(c)"), Source(2, "No link", None)),
        conversation_id="c",
        message_id="m",
        failed_attachments=(
            FailedAttachment("b.exe", "not read: unsupported"), FailedAttachment("a.pdf", "could not be read")
        ),
    )
    (card,) = answer_cards(answer)
    texts = [b["text"] for b in card["body"]]
    assert texts[0].startswith("⚠️ b.exe") and texts[1].startswith("⚠️ a.pdf")
    assert "Amazon Q returned no text" in texts[2]
    # the core left no URL where there was no safe one; a kept URL is only escaped for the markdown link
    assert "[1] [Wiki (old)](https://wiki.example/a%20b%28c%29)" in texts and "[2] No link" in texts


def test_markdown_is_converted_to_the_teams_subset() -> None:
    markdown = (
        "# Overview\n"
        "Some __bold__ and ~~old~~ text with [a link](https://example.com/a) and [bad](javascript:x)"
        " [mail](mailto:a@b.c) [creds](https://u:p@example.com/).\n"
        "* first\n"
        "  + nested\n"
        "![diagram](https://example.com/d.png)\n"
        "```python\nprint('*not italic*')\n```\n"
        "After [1]."
    )
    segments = to_teams(markdown)
    assert segments[0] == Segment(
        "**Overview**\n"
        "Some **bold** and old text with [a link](https://example.com/a) and bad mail creds.\n"
        "- first\n"
        "  - nested\n"
        "[diagram](https://example.com/d.png)"
    )
    assert segments[1] == Segment("print('*not italic*')", code=True)
    assert segments[2] == Segment("After [1].")
    (card,) = answer_cards(_answer(markdown))
    assert card["body"][1]["fontType"] == "Monospace"
    assert link_target("https://x/a b") == "https://x/a%20b"


def test_sign_in_card_opens_the_link() -> None:
    card = sign_in_card("Open this link within 10 minutes.", "https://bot.example.com/auth/start?t=abc")
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Sign in", "url": "https://bot.example.com/auth/start?t=abc"}
    ]
    assert "https://bot.example.com/auth/start?t=abc" in card["fallbackText"]


def test_a_private_answer_offers_sharing_and_a_shared_one_names_its_sharer() -> None:
    private = dataclasses.replace(_answer("Aurora ships in March.", sources=1), private=True)
    (card,) = answer_cards(private)
    share = card["actions"][0]
    assert share["type"] == "Action.Execute" and share["title"] == "Share in thread"
    assert parse_share(share["verb"], share["data"]) is not None
    assert parse_share(share["verb"], share["data"]).conversation_id == "c" * 36  # type: ignore[union-attr]
    done = shared(card)
    assert "actions" not in done and done["body"][-1]["text"] == "You shared this answer in the thread."
    assert done["body"][0] == card["body"][0]

    asker = ChatIdentity("teams", "t", "aad-alice")
    sharing = dataclasses.replace(private, private=False, shared_by=asker)
    (public,) = answer_cards(sharing, shared_by="Alice [x](https://evil.example)")
    assert public["body"][0]["text"] == "Shared by Alice (x)(https://evil.example)"  # a name, never a link
    assert [a["verb"] for a in public["actions"]] == ["qbot.feedback", "qbot.feedback"]
    (unnamed,) = answer_cards(dataclasses.replace(private, private=False, shared_by=asker))
    assert unnamed["body"][0]["text"] == "Shared by the person who asked"
    (plain,) = answer_cards(dataclasses.replace(private, private=False))
    assert plain["body"][0]["text"] == "Aurora ships in March."


def test_malformed_share_actions_are_not_shares() -> None:
    ids = {"conversation_id": "c", "message_id": "m"}
    assert parse_share("qbot.share", ids) is not None
    for verb, data in [
        ("qbot.feedback", ids),
        ("qbot.share", None),
        ("qbot.share", {"conversation_id": "c"}),
        ("qbot.share", {"conversation_id": "", "message_id": "m"}),
        ("qbot.share", {"conversation_id": "c", "message_id": "m" * 257}),
        ("qbot.share", {"conversation_id": 1, "message_id": "m"}),
    ]:
        assert parse_share(verb, data) is None, (verb, data)
