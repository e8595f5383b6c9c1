"""The Slack app manifest is valid YAML that grants exactly what the code uses and points at /slack/events."""

from __future__ import annotations

from pathlib import Path

import yaml

from adapters.slack.app import BOT_EVENTS, BOT_SCOPES, EVENTS_PATH, SLASH_COMMANDS

MANIFEST = Path(__file__).parents[3] / "manifests" / "slack" / "manifest.yaml"


def test_the_manifest_grants_what_the_code_needs_and_routes_to_one_url() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(BOT_SCOPES)
    settings = manifest["settings"]
    assert tuple(settings["event_subscriptions"]["bot_events"]) == BOT_EVENTS
    commands = manifest["features"]["slash_commands"]
    assert tuple(c["command"] for c in commands) == SLASH_COMMANDS
    urls = {settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"],
            *(c["url"] for c in commands)}
    assert urls == {"https://qbot.example.com" + EVENTS_PATH}
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is False and "socket_mode_enabled: true" in MANIFEST.read_text()
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True  # users can DM the bot
    assert all(len(c["description"]) <= 100 for c in commands)
    assert 175 <= len(manifest["display_information"]["long_description"]) <= 4000
