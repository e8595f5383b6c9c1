"""Settings from the environment: the reply mode of shared places, and the env parsers every module uses."""

from __future__ import annotations

import pytest

from bot.config import ConfigProblems, Settings, env_flag, env_int, env_seconds, problems_of
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


SAML_ENV = {
    "QBOT_PUBLIC_URL": "https://qbot.example.com",
    "QBOT_SAML_METADATA_URL": "https://login.example.com/federationmetadata.xml",
    "QBOT_SAML_PROVIDER_ARN": "arn:aws:iam::123456789012:saml-provider/entra",
    "QBOT_ROLE_ARN": "arn:aws:iam::123456789012:role/qbot-user",
    "QBOT_Q_APP_ID": "5a4db0a1-1b0e-4f43-9d5c-0e7f3b6a2c11",
    "QBOT_TOKEN_KEYS": "0" * 43 + "=",
}


def test_saml_mode_is_chosen_by_the_metadata_and_needs_no_oidc_settings() -> None:
    settings = Settings.from_env(SAML_ENV)
    settings.check_complete()
    assert settings.identity_mode == "saml"
    assert settings.saml_acs_url == "https://qbot.example.com/auth/saml/acs"
    assert settings.saml_sp_entity_id == "https://qbot.example.com/auth/saml/metadata"  # the default
    assert settings.saml_session_seconds == 3600
    by_file = {k: v for k, v in SAML_ENV.items() if k != "QBOT_SAML_METADATA_URL"}
    assert Settings.from_env({**by_file, "QBOT_SAML_METADATA_FILE": "/etc/qbot/idp.xml"}).identity_mode == "saml"
    assert Settings.from_env({**by_file, "QBOT_OIDC_ISSUER": "https://idp"}).identity_mode == "oidc"
    chosen = Settings.from_env({**SAML_ENV, "QBOT_SAML_SP_ENTITY_ID": "urn:amazon:webservices"})
    assert chosen.saml_sp_entity_id == "urn:amazon:webservices"


def test_saml_session_seconds_stay_within_what_iam_allows() -> None:
    assert Settings.from_env({**SAML_ENV, "QBOT_SAML_SESSION_SECONDS": "43200"}).saml_session_seconds == 43200
    for bad in ("899", "43201", "an hour"):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({**SAML_ENV, "QBOT_SAML_SESSION_SECONDS": bad})
        assert "QBOT_SAML_SESSION_SECONDS" in refused.value.user_message


def test_contradictory_or_missing_saml_settings_are_all_named_at_once() -> None:
    env = {
        **SAML_ENV,
        "QBOT_OIDC_ISSUER": "https://idp.example.com",
        "QBOT_SAML_METADATA_FILE": "/etc/qbot/idp.xml",
        "QBOT_SAML_PROVIDER_ARN": "",
        "QBOT_ROLE_ARN": "",
    }
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env).check_complete()
    message = refused.value.user_message
    assert "QBOT_OIDC_ISSUER and QBOT_SAML_METADATA_URL/QBOT_SAML_METADATA_FILE are both set" in message
    assert "QBOT_SAML_METADATA_URL and QBOT_SAML_METADATA_FILE are both set" in message
    assert "missing configuration: QBOT_SAML_PROVIDER_ARN, QBOT_ROLE_ARN" in message
    assert "QBOT_OIDC_CLIENT_ID" not in message  # not needed in SAML mode


def test_saml_provider_and_metadata_url_must_be_what_they_claim() -> None:
    env = {
        **SAML_ENV,
        "QBOT_SAML_PROVIDER_ARN": "arn:aws:iam::123456789012:oidc-provider/idp.example.com",
        "QBOT_SAML_METADATA_URL": "http://login.example.com/metadata.xml",
    }
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env).check_complete()
    assert "QBOT_SAML_PROVIDER_ARN is not an IAM SAML provider ARN" in refused.value.user_message
    assert "QBOT_SAML_METADATA_URL must be https://" in refused.value.user_message


def test_oidc_mode_still_names_what_it_misses() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({}).check_complete()
    assert refused.value.user_message == (
        "missing configuration: QBOT_OIDC_ISSUER, QBOT_OIDC_CLIENT_ID, QBOT_ROLE_ARN, QBOT_Q_APP_ID, QBOT_TOKEN_KEYS"
    )


