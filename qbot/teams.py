"""`qbot teams package`: write the installable Teams app zip for this deployment."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def add_commands(commands: Any) -> None:
    teams = commands.add_parser("teams", help="Microsoft Teams helpers")
    actions = teams.add_subparsers(dest="teams_command", required=True)
    package = actions.add_parser(
        "package", help="write the Teams app package (manifest.json + icons) with the app id filled in"
    )
    package.add_argument("--app-id", help="the Azure Bot's Microsoft App ID [QBOT_TEAMS_APP_ID]")
    package.add_argument("--public-url", help="the bot's https:// address [QBOT_PUBLIC_URL]")
    package.add_argument(
        "--version", metavar="X.Y.Z",
        help="the app's version [the manifest's, 1.0.0]; Teams installs an update only with a higher one",
    )
    package.add_argument("--out", default="qbot-teams.zip", help="where to write the zip [qbot-teams.zip]")
    package.set_defaults(func=run_package)


def run_package(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from adapters.teams.package import PackageError, build_package, manifest_for

    app_id = args.app_id or env.get("QBOT_TEAMS_APP_ID", "")
    public_url = args.public_url or env.get("QBOT_PUBLIC_URL", "")
    try:
        data = build_package(app_id, public_url, version=args.version)
    except PackageError as exc:
        print(f"qbot teams package: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.write_bytes(data)
    version = manifest_for(app_id, public_url, version=args.version)["version"]
    print(f"Wrote {out} (app {app_id}, version {version}). Upload it in Teams: Apps > Manage your apps > "
          "Upload an app (an update: upload it again with a higher --version).")
    return 0
