"""The core's neutral replies as Slack messages: Block Kit within Slack's limits, Q's markdown as mrkdwn.

Guarantees, whatever the answer:
- every section's text is at most 3,000 characters, every message at most 50 blocks and at most
  `MESSAGE_BUDGET` characters of block text (Slack refuses larger ones with `msg_blocks_too_long`, well below
  its documented limits), so a long answer becomes several messages rather than an error;
- a split never cuts a link, an entity or a code block in half (an open code block is closed and reopened);
- every message carries a plain `text` fallback (notifications, screen readers, old clients);
- sources are numbered as in the answer's [n] markers; only http(s) URLs become links;
- anything from Q or a user is escaped, so an answer cannot ping `<!channel>` or forge a link.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from bot.model import Answer, FailedAttachment, Notice, NoticeKind, Source

SECTION_LIMIT = 3000
CONTEXT_ELEMENTS = 10
MAX_BLOCKS = 50
MESSAGE_BUDGET = 12_000
FALLBACK_LIMIT = 3000
TITLE_LIMIT = 120

FEEDBACK_BLOCK = "qbot_feedback"
FEEDBACK_UP = "qbot_feedback_up"
FEEDBACK_DOWN = "qbot_feedback_down"
LINK_BUTTON = "qbot_link"
OPEN_LINK_BUTTON = "qbot_open_link"

THINKING = ":hourglass_flowing_sand: Thinking…"
THANKS = "Thanks for the feedback :pray:"

Block = dict[str, Any]


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage / chat.update / chat.postEphemeral payload (minus channel and thread)."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


# -- escaping and links ------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_PRIVATE = re.compile("[\ue000\ue001]")


def escape(text: str) -> str:
    """Slack's three control characters: `&`, `<` and `>` must be entities in any text Slack parses."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_url(url: str | None) -> str | None:
    """An http(s) or mailto URL, made safe inside `<url|label>`; anything else (javascript:, relative) is None."""
    if not url:
        return None
    url = url.strip()
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "mailto"):
        return None
    return quote(url, safe="/:?#[]@!$&'()*+,;=%~.-_")


def link(url: str | None, label: str) -> str:
    """`<url|label>` for a safe URL, else the escaped label alone."""
    target = safe_url(url)
    label = escape(label).replace("|", "¦")
    return f"<{target}|{label}>" if target else label


def commands_as_slash(text: str) -> str:
    """The core names commands as words ("run qlink"); in Slack they are slash commands."""
    return re.sub(r"(?<![/\w])(qlink|qunlink|qstatus|qnew)\b", r"/\1", text)


# -- markdown -> mrkdwn ---------------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_ORDERED = re.compile(r"^(\s*)(\d{1,9})[.)]\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BOLD_MARK = "\ue002"


def to_mrkdwn(markdown: str) -> str:
    """Q's markdown as Slack mrkdwn: bold, italics, strike, links, lists, quotes, headings and code."""
    lines: list[str] = []
    in_code = False
    for line in _PRIVATE.sub("", markdown.replace("\r\n", "\n")).split("\n"):
        if _FENCE.match(line):
            lines.append("```")
            in_code = not in_code
            continue
        lines.append(escape(line) if in_code else _block_line(line))
    if in_code:
        lines.append("```")
    return "\n".join(lines).strip("\n")


def _block_line(line: str) -> str:
    if _RULE.match(line):
        return "──────────"
    heading = _HEADING.match(line)
    if heading:
        title = _inline(heading.group(1)).replace("*", "")
        return f"*{title}*" if title else ""
    quote_ = _QUOTE.match(line)
    if quote_:
        return ">" + _inline(quote_.group(1))
    bullet = _BULLET.match(line)
    if bullet:
        level = len(bullet.group(1).expandtabs(4)) // 2
        return "    " * level + ("•" if level == 0 else "◦") + " " + _inline(bullet.group(2))
    ordered = _ORDERED.match(line)
    if ordered:
        level = len(ordered.group(1).expandtabs(4)) // 2
        return "    " * level + f"{ordered.group(2)}. " + _inline(ordered.group(3))
    return _inline(line)


def _inline(text: str) -> str:
    kept: list[str] = []

    def keep(rendered: str) -> str:
        kept.append(rendered)
        return f"\ue000{len(kept) - 1}\ue001"

    text = _CODE_SPAN.sub(lambda m: keep("`" + escape(m.group(2)) + "`"), text)
    text = _MD_LINK.sub(lambda m: keep(_md_link(m.group(1), m.group(2))), text)
    text = _AUTOLINK.sub(lambda m: keep(link(m.group(1), m.group(1))), text)
    text = _emphasis(escape(text))
    while _PLACEHOLDER.search(text):  # a link label may itself hold a code span
        text = _PLACEHOLDER.sub(lambda m: kept[int(m.group(1))], text)
    return text


def _md_link(label: str, url: str) -> str:
    target = safe_url(url)
    label = label.strip() or url
    if not target:
        return _emphasis(escape(label))
    return f"<{target}|{_emphasis(escape(label)).replace('|', '¦')}>"


