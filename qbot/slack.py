"""`qbot slack manifest`: the Slack app manifest (`manifests/slack/manifest.yaml`) for this deployment.

The manifest in the repository points its request URLs (events, each slash command, interactivity: all the one
`POST /slack/events`) at the placeholder https://qbot.example.com; this command writes it with the bot's public
URL in every one of them, and with Socket Mode switched on when asked. It is edited as text, so the result
keeps the manifest's layout and needs no YAML library; it is checked to hold no placeholder before it is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "slack" / "manifest.yaml"
PLACEHOLDER = "https://qbot.example.com"
SOCKET_MODE_OFF = "socket_mode_enabled: false"


class ManifestError(ValueError):
    """Why no manifest could be written, in words for the operator."""


def add_commands(commands: Any) -> None:
    slack = commands.add_parser("slack", help="Slack helpers")
    actions = slack.add_subparsers(dest="slack_command", required=True)
    manifest = actions.add_parser(
        "manifest", help="write the Slack app manifest with the bot's public URL in every request URL"
    )
    manifest.add_argument("--public-url", help="the bot's https:// address [QBOT_PUBLIC_URL]")
    manifest.add_argument(
        "--socket-mode", action="store_true",
        help="Socket Mode (QBOT_SLACK_APP_TOKEN): Slack connects out to nothing, the bot connects to Slack",
    )
    manifest.add_argument("--out", help="where to write it [standard output, to paste]")
    manifest.set_defaults(func=run_manifest)


def manifest_for(public_url: str, *, socket_mode: bool = False, source: Path = MANIFEST) -> str:
    """The manifest's text with every request URL at `public_url` (https, a host, maybe a path prefix)."""
    if not public_url:
        raise ManifestError("no public URL: give --public-url https://<the bot's host> or set QBOT_PUBLIC_URL")
    parts = urlsplit(public_url)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ManifestError(
            f"the public URL must be the bot's https:// address (Slack sends events only to https), not {public_url!r}"
        )
    base = f"https://{parts.netloc}{parts.path.rstrip('/')}"
    text = source.read_text(encoding="utf-8")
    body = text[text.index("_metadata:"):]  # the header's instructions are for editing it by hand
    body = body.replace(PLACEHOLDER, base)
    if socket_mode:
        body = body.replace(SOCKET_MODE_OFF, "socket_mode_enabled: true")
    if "qbot.example.com" in body:  # a placeholder this command does not know how to fill
        raise ManifestError(f"{source} still names qbot.example.com after filling in the URL")
    mode = "Socket Mode: the request URLs are not used" if socket_mode else f"requests go to {base}/slack/events"
    header = (
        f"# qbot's Slack app manifest for {base} ({mode}), written by `qbot slack manifest`.\n"
        "# https://api.slack.com/apps -> Create New App -> From a manifest: paste this, then install the app.\n"
    )
    return header + body


def run_manifest(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    public_url = args.public_url or env.get("QBOT_PUBLIC_URL", "")
    try:
        text = manifest_for(public_url, socket_mode=args.socket_mode)
    except ManifestError as exc:
        print(f"qbot slack manifest: {exc}", file=sys.stderr)
        return 2
    steps = (
        "Next: create the app from it and install it; put QBOT_SLACK_BOT_TOKEN and "
        + ("QBOT_SLACK_APP_TOKEN" if args.socket_mode else "QBOT_SLACK_SIGNING_SECRET")
        + " in the bot's environment and start qbot"
        + ("." if args.socket_mode else "; then, in Event Subscriptions, let Slack verify the request URL (Retry).")
    )
    if args.out is None:
        sys.stdout.write(text)
        print(steps, file=sys.stderr)
        return 0
    out = Path(args.out)
    out.write_text(text, encoding="utf-8")
    print(f"Wrote {out}. {steps}")
    return 0
