"""The core's neutral replies as Slack messages: the answer, its sources and feedback buttons, and notices.

The text goes through the mrkdwn dialect (mrkdwn.py) and is packed within Slack's limits (blocks.py).
Sources are numbered as in the answer's [n] markers; a source links only when the core left it a URL
(`Source.url` is already checked where the Answer is built: bot.urls.safe_link).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from adapters.slack.blocks import FALLBACK_LIMIT, Block, SlackMessage, context, pack, section, split_text, truncate
from adapters.slack.mrkdwn import commands_as_slash, escape, link, link_target, to_mrkdwn
from bot.model import Answer, FailedAttachment, Notice, NoticeKind, Source

TITLE_LIMIT = 120

FEEDBACK_BLOCK = "qbot_feedback"
FEEDBACK_UP = "qbot_feedback_up"
FEEDBACK_DOWN = "qbot_feedback_down"
SHARE_BLOCK = "qbot_share"
SHARE_BUTTON = "qbot_share"
LINK_BUTTON = "qbot_link"
OPEN_LINK_BUTTON = "qbot_open_link"
PLUGIN_BLOCK = "qbot_plugin"
PLUGIN_REVIEW_BUTTON = "qbot_plugin_review"
PLUGIN_CANCEL_BUTTON = "qbot_plugin_cancel"
PLUGIN_AUTHORIZE_BUTTON = "qbot_plugin_authorize"

THINKING = ":hourglass_flowing_sand: Thinking…"
THANKS = "Thanks for the feedback :pray:"


def sources_line(source: Source) -> str:
    title = source.title.strip() or "Untitled source"
    title = truncate(" ".join(title.split()), TITLE_LIMIT)
    return f"[{source.number}] {link(source.url, title)}"


def feedback_value(answer: Answer) -> str:
    return json.dumps({"c": answer.conversation_id, "m": answer.message_id}, separators=(",", ":"))


def parse_feedback_value(value: str) -> tuple[str, str] | None:
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    conversation, message = data.get("c"), data.get("m")
    if isinstance(conversation, str) and isinstance(message, str) and conversation and message:
        return conversation, message
    return None


def feedback_block(answer: Answer) -> Block:
    value = feedback_value(answer)
    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK,
        "elements": [
            {"type": "button", "action_id": FEEDBACK_UP, "value": value,
             "text": {"type": "plain_text", "text": ":thumbsup: Helpful", "emoji": True}},
            {"type": "button", "action_id": FEEDBACK_DOWN, "value": value,
             "text": {"type": "plain_text", "text": ":thumbsdown: Not helpful", "emoji": True}},
        ],
    }


def share_block(answer: Answer) -> Block:
    """Under a private answer: the asker's one click to show it to everyone in the thread."""
    return {
        "type": "actions",
        "block_id": SHARE_BLOCK,
        "elements": [
            {"type": "button", "action_id": SHARE_BUTTON, "value": feedback_value(answer),
             "text": {"type": "plain_text", "text": ":mega: Share in thread", "emoji": True}},
        ],
    }


def plugin_blocks(answer: Answer) -> list[Block]:
    """Under an answer that proposes a plugin action: "Review and run" (opens the form) and "Cancel"; under one
    whose plugin needs consent: "Authorize <plugin>", opening the core's one-time start URL."""
    review, auth = answer.action_review, answer.plugin_auth
    elements: list[dict[str, object]] = []
    if review is not None and review.review_id:
        elements += [
            {"type": "button", "action_id": PLUGIN_REVIEW_BUTTON, "style": "primary", "value": review.review_id,
             "text": {"type": "plain_text", "text": "Review and run"}},
            {"type": "button", "action_id": PLUGIN_CANCEL_BUTTON, "value": review.review_id,
             "text": {"type": "plain_text", "text": "Cancel"}},
        ]
    if auth is not None and auth.start_url:
        name = truncate(auth.plugin, 40) if auth.plugin else "the plugin"
        elements.append({"type": "button", "action_id": PLUGIN_AUTHORIZE_BUTTON, "style": "primary",
                         "url": link_target(auth.start_url),
                         "text": {"type": "plain_text", "text": f"Authorize {name}"}})
    return [{"type": "actions", "block_id": PLUGIN_BLOCK, "elements": elements}] if elements else []


def _skipped_lines(failed: Sequence[FailedAttachment]) -> list[str]:
    return [f":warning: {escape(f.name)}: {escape(f.error)}" for f in failed]


def render_answer(answer: Answer) -> list[SlackMessage]:
    """The answer, the files Q (or the attachment policy) left out and why, its sources, the feedback buttons."""
    blocks = [section(chunk) for chunk in split_text(to_mrkdwn(answer.text)) if chunk]
    if answer.shared_by is not None:
        blocks[:0] = context(f":mega: Shared by <@{escape(answer.shared_by.user)}>", [])
    if answer.failed_attachments:
        blocks += context("*Files not read:*", _skipped_lines(answer.failed_attachments))
    if answer.sources:
        blocks += context("*Sources:*", [sources_line(s) for s in answer.sources])
    blocks += plugin_blocks(answer)
    if answer.conversation_id and answer.message_id:
        blocks.append(feedback_block(answer))
        if answer.private and answer.action_review is None and answer.plugin_auth is None:
            blocks.append(share_block(answer))
    return pack(blocks, fallback=escape(truncate(answer.text, FALLBACK_LIMIT)))


def render_notice(notice: Notice) -> SlackMessage:
    """Command results, prompts and errors. A link notice is a button; its URL is also in the fallback text."""
    text = escape(commands_as_slash(notice.text))
    if notice.kind is NoticeKind.ERROR:
        text = f":warning: {text}"
    blocks: list[Block] = [section(chunk) for chunk in split_text(text)]
    if notice.failed_attachments:
        blocks += context("*Files not read:*", _skipped_lines(notice.failed_attachments))
    if notice.kind is NoticeKind.LINK and notice.url:
        url = link_target(notice.url)  # the core's own sign-in link (QBOT_PUBLIC_URL)
        blocks.append({
            "type": "actions",
            "elements": [{
                "type": "button", "action_id": OPEN_LINK_BUTTON, "style": "primary", "url": url,
                "text": {"type": "plain_text", "text": "Sign in with your company account"},
            }],
        })
        return SlackMessage(f"{text} <{url}>", blocks)
    if notice.kind is NoticeKind.NOT_LINKED:
        blocks.append({
            "type": "actions",
            "elements": [{
                "type": "button", "action_id": LINK_BUTTON, "style": "primary", "value": "link",
                "text": {"type": "plain_text", "text": "Link my account"},
            }],
        })
    return SlackMessage(text, blocks)


def text_message(text: str) -> SlackMessage:
    """A short line of the adapter's own (escaped), e.g. the link confirmation."""
    escaped = escape(text)
    return SlackMessage(escaped, [section(escaped)])


def thinking() -> SlackMessage:
    return SlackMessage(THINKING, [section(THINKING)])


def thanked(blocks: Sequence[Block], useful: bool) -> list[Block]:
    """The answer's blocks with the feedback buttons replaced by a thank-you line."""
    mark = ":thumbsup:" if useful else ":thumbsdown:"
    out: list[Block] = []
    for block in blocks:
        if block.get("block_id") == FEEDBACK_BLOCK:
            out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{mark} {THANKS}"}]})
        else:
            out.append(block)
    return out
