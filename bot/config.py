"""Settings from the `QBOT_*` environment (DESIGN.md lists the contract; defaults are in brackets there)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.errors import ConfigError

DEFAULT_SCOPES = ("openid", "email", "profile", "offline_access")
SAML_ACS_PATH = "/auth/saml/acs"
SAML_METADATA_PATH = "/auth/saml/metadata"  # the default SP entity id is the URL of this path
# IAM role sessions last 15 minutes to 12 hours (the role's MaxSessionDuration must allow what is asked).
SAML_SESSION_RANGE = (900, 43200)
_SAML_PROVIDER_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:saml-provider/[\w+=,.@-]{1,128}")
_LOOPBACK_OR_HTTPS = ("https://", "http://127.0.0.1", "http://localhost")


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A true/false setting (1/0, yes/no, on/off too); anything else is a ConfigError naming it."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


ROLES = ("web", "worker", "all")


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """A whole-number setting of at least `minimum`; anything else is a ConfigError naming it."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def env_seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    """A duration in (possibly fractional) seconds of at least `minimum`; anything else is a ConfigError."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{name} must be at least {minimum:g} seconds")
    return value


def parse_token_keys(raw: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys: the first encrypts, all decrypt (so keys rotate without relinking)."""
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for position, key in enumerate(keys, 1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != 32:
            raise ConfigError(
                f"QBOT_TOKEN_KEYS key #{position} is not 32 bytes of URL-safe base64; make one with `qbot keygen`"
            )
    return keys


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 3978
    public_url: str = "http://127.0.0.1:3978"
    redis_url: str | None = None
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scopes: tuple[str, ...] = DEFAULT_SCOPES
    aws_region: str = "us-east-1"
    role_arn: str = ""
    q_app_id: str = ""
    sts_endpoint_url: str | None = None
    q_endpoint_url: str | None = None
    token_keys: tuple[str, ...] = ()
    link_ttl_seconds: int = 600
    require_email_match: bool = True
    channel_reply_mode: str = "private"  # channels and group chats without a policy: "private" | "thread"
    conversation_ttl_seconds: int = 7 * 24 * 3600
    q_max_concurrency: int = 320
    redis_max_connections: int = 64
    role: str = "all"  # this process: "web" takes turns in, "worker" answers them, "all" both (bot/turn_queue.py)
    worker_concurrency: int = 256  # turns one process works on at once; the rest wait in the stream
    turn_claim_seconds: float = 15.0  # a turn its worker stopped renewing this long is run by another worker
    session_secret: str = ""
    # SAML mode (instead of OIDC) when either metadata setting is set; see `identity_mode`
    saml_metadata_url: str = ""
    saml_metadata_file: str = ""
    saml_sp_entity_id: str = ""  # [QBOT_PUBLIC_URL + /auth/saml/metadata]: the Audience the IdP app names
    saml_provider_arn: str = ""
    saml_session_seconds: int = 3600
    extra: Mapping[str, str] = field(default_factory=dict)  # the adapters' own QBOT_* variables

    def web_session_key(self) -> bytes:
        """The web console's cookie key: QBOT_SESSION_SECRET, or derived from the first token key."""
        if self.session_secret:
            return self.session_secret.encode()
        if not self.token_keys:
            raise ConfigError("the web console needs QBOT_SESSION_SECRET or QBOT_TOKEN_KEYS to sign its cookies")
        return hmac.new(self.token_keys[0].encode(), b"qbot web session", hashlib.sha256).digest()

    @property
    def redirect_uri(self) -> str:
        return self.public_url.rstrip("/") + "/auth/callback"

    @property
    def identity_mode(self) -> str:
        """SAML mode ("saml": AssumeRoleWithSAML) when the IdP's SAML metadata is configured, else "oidc"."""
        return "saml" if self.saml_metadata_url or self.saml_metadata_file else "oidc"

    @property
    def saml_acs_url(self) -> str:
        """Where the IdP posts its SAML responses (HTTP-POST binding): the Recipient and Destination we expect."""
        return self.public_url.rstrip("/") + SAML_ACS_PATH

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        mode = (env.get("QBOT_CHANNEL_REPLY_MODE") or "private").strip().lower()
        mode = "private" if mode == "ephemeral" else mode  # the setting's earlier name for private
        if mode not in ("private", "thread"):
            raise ConfigError(f"QBOT_CHANNEL_REPLY_MODE must be private or thread, not {mode!r}")
        role = (env.get("QBOT_ROLE") or "all").strip().lower()
        if role not in ROLES:
            raise ConfigError(f"QBOT_ROLE (qbot serve --role) must be web, worker or all, not {role!r}")
        scopes = tuple((env.get("QBOT_OIDC_SCOPES") or " ".join(DEFAULT_SCOPES)).split())
        if "openid" not in scopes:
            raise ConfigError("QBOT_OIDC_SCOPES must include openid")
        return cls(
            host=env.get("QBOT_HOST") or "127.0.0.1",
            port=env_int(env, "QBOT_PORT", 3978, minimum=0),
            public_url=(env.get("QBOT_PUBLIC_URL") or "http://127.0.0.1:3978").rstrip("/"),
            redis_url=env.get("QBOT_REDIS_URL") or None,
            oidc_issuer=(env.get("QBOT_OIDC_ISSUER") or "").rstrip("/"),
            oidc_client_id=env.get("QBOT_OIDC_CLIENT_ID", ""),
            oidc_client_secret=env.get("QBOT_OIDC_CLIENT_SECRET", ""),
            oidc_scopes=scopes,
            aws_region=env.get("QBOT_AWS_REGION") or "us-east-1",
            role_arn=env.get("QBOT_ROLE_ARN", ""),
            q_app_id=env.get("QBOT_Q_APP_ID", ""),
            sts_endpoint_url=env.get("QBOT_STS_ENDPOINT_URL") or None,
            q_endpoint_url=env.get("QBOT_Q_ENDPOINT_URL") or None,
            token_keys=parse_token_keys(env.get("QBOT_TOKEN_KEYS", "")),
            link_ttl_seconds=env_int(env, "QBOT_LINK_TTL_SECONDS", 600),
            require_email_match=env_flag(env, "QBOT_REQUIRE_EMAIL_MATCH", True),
            channel_reply_mode=mode,
            conversation_ttl_seconds=env_int(env, "QBOT_CONVERSATION_TTL_SECONDS", 7 * 24 * 3600),
            q_max_concurrency=env_int(env, "QBOT_Q_MAX_CONCURRENCY", 320),
            redis_max_connections=env_int(env, "QBOT_REDIS_MAX_CONNECTIONS", 64),
            role=role,
            worker_concurrency=env_int(env, "QBOT_WORKER_CONCURRENCY", 256),
            turn_claim_seconds=env_seconds(env, "QBOT_TURN_CLAIM_SECONDS", 15.0, minimum=0.1),
            session_secret=env.get("QBOT_SESSION_SECRET", ""),
            saml_metadata_url=(env.get("QBOT_SAML_METADATA_URL") or "").strip(),
            saml_metadata_file=(env.get("QBOT_SAML_METADATA_FILE") or "").strip(),
            saml_sp_entity_id=(env.get("QBOT_SAML_SP_ENTITY_ID") or "").strip()
            or (env.get("QBOT_PUBLIC_URL") or "http://127.0.0.1:3978").rstrip("/") + SAML_METADATA_PATH,
            saml_provider_arn=(env.get("QBOT_SAML_PROVIDER_ARN") or "").strip(),
            saml_session_seconds=_saml_session_seconds(env),
            extra={k: v for k, v in env.items() if k.startswith("QBOT_")},
        )

    def check_complete(self) -> None:
        """Fail fast before `qbot serve` accepts traffic, naming every missing or contradictory setting at once."""
        saml = self.identity_mode == "saml"
        problems: list[str] = []
        if saml and self.oidc_issuer:
            problems.append(
                "QBOT_OIDC_ISSUER and QBOT_SAML_METADATA_URL/QBOT_SAML_METADATA_FILE are both set: choose OIDC or "
                "SAML mode (unset the other)"
            )
        if self.saml_metadata_url and self.saml_metadata_file:
            problems.append("QBOT_SAML_METADATA_URL and QBOT_SAML_METADATA_FILE are both set: keep one")
        required = {
            "QBOT_ROLE_ARN": self.role_arn,
            "QBOT_Q_APP_ID": self.q_app_id,
            "QBOT_TOKEN_KEYS": ",".join(self.token_keys),
        }
        if saml:
            required = {"QBOT_SAML_PROVIDER_ARN": self.saml_provider_arn, **required}
        else:
            required = {"QBOT_OIDC_ISSUER": self.oidc_issuer, "QBOT_OIDC_CLIENT_ID": self.oidc_client_id, **required}
        missing = [name for name, value in required.items() if not value]
        if missing:
            problems.append("missing configuration: " + ", ".join(missing))
        if self.role_arn and (not self.role_arn.startswith("arn:aws") or ":role/" not in self.role_arn):
            problems.append(f"QBOT_ROLE_ARN is not an IAM role ARN: {self.role_arn!r}")
        if saml and self.saml_provider_arn and not _SAML_PROVIDER_ARN.fullmatch(self.saml_provider_arn):
            problems.append(
                f"QBOT_SAML_PROVIDER_ARN is not an IAM SAML provider ARN "
                f"(arn:aws:iam::ACCOUNT:saml-provider/NAME): {self.saml_provider_arn!r}"
            )
        if saml and self.saml_metadata_url and not self.saml_metadata_url.startswith(_LOOPBACK_OR_HTTPS):
            problems.append("QBOT_SAML_METADATA_URL must be https:// (plain http only on loopback, for testing)")
        if self.q_app_id and len(self.q_app_id) != 36:
            problems.append("QBOT_Q_APP_ID must be the 36-character application id")
        if not self.public_url.startswith(_LOOPBACK_OR_HTTPS):
            problems.append("QBOT_PUBLIC_URL must be https:// (plain http only on loopback, for testing)")
        if problems:
            raise ConfigError("; ".join(problems))


def _saml_session_seconds(env: Mapping[str, str]) -> int:
    """QBOT_SAML_SESSION_SECONDS [3600]: the session asked of STS, within what IAM allows (15 min to 12 h)."""
    low, high = SAML_SESSION_RANGE
    value = env_int(env, "QBOT_SAML_SESSION_SECONDS", 3600, minimum=low)
    if value > high:
        raise ConfigError(f"QBOT_SAML_SESSION_SECONDS must be at most {high} (12 hours, IAM's longest session)")
    return value
