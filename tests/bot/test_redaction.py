"""Redaction: each shape of secret is removed (and its label kept), ordinary text is not, and every record of
every logger is redacted before any handler or formatter sees it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from bot.redaction import REDACTED, Redactor, configured_secrets, install_redaction


@pytest.fixture
def redactor() -> Iterator[Redactor]:
    """Installed over Python's own record factory; the previous factory is put back afterwards."""
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        yield install_redaction()
    finally:
        logging.setLogRecordFactory(previous)


FERNET = Fernet(Fernet.generate_key()).encrypt(b"refresh token").decode()
SHAPES = [
    ('{"refresh_token": "RT-json-0123456789", "expires_in": 300}', "RT-json-0123456789", '"refresh_token": "'),
    ("{'X-Amz-Security-Token': b'SESSION-repr-0123456789'}", "SESSION-repr-0123456789", "'X-Amz-Security-Token': b'"),
    ("{'token_type': 'Bearer', 'access_token': 'AT-repr-0123456789'}", "AT-repr-0123456789", "'access_token': '"),
    ("RegisteredClient(client_id='qbot', client_secret='cs-kw-0123456789')", "cs-kw-0123456789", "client_secret='"),
    ("<SecretAccessKey>SAK-xml-0123456789</SecretAccessKey>", "SAK-xml-0123456789", "<SecretAccessKey>"),
    ("<SessionToken>ST-xml-0123456789</SessionToken>", "ST-xml-0123456789", "</SessionToken>"),
    ("GET /auth/callback?code=CODE-0123456789&state=s1", "CODE-0123456789", "&state=s1"),
    ("grant_type=refresh_token&refresh_token=RT-form-0123456789", "RT-form-0123456789", "grant_type=refresh_token"),
    ("code_verifier=CV-form-0123456789&client_id=qbot", "CV-form-0123456789", "&client_id=qbot"),
    ("Action=AssumeRoleWithWebIdentity&WebIdentityToken=WIT-form-0123456789", "WIT-form-0123456789", "Action="),
    ("host:sts\nx-amz-security-token:ST-canonical-0123456789\nx-amz-date:2026", "ST-canonical-0123456789",
     "\nx-amz-date:2026"),
    ("retrying with Bearer AT-bearer-0123456789 now", "AT-bearer-0123456789", " now"),
    ("sent Basic cWJvdDpzZWNyZXQtdmFsdWU= to the IdP", "cWJvdDpzZWNyZXQtdmFsdWU=", " to the IdP"),
    ("id_token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl checked",
     "eyJzdWIiOiJhbGljZSJ9", " checked"),
    (f"vault value {FERNET} stored", FERNET, " stored"),
    ("token xoxb-1234567890-0987654321-AbCdEfGhIjKl used", "xoxb-1234567890-0987654321-AbCdEfGhIjKl", " used"),
    ("socket mode with xapp-1-A0123456-789-abcdef0123", "xapp-1-A0123456-789-abcdef0123", "socket mode"),
    ("creds IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ== ok", "IQoJb3JpZ2luX2VjEJr", " ok"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA", ""),
    ("link http://bot.example.com/auth/start?t=LINK-0123456789 sent", "LINK-0123456789", "/auth/start?t="),
]


# Stable ids (the Fernet token is random): parallel runners must collect the same tests.
SHAPE_IDS = ["fernet" if shape[1] == FERNET else shape[1][:24] for shape in SHAPES]


@pytest.mark.parametrize(("text", "secret", "kept"), SHAPES, ids=SHAPE_IDS)
def test_each_shape_of_secret_is_redacted_and_its_context_kept(text: str, secret: str, kept: str) -> None:
    redacted = Redactor(logging.LogRecord).redact(text)
    assert secret not in redacted and REDACTED in redacted
    assert kept in redacted


@pytest.mark.parametrize(
    "text",
    [
        "HTTP Request: POST https://sts.amazonaws.com/ status_code=200",
        "ListConversations nextToken=abc123def456",
        "{'Error': {'Code': 'AccessDenied', 'Message': 'Not authorized'}}",
        "<AccessKeyId>ASIAO8CVLP4Y6S8AQI9X</AccessKeyId>",
        "alice@example.com asked in thread t1 (fingerprint 1a2b3c4d)",
        "Basic authentication is not supported; use a Bearer token",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor(logging.LogRecord).redact(text) == text


def test_configured_values_are_redacted_exactly_also_url_encoded_and_short_ones_are_not() -> None:
    redactor = Redactor(logging.LogRecord)
    redactor.add_secrets(["teams p@ss/w0rd+1", "short"])
    assert redactor.redact("password is teams p@ss/w0rd+1!") == f"password is {REDACTED}!"
    assert redactor.redact("form: teams%20p%40ss%2Fw0rd%2B1&x=1") == f"form: {REDACTED}&x=1"
    assert redactor.redact("a short note") == "a short note"


def test_every_record_of_every_logger_is_redacted_before_handlers_and_formatters(redactor: Redactor) -> None:
    """A child logger at DEBUG whose records propagate to the root's handlers, plus a handler of its own: none
    of them gets a secret, in the message, args, exception or stack."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("botocore.endpoint.redaction-test")
    own, at_root = Keep(), Keep()
    own.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(own)
    logging.root.addHandler(at_root)
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("Response body: %s", b"<SessionToken>ST-0123456789</SessionToken>")
        try:
            raise ValueError("refresh_token=RT-exception-0123456789")
        except ValueError:
            logger.exception("failed for %s", "xoxb-1234567890-abcdefghijkl", stack_info=True)
    finally:
        logger.setLevel(saved)
        logger.removeHandler(own)
        logging.root.removeHandler(at_root)

    assert len(records) == 4  # two records, each seen by both handlers
    output = "\n".join(own.format(record) for record in records)
    for secret in ("ST-0123456789", "RT-exception-0123456789", "xoxb-1234567890"):
        assert secret not in output
    assert "Traceback" in output and "ValueError: refresh_token=[redacted]" in output
    assert all(record.args is None and record.exc_info is None for record in records)
    assert records[0].getMessage() == "Response body: b'<SessionToken>[redacted]</SessionToken>'"


def test_installing_twice_wraps_the_factory_once(redactor: Redactor) -> None:
    assert install_redaction() is redactor
    assert logging.getLogRecordFactory() == redactor.make_record


def test_a_broken_format_string_never_fails_the_callers_log_call(redactor: Redactor) -> None:
    record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "%d token=%s", ("x",), None)
    assert record.getMessage().startswith("%d token=[redacted]")


def test_the_secret_settings_are_found_by_name() -> None:
    env = {
        "QBOT_OIDC_CLIENT_SECRET": "client-secret-1",
        "QBOT_TOKEN_KEYS": "key-one-aaaaaaaa, key-two-bbbbbbbb",
        "QBOT_SLACK_BOT_TOKEN": "xoxb-1",
        "QBOT_TEAMS_APP_PASSWORD": "teams-password",
        "QBOT_REDIS_URL": "rediss://:redis-password@cache:6380/0",
        "QBOT_PUBLIC_URL": "https://bot.example.com",
        "QBOT_OIDC_CLIENT_ID": "qbot",
        "AWS_SECRET_ACCESS_KEY": "not ours to read here",
    }
    assert sorted(configured_secrets(env)) == sorted(
        ["client-secret-1", "key-one-aaaaaaaa", "key-two-bbbbbbbb", "xoxb-1", "teams-password", "redis-password"]
    )


def test_the_command_line_installs_redaction_with_the_configured_secrets_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every `qbot` command (serve, sandbox, doctor, admin) logs only after this: their secrets are known."""
    from qbot.cli import main

    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    monkeypatch.setenv("QBOT_TEAMS_APP_PASSWORD", "opaque teams password 7")
    try:
        assert main(["keygen"]) == 0
        logger = logging.getLogger("msal")
        record = logger.makeRecord("msal", logging.DEBUG, "f", 1, "secret %s", ("opaque teams password 7",), None)
    finally:
        logging.setLogRecordFactory(previous)
    assert record.getMessage() == f"secret {REDACTED}"
