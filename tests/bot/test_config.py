"""Settings from the environment: the reply mode of shared places, and the env parsers every module uses."""

from __future__ import annotations

import pytest

from bot.config import Settings, env_flag, env_int, env_seconds
from bot.errors import ConfigError


def test_shared_places_answer_privately_unless_told_otherwise() -> None:
    assert Settings.from_env({}).channel_reply_mode == "private"
    assert Settings.from_env({"QBOT_CHANNEL_REPLY_MODE": "thread"}).channel_reply_mode == "thread"
    assert Settings.from_env({"QBOT_CHANNEL_REPLY_MODE": "Ephemeral"}).channel_reply_mode == "private"  # old name
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"QBOT_CHANNEL_REPLY_MODE": "public"})
    assert "private or thread" in refused.value.user_message


def test_env_parsers_name_the_setting_they_refuse() -> None:
    env = {"FLAG": "yes", "BAD_FLAG": "perhaps", "N": "7", "BAD_N": "7.5", "SMALL_N": "0", "S": "0.25", "BAD_S": "nan"}
    assert env_flag(env, "FLAG", False) is True and env_flag(env, "UNSET", True) is True
    assert env_int(env, "N", 1) == 7 and env_int(env, "UNSET", 3) == 3
    assert env_seconds(env, "S", 1.0) == 0.25 and env_seconds(env, "UNSET", 2.5) == 2.5
    for parse, name in ((env_flag, "BAD_FLAG"), (env_int, "BAD_N"), (env_int, "SMALL_N"), (env_seconds, "BAD_S")):
        with pytest.raises(ConfigError) as refused:
            parse(env, name, 1)  # type: ignore[operator]
        assert name in refused.value.user_message
