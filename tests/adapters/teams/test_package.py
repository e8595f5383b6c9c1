"""`qbot teams package`: the installable zip, its manifest valid against the schema it declares."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import jsonschema
import pytest

from qbot.cli import main

APP_ID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
SCHEMAS = {  # declared $schema -> the copy the tests can read offline
    "https://developer.microsoft.com/json-schemas/teams/v1.22/MicrosoftTeams.schema.json": (
        Path(__file__).parent / "schemas" / "MicrosoftTeams.v1.22.schema.json"
    ),
}


def _png_header(data: bytes) -> tuple[int, int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, _depth, color_type = struct.unpack(">IIBB", data[16:26])
    return width, height, color_type


def _validate(manifest: dict) -> None:
    schema = json.loads(SCHEMAS[manifest["$schema"]].read_text())
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(manifest)


def test_package_zip_holds_a_valid_manifest_with_the_app_id_and_icons(tmp_path: Path) -> None:
    out = tmp_path / "qbot-teams.zip"
    args = ["--app-id", APP_ID, "--public-url", "https://qbot.corp.example/", "--out", str(out)]
    assert main(["teams", "package", *args]) == 0
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        color, outline = archive.read("color.png"), archive.read("outline.png")
    _validate(manifest)
    assert manifest["id"] == APP_ID and manifest["bots"][0]["botId"] == APP_ID
    assert manifest["validDomains"] == ["qbot.corp.example"]
    assert manifest["developer"]["websiteUrl"] == "https://qbot.corp.example"
    bot = manifest["bots"][0]
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"} and bot["supportsFiles"] is True
    titles = {c["title"] for lists in bot["commandLists"] for c in lists["commands"]}
    assert titles >= {"qlink", "qunlink", "qstatus", "qnew", "help"}  # and the prompt starters (test_streaming)
    assert _png_header(color)[:2] == (192, 192)
    assert _png_header(outline) == (32, 32, 6)  # RGBA: the outline icon is transparent


def test_repository_manifest_is_valid_as_is() -> None:
    manifest = json.loads((Path(__file__).parents[3] / "manifests" / "teams" / "manifest.json").read_text())
    _validate(manifest)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--app-id", "not-a-guid", "--public-url", "https://q.example"], "GUID"),
        (["--app-id", APP_ID, "--public-url", "http://q.example"], "https://"),
    ],
)
def test_bad_inputs_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], complaint: str
) -> None:
    out = tmp_path / "x.zip"
    assert main(["teams", "package", *args, "--out", str(out)]) == 2
    assert complaint in capsys.readouterr().err and not out.exists()
