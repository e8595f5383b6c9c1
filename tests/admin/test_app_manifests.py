"""`qbot slack manifest` and `qbot teams package --version`: the chat apps' manifests with this deployment filled in."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from adapters.slack.app import EVENTS_PATH
from qbot.cli import main
from qbot.slack import MANIFEST

TEAMS_APP_ID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"


def request_urls(manifest: dict) -> list[str]:
    settings = manifest["settings"]
    return [settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"],
            *(command["url"] for command in manifest["features"]["slash_commands"])]


def test_the_slack_manifest_gets_the_public_url_in_every_request_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "slack.yaml"
    assert main(["slack", "manifest", "--public-url", "https://qbot.corp.example/", "--out", str(out)]) == 0
    text = out.read_text()
    manifest = yaml.safe_load(text)
    urls = request_urls(manifest)
    assert len(urls) == 6 and set(urls) == {"https://qbot.corp.example" + EVENTS_PATH}
    assert "example.com" not in text  # no placeholder left anywhere, comments included
    assert manifest["settings"]["socket_mode_enabled"] is False
    # everything else is the repository's manifest, unchanged
    original = yaml.safe_load(MANIFEST.read_text())
    for key in ("display_information", "oauth_config", "_metadata"):
        assert manifest[key] == original[key]
    said = capsys.readouterr().out
    assert f"Wrote {out}" in said and "start qbot" in said and "verify the request URL" in said


def test_a_path_prefix_is_kept_and_qbot_public_url_is_the_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QBOT_PUBLIC_URL", "https://apps.corp.example/qbot")
    assert main(["slack", "manifest"]) == 0  # to standard output, for pasting
    captured = capsys.readouterr()
    assert set(request_urls(yaml.safe_load(captured.out))) == {"https://apps.corp.example/qbot/slack/events"}
    assert "QBOT_SLACK_SIGNING_SECRET" in captured.err and "Next:" not in captured.out


def test_socket_mode_is_switched_on_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slack", "manifest", "--public-url", "https://qbot.corp.example", "--socket-mode"]) == 0
    captured = capsys.readouterr()
    assert yaml.safe_load(captured.out)["settings"]["socket_mode_enabled"] is True
    assert "QBOT_SLACK_APP_TOKEN" in captured.err


@pytest.mark.parametrize(
    ("public_url", "complaint"),
    [
        ("", "no public URL: give --public-url https://<the bot's host> or set QBOT_PUBLIC_URL"),
        *((url, "the public URL must be the bot's https:// address")
          for url in ("http://qbot.corp.example", "qbot.corp.example", "https://", "https://q.example/?x=1")),
    ],
)
def test_a_slack_manifest_needs_an_https_public_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, public_url: str,
    complaint: str,
) -> None:
    monkeypatch.delenv("QBOT_PUBLIC_URL", raising=False)
    out = tmp_path / "slack.yaml"
    assert main(["slack", "manifest", "--public-url", public_url, "--out", str(out)]) == 2
    assert f"qbot slack manifest: {complaint}" in capsys.readouterr().err
    assert not out.exists()


def teams_manifest(path: Path) -> dict:
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        manifest: dict = json.loads(archive.read("manifest.json"))
    return manifest


def test_the_teams_package_takes_a_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["teams", "package", "--app-id", TEAMS_APP_ID, "--public-url", "https://qbot.corp.example"]
    first, update = tmp_path / "first.zip", tmp_path / "update.zip"
    assert main([*common, "--out", str(first)]) == 0
    assert teams_manifest(first)["version"] == "1.0.0"  # the repository manifest's
    assert main([*common, "--version", "1.2.10", "--out", str(update)]) == 0
    assert teams_manifest(update)["version"] == "1.2.10"
    assert "version 1.2.10" in capsys.readouterr().out


@pytest.mark.parametrize("version", ["1.2", "v1.2.3", "1.02.3", "1.2.3-beta", "1.2.3\n", ""])
def test_a_teams_version_that_is_not_major_minor_patch_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    out = tmp_path / "x.zip"
    args = ["--app-id", TEAMS_APP_ID, "--public-url", "https://qbot.corp.example", "--version", version]
    assert main(["teams", "package", *args, "--out", str(out)]) == 2
    assert "the version must be MAJOR.MINOR.PATCH" in capsys.readouterr().err and not out.exists()