def _emphasis(text: str) -> str:
    text = _BOLD_ITALIC.sub(lambda m: f"{_BOLD_MARK}_{m.group(1)}_{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: _BOLD_MARK + (m.group(1) or m.group(2)) + _BOLD_MARK, text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    return text.replace(_BOLD_MARK, "*")


def from_slack_text(text: str, bot_user_id: str | None) -> str:
    """A user's Slack message as plain text for Q: the bot's mention dropped, Slack's markup unwrapped."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)

    def unwrap(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + (label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            return label or "@" + target[1:].split("^")[0]
        if target.startswith("mailto:"):
            return label or target[len("mailto:"):]
        return f"{label} ({target})" if label and label != target else target

    text = re.sub(r"<([^<>]+)>", unwrap, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]+", " ", text).strip()


# -- splitting --------------------------------------------------------------------------------------------------


def split_text(mrkdwn: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Chunks of at most `limit` characters, cut at line (else word) boundaries, code blocks kept whole-looking."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    in_code = False
    room = limit - 4  # space to close an open code block ("\n```")

    def flush() -> None:
        nonlocal current, size
        if not current:
            return
        text = "\n".join(current)
        if in_code:
            text += "\n```"
        chunks.append(text)
        current = ["```"] if in_code else []
        size = 3 if in_code else 0

    for line in mrkdwn.split("\n"):
        closing = line == "```" and in_code  # always fits: `room` kept space for it
        for piece in _cut_long(line, room - 4):
            extra = len(piece) + (1 if current else 0)
            if not closing and size + extra > room and current and current != ["```"]:
                flush()
                extra = len(piece) + (1 if current else 0)
            current.append(piece)
            size += extra
        if line == "```":
            in_code = not in_code
    if current and current != ["```"]:
        chunks.append("\n".join(current))
    return [chunk for chunk in chunks if chunk.strip()] or [""]


def _cut_long(line: str, limit: int) -> Iterator[str]:
    """A line longer than `limit` in pieces, cut at a space where possible and never inside <...> or &...;."""
    while len(line) > limit:
        cut = line.rfind(" ", limit // 2, limit)
        if cut <= 0:
            cut = limit
        opening = line.rfind("<", 0, cut)
        if opening > line.rfind(">", 0, cut) and opening > 0:
            cut = opening
        amp = line.rfind("&", max(0, cut - 6), cut)
        if amp >= 0 and ";" not in line[amp:cut]:
            cut = amp if amp > 0 else cut
        yield line[:cut]
        line = line[cut:].lstrip(" ")
    yield line


def _size(block: Block) -> int:
    """The characters of text a block carries: what Slack's undocumented per-message limit counts."""
    if block["type"] == "section":
        return len(block["text"]["text"])
    if block["type"] == "context":
        return sum(len(e.get("text", "")) for e in block["elements"])
    if block["type"] == "actions":
        return sum(len(e["text"]["text"]) + len(e.get("value", "")) for e in block["elements"])
    return 0


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(header: str, items: Sequence[str]) -> list[Block]:
    """`header` and `items` in context blocks of at most 10 mrkdwn elements of at most 3,000 characters."""
    elements: list[str] = []
    current = header
    for item in items:
        item = item[: SECTION_LIMIT - len(header) - 1]
        joined = f"{current} {item}" if current == header else f"{current}  ·  {item}"
        if len(joined) > SECTION_LIMIT:
            elements.append(current)
            joined = item
        current = joined
    elements.append(current)
    return [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in elements[i : i + CONTEXT_ELEMENTS]]}
        for i in range(0, len(elements), CONTEXT_ELEMENTS)
    ]


def pack(blocks: list[Block], fallback: str) -> list[SlackMessage]:
    """Blocks into as few messages as fit Slack's limits; each message's fallback text is its own part."""
    messages: list[list[Block]] = [[]]
    size = 0
    for block in blocks:
        block_size = _size(block)
        if messages[-1] and (len(messages[-1]) >= MAX_BLOCKS or size + block_size > MESSAGE_BUDGET):
            messages.append([])
            size = 0
        messages[-1].append(block)
        size += block_size
    out: list[SlackMessage] = []
    for number, message in enumerate(messages, 1):
        sections = [b["text"]["text"] for b in message if b["type"] == "section"]
        text = "\n".join(sections) or fallback
        if len(messages) > 1 and number > 1:
            text = f"({number}/{len(messages)}) {text}"
        out.append(SlackMessage(_truncate(text, FALLBACK_LIMIT), message))
    return out


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- replies ----------------------------------------------------------------------------------------------------


def sources_line(source: Source) -> str:
    title = source.title.strip() or "Untitled source"
    title = _truncate(" ".join(title.split()), TITLE_LIMIT)
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


def _skipped_lines(failed: Sequence[FailedAttachment]) -> list[str]:
    return [f":warning: {escape(f.name)}: {escape(f.error)}" for f in failed]


def render_answer(answer: Answer) -> list[SlackMessage]:
    """The answer, the files Q (or the attachment policy) left out and why, its sources, the feedback buttons."""
    blocks = [_section(chunk) for chunk in split_text(to_mrkdwn(answer.text)) if chunk]
    if answer.failed_attachments:
        blocks += _context("*Files not read:*", _skipped_lines(answer.failed_attachments))
    if answer.sources:
        blocks += _context("*Sources:*", [sources_line(s) for s in answer.sources])
    if answer.conversation_id and answer.message_id:
        blocks.append(feedback_block(answer))
    return pack(blocks, fallback=escape(_truncate(answer.text, FALLBACK_LIMIT)))


def render_notice(notice: Notice) -> SlackMessage:
    """Command results, prompts and errors. A link notice is a button; its URL is also in the fallback text."""
    text = escape(commands_as_slash(notice.text))
    if notice.kind is NoticeKind.ERROR:
        text = f":warning: {text}"
    blocks: list[Block] = [_section(chunk) for chunk in split_text(text)]
    if notice.failed_attachments:
        blocks += _context("*Files not read:*", _skipped_lines(notice.failed_attachments))
    url = safe_url(notice.url)
    if notice.kind is NoticeKind.LINK and url:
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
    return SlackMessage(escaped, [_section(escaped)])


def thinking() -> SlackMessage:
    return SlackMessage(THINKING, [_section(THINKING)])


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
