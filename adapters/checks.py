"""What one `qbot doctor` check reports. Each chat adapter checks its own settings beside them
(`adapters/slack/doctor.py`, `adapters/teams/doctor.py`); the shell's doctor (`qbot/admin/doctor.py`) runs
those with its own checks of Redis, the IdP and AWS, and prints every result the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, FAIL (the doctor exits 1), WARN (works, but worth fixing), SKIP (not configured or readable)
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status:^4}] {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


def json_field(response: httpx.Response, name: str) -> str:
    """A string field of a JSON answer to a probe; "" when the answer is not JSON or lacks it."""
    try:
        document = response.json()
    except ValueError:
        return ""
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) else ""
