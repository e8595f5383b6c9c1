"""Q Business answers are markdown; Adaptive Card text blocks in Teams render only a subset of it.

The subset: **bold**, _italic_, bulleted (`- `) and numbered (`1. `) lists, and [links](https://…). Headings
become bold lines, `*`/`+` bullets become `-`, `__bold__` becomes `**bold**`, ~~strikethrough~~ loses its
tildes, images become links, links the core's `safe_link` refuses (anything but plain http(s)) lose their
target, and fenced code becomes segments of its own (shown in a monospace block). Citation markers like [1]
are kept: the Sources list uses the numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from bot.urls import safe_link

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[*+]\s+")
_BOLD_UNDERSCORE = re.compile(r"__(\S(?:.*?\S)?)__")
_STRIKE = re.compile(r"~~(.+?)~~")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]*)[^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class Segment:
    text: str
    code: bool = False


def link_target(url: str) -> str:
    """A URL the core has vouched for, fit for a markdown link target: spaces and parentheses escaped."""
    return quote(url.strip(), safe=":/?#@!$&'*+,;=%~-._[]")


def link_label(text: str) -> str:
    """Text that can sit inside [ ] of a markdown link without ending it early."""
    return " ".join(text.replace("[", "(").replace("]", ")").split())


def _line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading:
        return f"**{heading.group(1)}**" if heading.group(1) else ""
    line = _BULLET.sub(lambda m: f"{m.group(1)}- ", line)
    line = _BOLD_UNDERSCORE.sub(r"**\1**", line)
    line = _STRIKE.sub(r"\1", line)
    line = _IMAGE.sub(lambda m: f"[{m.group(1) or 'image'}]({m.group(2)})", line)

    def link(match: re.Match[str]) -> str:
        target = safe_link(match.group(2))
        return f"[{match.group(1)}]({link_target(target)})" if target else match.group(1)

    return _LINK.sub(link, line)


def to_teams(markdown: str) -> list[Segment]:
    """Split into prose (converted to the Teams subset) and code segments, in order; blanks dropped."""
    segments: list[Segment] = []
    prose: list[str] = []
    code: list[str] | None = None

    def flush_prose() -> None:
        text = "\n".join(prose).strip("\n")
        if text.strip():
            segments.append(Segment(text))
        prose.clear()

    for line in markdown.replace("\r\n", "\n").split("\n"):
        if _FENCE.match(line):
            if code is None:
                flush_prose()
                code = []
            else:
                if any(c.strip() for c in code):
                    segments.append(Segment("\n".join(code), code=True))
                code = None
            continue
        if code is not None:
            code.append(line)
        else:
            prose.append(_line(line))
    if code is not None and any(c.strip() for c in code):  # an unclosed fence: keep what it held
        segments.append(Segment("\n".join(code), code=True))
    flush_prose()
    return segments
