"""Block Kit packing: mrkdwn text cut into sections, context and messages that Slack accepts.

Guarantees, whatever the text:
- every section's text is at most 3,000 characters, every context block at most 10 elements of at most 3,000
  characters, every message at most 50 blocks and at most `MESSAGE_BUDGET` characters of block text (Slack
  refuses larger ones with `msg_blocks_too_long`, well below its documented limits), so a long answer becomes
  several messages rather than an error;
- a split never cuts a link, an entity or a code block in half (an open code block is closed and reopened);
- every message carries a plain `text` fallback (notifications, screen readers, old clients).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

SECTION_LIMIT = 3000
CONTEXT_ELEMENTS = 10
MAX_BLOCKS = 50
MESSAGE_BUDGET = 12_000
FALLBACK_LIMIT = 3000

Block = dict[str, Any]


@dataclass(frozen=True)
class SlackMessage:
    """One chat.postMessage / chat.update / chat.postEphemeral payload (minus channel and thread)."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(header: str, items: Sequence[str]) -> list[Block]:
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
        out.append(SlackMessage(truncate(text, FALLBACK_LIMIT), message))
    return out


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
