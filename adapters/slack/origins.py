"""Which URLs are Slack's own: the only places the bot token and users' private replies may be sent.

An origin is (scheme, host, port), compared exactly. Trusted are the configured Web API's origin
(`QBOT_SLACK_API_URL`, which tests point at a local fake) and https on port 443 to slack.com or any
*.slack.com host. Everything else is refused: plain http to Slack, another port on a Slack host, a look-alike
host (`files.slack.com.evil.example`), a URL that cannot be parsed.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def origin_of(url: str) -> Origin | None:
    """The URL's (scheme, host, port), with the scheme's default port filled in; None if it has none."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number, an unbalanced IPv6 bracket
        return None
    if scheme not in DEFAULT_PORTS or not host or port is None:
        return None
    return Origin(scheme, host, port)


def _is_slack_host(host: str) -> bool:
    return host == "slack.com" or host.endswith(".slack.com")


class SlackOrigins:
    def __init__(self, api_url: str) -> None:
        self.api = origin_of(api_url)

    def trusts(self, url: str) -> bool:
        origin = origin_of(url)
        if origin is None:
            return False
        if origin == self.api:
            return True
        return origin.scheme == "https" and origin.port == 443 and _is_slack_host(origin.host)
