"""The README's rehearsal against the sandbox runs as written: its shell lines are read from the README and each
`qbot` command is run through the command line's entry point, with the sandbox's settings (what `qbot sandbox`
writes to sandbox.env), the administrator credentials the README names and moto standing in for IAM at the
address the README gives."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from qbot.cli import main
from sandbox.world import Sandbox

README = Path(__file__).resolve().parents[2] / "README.md"
README_MOTO = "http://127.0.0.1:5000"


def rehearsal_lines() -> list[str]:
    """The shell lines of the rehearsal's code block, continuations joined."""
    text = README.read_text()
    section = text[text.index("### Rehearse first, against the sandbox"):text.index("### 1. Provision")]
    block = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_qbot(words: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    assert words[0] == ".venv/bin/qbot", words
    code = main(words[1:])
    return code, capsys.readouterr().out


def test_the_readme_rehearsal_runs_against_the_sandbox(
    sandbox: Sandbox, admin_env: dict[str, str], moto_url: str, redis_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("QBOT_Q_INDEX_ID", "QBOT_IAM_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)  # only what the README sets
    lines = rehearsal_lines()
    assert shlex.split(lines[0], comments=True) == ["make", "run"]
    assert shlex.split(lines[1], comments=True) == [".venv/bin/moto_server", "-H", "127.0.0.1", "-p", "5000"]
    outputs: dict[str, str] = {}
    for line in lines[2:]:
        line = line.replace(README_MOTO, moto_url)
        if line == "set -a; . ./sandbox.env; set +a":  # what `qbot sandbox` writes there
            keys = Fernet.generate_key().decode()
            sandbox_env = {**sandbox.env(), "QBOT_REDIS_URL": redis_url, "QBOT_TOKEN_KEYS": keys}
            for name, value in sandbox_env.items():
                monkeypatch.setenv(name, value)
            continue
        words = shlex.split(os.path.expandvars(line), comments=True)
        if words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                monkeypatch.setenv(name, value)
            continue
        if words[0] == "printf":
            subprocess.run(["bash", "-c", line], check=True, cwd=tmp_path)
            continue
        with monkeypatch.context() as scoped:
            while re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value before the command: for it alone
                name, _, value = words.pop(0).partition("=")
                scoped.setenv(name, value)
            code, out = run_qbot(words, capsys)
        assert code == 0, f"{line}\n{out}"
        outputs[" ".join(words[1:3])] = out

    assert set(outputs) == {"doctor", "admin groups", "admin provision"}
    doctor = outputs["doctor"]
    assert "0 failed" in doctor and "[warn] Redis:" in doctor and "[skip] IAM role" in doctor
    assert "[ ok ] Q Business application" in doctor and "[ ok ] IdP client" in doctor
    assert "core-team: rewrite with 1 members" in outputs["admin groups"]
    assert "Dry run: 2 change(s) planned; nothing was written." in outputs["admin groups"]
    assert "change(s) planned; nothing was changed" in outputs["admin provision"]
    assert "QBOT_ROLE_ARN=arn:aws:iam::123456789012:role/qbot-user" in outputs["admin provision"]

    # "then without --dry-run, then again: no changes"
    code, out = run_qbot([".venv/bin/qbot", "admin", "groups", "sync", "groups.csv"], capsys)
    assert code == 0 and "Wrote 2 group(s) with PutGroup." in out
    code, out = run_qbot([".venv/bin/qbot", "admin", "groups", "sync", "groups.csv"], capsys)
    assert code == 0 and "No changes: every group is as the file says." in out
