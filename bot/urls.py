"""The one rule for links qbot passes on to a chat: what may become something a user can click.

A URL that came from outside (a source Q cites, a link inside Q's answer text) is offered only when it is an
absolute http(s) URL with a host, carries no credentials (`https://user:pass@host/` hands a secret to whoever
clicks, and `https://good.example@evil.example/` misleads), holds no control characters, and is at most
`MAX_LINK_LENGTH` characters. Anything else (`javascript:`, `data:`, `mailto:`, relative paths) is no link:
the caller shows the text without one. Adapters trust what passes and only escape it for their own syntax.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_LINK_LENGTH = 2000  # what browsers and chat clients reliably open; Q's citations are far shorter
_SCHEMES = frozenset({"http", "https"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_link(url: str | None) -> str | None:
    """`url` (trimmed) when a chat may offer it as a link, else None."""
    if not url:
        return None
    url = url.strip()
    if len(url) > MAX_LINK_LENGTH or _CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises ValueError on a port that is no number in range
    except ValueError:
        return None
    if parts.scheme.lower() not in _SCHEMES or not host or "@" in parts.netloc:
        return None
    return url
