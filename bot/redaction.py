"""Secrets never reach a log handler, whatever the operator's logging configuration.

At DEBUG, botocore logs the id_token it trades at STS, the secret key and session token STS answers with, and
the session token again in every canonical request it signs; the HTTP clients log token requests and answers.
Quieting those loggers is not a guarantee: an operator may set them (or the root) to DEBUG, attach handlers
anywhere, or log with a JSON formatter that prints a record's `args`.

So redaction happens where every record is born: `install_redaction` wraps logging's record factory, which
`Logger.makeRecord` calls for every logger, before any filter, handler or formatter sees the record (a filter
on the root logger would not: records of child loggers propagate to the root's handlers, not its filters).
Each record leaves the factory with
- its message formatted (args merged in) and redacted, and `args` emptied;
- an exception as redacted traceback text (`exc_text`), `exc_info` dropped: no handler gets the exception
  object to format on its own;
- `stack_info` redacted.

What is redacted: the secret values configured at start-up (`add_secrets`, see `configured_secrets`), and by
pattern whatever is minted at run time: JWTs (id_tokens, access tokens), tokens and secrets named in query
strings, forms, JSON, Python reprs and XML (`refresh_token=…`, `'SecretAccessKey': '…'`,
`<SessionToken>…</SessionToken>`, `x-amz-security-token:…`), `Bearer`/`Basic` credentials, Fernet tokens
(sealed values), Slack tokens, AWS session tokens, PEM private keys and one-time link tokens.

Limits: `extra={...}` fields, which `Logger.makeRecord` sets after the factory (the calling code chooses
them; qbot never passes a secret there), output a library writes to stdout/stderr without `logging`, and a
record factory installed later that replaces this one instead of wrapping it.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8  # a shorter configured value is too likely an ordinary word to replace everywhere

#: What names a secret in a key=value, "key": "value" or <Key>value</Key> shape.
_NAMES = (
    r"refresh_token|access_token|id_token|client_secret|code_verifier|client_assertion|assertion|password|"
    r"token|secret|WebIdentityToken|SAMLAssertion|SAMLResponse|SecretAccessKey|SessionToken|secret_access_key|"
    r"session_token|aws_secret_access_key|aws_session_token|x-amz-security-token|authorization|cookie|set-cookie"
)
_QUERY_NAMES = _NAMES + "|code"  # an authorization code, in a redirect URL or a token request

_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, flags)
    for pattern, flags in (
        # "name": "value", 'name': b'value' (JSON, Python reprs of dicts and headers)
        (rf"(?P<keep>(?<![\w-])['\"](?:{_NAMES})['\"]\s*:\s*b?(?P<quote>['\"]))(?:(?!(?P=quote)).)*", re.I),
        # name='value' (Python reprs of objects: dataclasses, keyword arguments)
        (rf"(?P<keep>(?<![\w-])(?:{_NAMES})=(?P<quote>['\"]))(?:(?!(?P=quote)).)*", re.I),
        # <SecretAccessKey>value</SecretAccessKey> (STS's XML)
        (r"(?P<keep><(?P<tag>SecretAccessKey|SessionToken|WebIdentityToken|SAMLAssertion)>)[^<]*", 0),
        # name=value in query strings and form bodies
        (rf"(?P<keep>(?<![\w-])(?:{_QUERY_NAMES})=)[^&\s'\"<>]+", re.I),
        # name: value on a header line (botocore's canonical requests, raw HTTP)
        (r"(?P<keep>(?<![\w-])(?:x-amz-security-token|authorization|cookie|set-cookie):[ \t]*)[^\r\n'\"]+", re.I),
        # Bearer / Basic credentials, wherever they stand
        (r"(?P<keep>\b(?:Bearer|Basic) +)[A-Za-z0-9._~+/=-]{16,}", 0),
        # shapes that are secrets on their own
        (r"\beyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){1,4}", 0),  # JWT (JWS or JWE)
        (r"\bgAAAAA[A-Za-z0-9_-]{20,}=*", 0),  # Fernet token: a value sealed with QBOT_TOKEN_KEYS
        (r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]{8,}", 0),  # Slack bot, user and app-level tokens
        (r"\b(?:FwoGZXIvYXdz|IQoJb3JpZ2lu)[A-Za-z0-9+/=]{20,}", 0),  # AWS session tokens
        (r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
        (r"(?P<keep>/auth/start\?t=)[^&\s'\"<>]+", 0),  # a one-time link: whoever has it may link
    )
)

def _keep(match: re.Match[str]) -> str:
    return (match.groupdict().get("keep") or "") + REDACTED


class Redactor:
    """Removes secrets from text, and from every log record once installed (see the module docstring)."""

    def __init__(self, factory: Callable[..., logging.LogRecord]) -> None:
        self._factory = factory
        self._values: tuple[str, ...] = ()

    def add_secrets(self, values: Iterable[str]) -> None:
        """Redact these exact values too (and their URL-encoded forms); values under 8 characters are ignored."""
        found = set(self._values)
        for value in values:
            if len(value) >= MIN_SECRET_LENGTH:
                found.update({value, quote(value, safe="")})
        self._values = tuple(sorted(found, key=len, reverse=True))  # replaced whole: readers never see it change

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(_keep, text)
        return text

    def make_record(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        """The record factory: the wrapped factory's record, redacted before anyone else sees it."""
        record = self._factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is, never fail the caller's log call
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return record


def install_redaction() -> Redactor:
    """Wrap logging's record factory with a `Redactor`, once per process; returns the installed one."""
    current = logging.getLogRecordFactory()
    installed = getattr(current, "__self__", None)
    if isinstance(installed, Redactor):
        return installed
    redactor = Redactor(current)
    logging.setLogRecordFactory(redactor.make_record)
    return redactor


def configured_secrets(env: Mapping[str, str]) -> list[str]:
    """The secret values among QBOT_* settings: every *_SECRET, *_TOKEN, *_PASSWORD, *_KEY(S) value
    (comma-separated lists split) and the password of every *_URL."""
    found: list[str] = []
    for name, value in env.items():
        if not name.startswith("QBOT_") or not value:
            continue
        if name.endswith(("_SECRET", "_TOKEN", "_PASSWORD", "_KEY", "_KEYS")):
            found.extend(part.strip() for part in value.split(","))
        elif name.endswith("_URL"):
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.append(password)
    return found
