"""DESIGN.md's rules for the layout, checked on every run so no later change can quietly break them.

- the core (bot/) never imports an adapter, a chat SDK, the sandbox or the application shell, nor aiohttp:
  HTTP routes and pages belong to the adapters (sign-in: adapters/web) and the shell (health: qbot/), so the
  core is the same whichever server carries it;
- adapters never import the sandbox or the composition root, and never talk to Redis, STS or Q directly;
- the sandbox never imports bot/, adapters/ or qbot/ (a stand-in sharing the bot's code shares its bugs);
- nothing outside tests/ imports tests/: the benchmarks take their stand-ins from the sandbox.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAT_SDKS = ("slack_bolt", "slack_sdk", "microsoft_agents", "botbuilder")
AWS_AND_REDIS = ("boto3", "botocore", "redis")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bot": ("adapters", "sandbox", "qbot", "aiohttp", "tests", *CHAT_SDKS),
    "adapters": ("sandbox", "qbot", "tests", *AWS_AND_REDIS),
    "sandbox": ("bot", "adapters", "qbot", "tests"),
    "qbot": ("tests",),
    "bench": ("tests",),
}

# The one exception: the Q Business client sends through aiohttp's client (a connection pool, no routes), because
# httpx's pool costs O(queued requests x connections) per request: 25 ms of CPU per ChatSync against 4 ms.
CLIENT_ONLY: dict[str, tuple[str, ...]] = {"bot/qbusiness.py": ("aiohttp",)}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_what_the_design_allows(package: str) -> None:
    offences = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top in FORBIDDEN[package] and module not in CLIENT_ONLY.get(str(path.relative_to(ROOT)), ()):
                offences.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offences, "\n".join(offences)


def test_the_check_sees_imports() -> None:
    """Guard against a checker that passes because it reads nothing."""
    assert "bot.core" in imported_modules(ROOT / "qbot" / "app.py")
    slack = (ROOT / "adapters" / "slack").glob("*.py")
    assert any(module.startswith("slack_bolt") for path in slack for module in imported_modules(path))
    assert "aiohttp" in imported_modules(ROOT / "qbot" / "health.py")
    # an import inside a function counts too (the CLI loads the operator tooling lazily)
    assert "qbot.admin.doctor" in imported_modules(ROOT / "qbot" / "admin" / "cli.py")
