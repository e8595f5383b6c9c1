"""What the bot says in its log when it starts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.conftest import RunningBot


def test_turning_the_email_rule_off_is_announced_as_forwardable_links(
    make_bot: Callable[..., RunningBot], caplog: pytest.LogCaptureFixture
) -> None:
    make_bot(QBOT_REQUIRE_EMAIL_MATCH="false")
    [warning] = [r for r in caplog.records if r.name == "qbot.app" and r.levelname == "WARNING"]
    assert "sign-in links become forwardable" in warning.getMessage()
    assert "binds their own IdP account to the chat account that asked for it" in warning.getMessage()


def test_with_the_email_rule_on_nothing_is_announced(
    make_bot: Callable[..., RunningBot], caplog: pytest.LogCaptureFixture
) -> None:
    make_bot()
    assert not [r for r in caplog.records if "forwardable" in r.getMessage()]
