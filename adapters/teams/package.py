"""The Teams app package: `manifests/teams/` (manifest and icons) zipped with this deployment's app id and host.

Teams installs an app from a zip holding `manifest.json`, `color.png` (192x192) and `outline.png` (32x32) at
its root. The manifest in the repository carries placeholders (an all-zero GUID, qbot.example.com); the package
gets the Azure Bot's app id (as app id and bot id) and the host of `QBOT_PUBLIC_URL`.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "manifests" / "teams"
FILES = ("manifest.json", "color.png", "outline.png")
_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")  # the schema's shape
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class PackageError(ValueError):
    """Why no package could be made, in words for the operator."""


def manifest_for(
    app_id: str, public_url: str, source: Path = MANIFEST_DIR, *, version: str | None = None
) -> dict[str, Any]:
    if not _GUID.match(app_id or ""):
        raise PackageError(f"the app id must be the Azure Bot's Microsoft App ID (a GUID), not {app_id!r}")
    parts = urlsplit(public_url or "")
    if parts.scheme != "https" or not parts.hostname:
        raise PackageError(f"the public URL must be the bot's https:// address, not {public_url!r}")
    if version is not None and not _VERSION.fullmatch(version):
        raise PackageError(f"the version must be MAJOR.MINOR.PATCH (e.g. 1.0.1), not {version!r}")
    manifest: dict[str, Any] = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    manifest["id"] = app_id
    if version is not None:  # Teams takes an update of an installed app only with a higher version
        manifest["version"] = version
    for bot in manifest.get("bots", []):
        bot["botId"] = app_id
    site = f"https://{parts.netloc}"
    developer = manifest.setdefault("developer", {})
    for field in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        if "qbot.example.com" in developer.get(field, "qbot.example.com"):
            developer[field] = site
    manifest["validDomains"] = [parts.hostname]
    return manifest


def build_package(
    app_id: str, public_url: str, source: Path = MANIFEST_DIR, *, version: str | None = None
) -> bytes:
    manifest = manifest_for(app_id, public_url, source, version=version)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        for name in FILES[1:]:
            archive.writestr(name, (source / name).read_bytes())
    return buffer.getvalue()
