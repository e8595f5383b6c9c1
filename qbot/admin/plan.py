"""What `qbot admin provision` is asked for (Target), the writes it plans (Step), and the run they share (Plan).

A Plan prints every write before making it and makes none in a dry run, so the IAM and Q Business halves
(`qbot.admin.federation`, `qbot.admin.application`) cannot write anything the plan does not show.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore import xform_name

TAGS = [{"Key": "managed-by", "Value": "qbot"}]
_POLICY_PARAMS = ("AssumeRolePolicyDocument", "PolicyDocument")
_LONGEST_SHOWN = 300


class ProvisionError(Exception):
    """Provisioning cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class SamlIdp:
    """SAML mode's IdP (instead of an OIDC issuer and client ids) and where qbot receives its assertions."""

    metadata: str  # the IdP's metadata document, as IAM's SAML provider holds it
    source: str  # the file or URL it was read from (the bot reads it there too)
    provider_name: str  # the IAM SAML provider's name
    public_url: str  # QBOT_PUBLIC_URL: the ACS URL, and so the trust policy's SAML:aud, follows from it
    sp_entity_id: str
    session_seconds: int  # the role's maximum session must allow this (SAML has no refresh token)


@dataclass(frozen=True)
class Target:
    """What the administrator asked for: an OIDC issuer and client ids, or (SAML mode) `saml`."""

    issuer: str = ""
    client_ids: tuple[str, ...] = ()
    saml: SamlIdp | None = None
    name: str = "qbot"
    role_name: str = "qbot-user"
    application_id: str | None = None  # adopt this application instead of finding one by name
    email_domains: tuple[str, ...] = ()  # the Email session tag must end in @one of these (any email when empty)
    index_type: str = "ENTERPRISE"
    subscription_type: str = "Q_BUSINESS"

    @property
    def index_name(self) -> str:
        return f"{self.name}-index"

    @property
    def retriever_name(self) -> str:
        return f"{self.name}-retriever"

    @property
    def policy_name(self) -> str:
        return "qbot-chat-as-user"

    @property
    def auto_subscription(self) -> dict[str, str]:
        return {"autoSubscribe": "ENABLED", "defaultSubscriptionType": self.subscription_type}


@dataclass(frozen=True)
class Step:
    """One write call of the plan."""

    service: str
    operation: str
    params: dict[str, Any]
    reason: str

    def render(self) -> str:
        shown = {key: _abridged(value) for key, value in self.params.items()}
        body = json.dumps(shown, indent=2, default=str)
        return f"  + {self.service} {self.operation}: {self.reason}\n" + _indent(body, 6)

    def wire_params(self) -> dict[str, Any]:
        """The arguments as boto3 takes them: policy documents as JSON text."""
        return {
            key: json.dumps(value) if key in _POLICY_PARAMS and not isinstance(value, str) else value
            for key, value in self.params.items()
        }


@dataclass
class Outcome:
    account_id: str = ""
    provider_arn: str = ""
    application_id: str = ""
    index_id: str = ""
    retriever_id: str = ""
    role_arn: str = ""
    changes: list[Step] = field(default_factory=list)


def _abridged(value: Any) -> Any:
    """A long document (SAML metadata) as its size and digest; the plan stays readable and still tells apart."""
    if isinstance(value, str) and len(value) > _LONGEST_SHOWN:
        return f"<{len(value)} characters, sha256 {hashlib.sha256(value.encode()).hexdigest()[:16]}>"
    return value


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines())


@dataclass
class Plan:
    """One run: the clients, where its lines go, and what it found and changed so far (`outcome`)."""

    target: Target
    iam: Any
    q: Any
    region: str
    dry_run: bool
    out: Callable[[str], None]
    progress: Callable[[str], None]
    timeout_seconds: float = 1800.0
    poll_seconds: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    outcome: Outcome = field(default_factory=Outcome)
    partition: str = "aws"

    def write(self, step: Step) -> dict[str, Any]:
        """Print the step; outside a dry run, make the call. Returns the response ({} in a dry run)."""
        self.outcome.changes.append(step)
        self.out(step.render())
        if self.dry_run:
            return {}
        client = self.iam if step.service == "iam" else self.q
        answer: dict[str, Any] = getattr(client, xform_name(step.operation))(**step.wire_params())
        return answer

    def unchanged(self, what: str) -> None:
        self.out(f"  = {what}: as wanted")

    def wait_for(self, what: str, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Poll until ACTIVE, at most `timeout_seconds`; FAILED or the timeout raise ProvisionError."""
        started = self.clock()
        while True:
            answer = dict(read())
            status = answer.get("status")
            waited = self.clock() - started
            if status == "ACTIVE":
                if waited > 0:
                    self.progress(f"    {what} is ACTIVE after {waited:.0f}s")
                return answer
            if status == "FAILED":
                error = answer.get("error") or {}
                raise ProvisionError(f"the {what} FAILED: {error.get('errorMessage') or error.get('errorCode') or '?'}")
            if waited >= self.timeout_seconds:
                raise ProvisionError(
                    f"the {what} is still {status} after {self.timeout_seconds:.0f}s. Run the same command again "
                    "later: it continues where this run stopped."
                )
            self.progress(
                f"    waiting for the {what}: {status} ({waited:.0f}s, at most {self.timeout_seconds:.0f}s)"
            )
            self.sleep(self.poll_seconds)