def test_every_malformed_value_is_named_at_once_not_the_first_only() -> None:
    env = {
        "QBOT_PORT": "eighty", "QBOT_CHANNEL_REPLY_MODE": "loud", "QBOT_ROLE": "boss", "QBOT_OIDC_SCOPES": "email",
        "QBOT_TOKEN_KEYS": "not-a-key", "QBOT_LINK_TTL_SECONDS": "0", "QBOT_REQUIRE_EMAIL_MATCH": "perhaps",
        "QBOT_TURN_CLAIM_SECONDS": "soon", "QBOT_SAML_SESSION_SECONDS": "60",
    }
    with pytest.raises(ConfigProblems) as refused:
        Settings.from_env(env)
    assert refused.value.problems == (
        "QBOT_PORT must be a whole number, not 'eighty'",
        "QBOT_OIDC_SCOPES must include openid",
        "QBOT_TOKEN_KEYS key #1 is not 32 bytes of URL-safe base64; make one with `qbot keygen`",
        "QBOT_LINK_TTL_SECONDS must be at least 1",
        "QBOT_REQUIRE_EMAIL_MATCH must be true or false, not 'perhaps'",
        "QBOT_CHANNEL_REPLY_MODE must be private or thread, not 'loud'",
        "QBOT_ROLE (qbot serve --role) must be web, worker or all, not 'boss'",
        "QBOT_TURN_CLAIM_SECONDS must be a number of seconds, not 'soon'",
        "QBOT_SAML_SESSION_SECONDS must be at least 900",
    )
    assert problems_of(refused.value) == refused.value.problems
    assert problems_of(ConfigError("one thing")) == ("one thing",)


def test_malformed_token_keys_are_reported_as_malformed_not_also_as_missing() -> None:
    settings, problems = Settings.read({"QBOT_TOKEN_KEYS": "not-a-key"})
    assert problems == ["QBOT_TOKEN_KEYS key #1 is not 32 bytes of URL-safe base64; make one with `qbot keygen`"]
    with pytest.raises(ConfigError) as refused:
        settings.check_complete()
    assert refused.value.user_message == (
        "missing configuration: QBOT_OIDC_ISSUER, QBOT_OIDC_CLIENT_ID, QBOT_ROLE_ARN, QBOT_Q_APP_ID"
    )
    _, blank = Settings.read({"QBOT_TOKEN_KEYS": " , "})  # nothing in it: missing, as if unset
    with pytest.raises(ConfigError) as missing:
        Settings.read({"QBOT_TOKEN_KEYS": " , "})[0].check_complete()
    assert blank == [] and missing.value.user_message.endswith("QBOT_Q_APP_ID, QBOT_TOKEN_KEYS")


def test_the_default_public_url_follows_the_port_and_a_loopback_host() -> None:
    assert Settings.from_env({}).public_url == "http://127.0.0.1:3978"
    assert Settings.from_env({"QBOT_PORT": "8080"}).public_url == "http://127.0.0.1:8080"
    assert Settings.from_env({"QBOT_PORT": "8080", "QBOT_HOST": "0.0.0.0"}).public_url == "http://127.0.0.1:8080"
    assert Settings.from_env({"QBOT_PORT": "8080", "QBOT_HOST": "::1"}).public_url == "http://[::1]:8080"
    assert Settings.from_env({"QBOT_HOST": "127.0.0.2"}).public_url == "http://127.0.0.2:3978"
    assert Settings.from_env({"QBOT_HOST": "localhost", "QBOT_PORT": "1"}).public_url == "http://localhost:1"
    derived = Settings.from_env({"QBOT_PORT": "8080"})
    assert derived.redirect_uri == "http://127.0.0.1:8080/auth/callback"
    assert derived.saml_sp_entity_id == "http://127.0.0.1:8080/auth/saml/metadata"
    chosen = Settings.from_env({"QBOT_PORT": "8080", "QBOT_PUBLIC_URL": "https://qbot.example.com/"})
    assert chosen.public_url == "https://qbot.example.com"


def test_a_port_the_system_chose_becomes_the_default_public_url_but_never_overrides_a_chosen_one() -> None:
    chosen_by_os = Settings.from_env({"QBOT_PORT": "0"}).listening_on(41234)
    assert (chosen_by_os.port, chosen_by_os.public_url) == (41234, "http://127.0.0.1:41234")
    assert chosen_by_os.saml_sp_entity_id == "http://127.0.0.1:41234/auth/saml/metadata"
    public = Settings.from_env({"QBOT_PORT": "0", "QBOT_PUBLIC_URL": "https://qbot.example.com",
                                "QBOT_SAML_SP_ENTITY_ID": "urn:amazon:webservices"}).listening_on(41234)
    assert (public.port, public.public_url) == (41234, "https://qbot.example.com")
    assert public.saml_sp_entity_id == "urn:amazon:webservices"
