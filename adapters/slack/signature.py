"""Slack's v0 request signature, checked over the raw body before anything in it is parsed.

Bolt verifies signatures too, but only after it has parsed the body (JSON, or a form with a JSON payload): a
deeply nested or malformed body, or a timestamp that isn't a number, then fails as a 500 before anyone is
authenticated. Here the raw bytes are checked first with slack_sdk's verifier (HMAC-SHA256 of
`v0:{timestamp}:{body}`, timestamps at most 5 minutes off); input it cannot take is simply not signed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from slack_sdk.signature import SignatureVerifier

_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # Unix seconds, as Slack sends them


class SlackSignature:
    def __init__(self, signing_secret: str) -> None:
        self._verifier = SignatureVerifier(signing_secret)

    def signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        # Equivalent mutants here: header names in another case (aiohttp's headers ignore case), a default other
        # than "" (neither a timestamp nor Slack's HMAC), "UTF-8" for "utf-8" (the same codec).
        timestamp = headers.get("X-Slack-Request-Timestamp") or ""
        signature = headers.get("X-Slack-Signature") or ""
        if not _TIMESTAMP.fullmatch(timestamp) or not signature:
            return False
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # Slack signs UTF-8 text: these bytes are not from Slack
            return False
        return self._verifier.is_valid(text, timestamp, signature)
