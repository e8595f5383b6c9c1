"""Slack's mrkdwn dialect: Q's markdown in, a user's Slack markup out, and the escaping that keeps both honest.

Guarantees:
- anything from Q or a user is escaped (`&`, `<`, `>`), so an answer cannot ping `<!channel>` or forge a link;
- a markdown link in Q's text becomes `<url|label>` only when the core's `safe_link` allows its URL, else its
  label alone; a URL placed in `<...>` is percent-encoded so it cannot end the link early;
- code (spans and fenced blocks) is kept verbatim, only escaped; an unclosed fence is closed.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from bot.urls import safe_link

_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_PRIVATE = re.compile("[\ue000\ue001]")


def escape(text: str) -> str:
    """Slack's three control characters: `&`, `<` and `>` must be entities in any text Slack parses."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link_target(url: str) -> str:
    """A URL the core has vouched for, percent-encoded where `<`, `>`, `|` or a space would break `<url|label>`."""
    return quote(url.strip(), safe="/:?#[]@!$&'()*+,;=%~.-_")


def link(url: str | None, label: str) -> str:
    """`<url|label>` for a URL the core has vouched for (a Source's, a Notice's), else the escaped label alone."""
    label = escape(label).replace("|", "¦")
    return f"<{link_target(url)}|{label}>" if url else label


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
    text = _AUTOLINK.sub(lambda m: keep(link(safe_link(m.group(1)), m.group(1))), text)
    text = _emphasis(escape(text))
    while _PLACEHOLDER.search(text):  # a link label may itself hold a code span
        text = _PLACEHOLDER.sub(lambda m: kept[int(m.group(1))], text)
    return text


def _md_link(label: str, url: str) -> str:
    target = safe_link(url)
    label = label.strip() or url
    if not target:
        return _emphasis(escape(label))
    return f"<{link_target(target)}|{_emphasis(escape(label)).replace('|', '¦')}>"


def _emphasis(text: str) -> str:
    text = _BOLD_ITALIC.sub(lambda m: f"{_BOLD_MARK}_{m.group(1)}_{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: _BOLD_MARK + (m.group(1) or m.group(2)) + _BOLD_MARK, text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    return text.replace(_BOLD_MARK, "*")


# -- Slack markup -> plain text ---------------------------------------------------------------------------------


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
