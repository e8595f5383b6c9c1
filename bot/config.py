"""Settings from the `QBOT_*` environment (DESIGN.md lists the contract; defaults are in brackets there)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from bot.errors import ConfigError

DEFAULT_SCOPES = ("openid", "email", "profile", "offline_access")
SAML_ACS_PATH = "/auth/saml/acs"
SAML_METADATA_PATH = "/auth/saml/metadata"  # the default SP entity id is the URL of this path
# IAM role sessions last 15 minutes to 12 hours (the role's MaxSessionDuration must allow what is asked).
SAML_SESSION_RANGE = (900, 43200)
_SAML_PROVIDER_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:saml-provider/[\w+=,.@-]{1,128}")
_LOOPBACK_OR_HTTPS = ("https://", "http://127.0.0.1", "http://localhost")
DEFAULT_PORT = 3978
T = TypeVar("T")


class ConfigProblems(ConfigError):
    """Every configuration problem found, not just the first: an operator fixes them all in one round."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def problems_of(err: ConfigError) -> tuple[str, ...]:
    """The problems one ConfigError stands for (one, unless it is a ConfigProblems)."""
    return err.problems if isinstance(err, ConfigProblems) else (err.user_message,)


class Problems:
    """Collects ConfigErrors while a configuration is read, so reading goes on past the first one."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def read(self, parse: Callable[[], T], fallback: T) -> T:
        """`parse()`, or `fallback` (and the problem noted) when it raises a ConfigError."""
        try:
            return parse()
        except ConfigError as err:
            self.found.extend(problems_of(err))
            return fallback

    def add(self, problem: str) -> None:
        self.found.append(problem)

    def raise_any(self) -> None:
        if self.found:
            raise ConfigProblems(self.found)


def default_public_url(host: str, port: int) -> str:
    """Where this machine reaches a bot listening on `host`:`port` when QBOT_PUBLIC_URL is unset: the host if it is
    a loopback address, else 127.0.0.1 (a wildcard or outside address needs QBOT_PUBLIC_URL: https, its real name)."""
    if host == "localhost":
        return f"http://localhost:{port}"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_loopback:
        return f"http://[{host}]:{port}" if address.version == 6 else f"http://{host}:{port}"
    return f"http://127.0.0.1:{port}"


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
    port: int = DEFAULT_PORT
    public_url: str = "http://127.0.0.1:3978"  # [http://127.0.0.1:QBOT_PORT]: `default_public_url`
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
    q_max_concurrency: int = 1024  # (coroutines and sockets, not threads: a thousand slow answers in flight)
    redis_max_connections: int = 64
    role: str = "all"  # this process: "web" takes turns in, "worker" answers them, "all" both (bot/turn_queue.py)
    worker_concurrency: int = 1024  # turns one process works on at once; the rest wait in the stream
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
        """ConfigProblems naming every malformed setting at once (reading goes on past the first)."""
        settings, problems = cls.read(env)
        if problems:
            raise ConfigProblems(problems)
        return settings

    @classmethod
    def read(cls, env: Mapping[str, str]) -> tuple[Settings, list[str]]:
        """The settings, a malformed value replaced by its default, and what was malformed: so `check_complete` can
        still say what is missing when something else is wrong (`qbot.configuration` lists both)."""
        problems = Problems()
        host = env.get("QBOT_HOST") or "127.0.0.1"
        port = problems.read(lambda: env_int(env, "QBOT_PORT", DEFAULT_PORT, minimum=0), DEFAULT_PORT)
        public_url = (env.get("QBOT_PUBLIC_URL") or default_public_url(host, port)).rstrip("/")
        settings = cls(
            host=host,
            port=port,
            public_url=public_url,
            redis_url=env.get("QBOT_REDIS_URL") or None,
            oidc_issuer=(env.get("QBOT_OIDC_ISSUER") or "").rstrip("/"),
            oidc_client_id=env.get("QBOT_OIDC_CLIENT_ID", ""),
            oidc_client_secret=env.get("QBOT_OIDC_CLIENT_SECRET", ""),
            oidc_scopes=problems.read(lambda: _scopes(env), DEFAULT_SCOPES),
            aws_region=env.get("QBOT_AWS_REGION") or "us-east-1",
            role_arn=env.get("QBOT_ROLE_ARN", ""),
            q_app_id=env.get("QBOT_Q_APP_ID", ""),
            sts_endpoint_url=env.get("QBOT_STS_ENDPOINT_URL") or None,
            q_endpoint_url=env.get("QBOT_Q_ENDPOINT_URL") or None,
            token_keys=problems.read(lambda: parse_token_keys(env.get("QBOT_TOKEN_KEYS", "")), ()),
            link_ttl_seconds=problems.read(lambda: env_int(env, "QBOT_LINK_TTL_SECONDS", 600), 600),
            require_email_match=problems.read(lambda: env_flag(env, "QBOT_REQUIRE_EMAIL_MATCH", True), True),
            channel_reply_mode=problems.read(lambda: _reply_mode(env), "private"),
            conversation_ttl_seconds=problems.read(
                lambda: env_int(env, "QBOT_CONVERSATION_TTL_SECONDS", 7 * 24 * 3600), 7 * 24 * 3600
            ),
            q_max_concurrency=problems.read(lambda: env_int(env, "QBOT_Q_MAX_CONCURRENCY", 1024), 1024),
            redis_max_connections=problems.read(lambda: env_int(env, "QBOT_REDIS_MAX_CONNECTIONS", 64), 64),
            role=problems.read(lambda: _role(env), "all"),
            worker_concurrency=problems.read(lambda: env_int(env, "QBOT_WORKER_CONCURRENCY", 1024), 1024),
            turn_claim_seconds=problems.read(
                lambda: env_seconds(env, "QBOT_TURN_CLAIM_SECONDS", 15.0, minimum=0.1), 15.0
            ),
            session_secret=env.get("QBOT_SESSION_SECRET", ""),
            saml_metadata_url=(env.get("QBOT_SAML_METADATA_URL") or "").strip(),
            saml_metadata_file=(env.get("QBOT_SAML_METADATA_FILE") or "").strip(),
            saml_sp_entity_id=(env.get("QBOT_SAML_SP_ENTITY_ID") or "").strip() or public_url + SAML_METADATA_PATH,
            saml_provider_arn=(env.get("QBOT_SAML_PROVIDER_ARN") or "").strip(),
            saml_session_seconds=problems.read(lambda: _saml_session_seconds(env), 3600),
            extra={k: v for k, v in env.items() if k.startswith("QBOT_")},
        )
        return settings, problems.found

    def listening_on(self, port: int) -> Settings:
        """These settings once the server listens on `port` (QBOT_PORT=0: the one the OS chose): a public URL and
        SAML entity id that were not set follow the port, so sign-in links name the address that answers."""
        if self.extra.get("QBOT_PUBLIC_URL"):
            return replace(self, port=port)
        public_url = default_public_url(self.host, port)
        entity_id = self.saml_sp_entity_id
        if not self.extra.get("QBOT_SAML_SP_ENTITY_ID"):
            entity_id = public_url + SAML_METADATA_PATH
        return replace(self, port=port, public_url=public_url, saml_sp_entity_id=entity_id)

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
        required: dict[str, object] = {
            "QBOT_ROLE_ARN": self.role_arn,
            "QBOT_Q_APP_ID": self.q_app_id,
            # keys that are there but malformed were read as none: `read` reports them, they are not missing
            "QBOT_TOKEN_KEYS": self.token_keys or self.extra.get("QBOT_TOKEN_KEYS", "").replace(",", "").strip(),
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
            raise ConfigProblems(problems)


def _reply_mode(env: Mapping[str, str]) -> str:
    mode = (env.get("QBOT_CHANNEL_REPLY_MODE") or "private").strip().lower()
    mode = "private" if mode == "ephemeral" else mode  # the setting's earlier name for private
    if mode not in ("private", "thread"):
        raise ConfigError(f"QBOT_CHANNEL_REPLY_MODE must be private or thread, not {mode!r}")
    return mode


def _role(env: Mapping[str, str]) -> str:
    role = (env.get("QBOT_ROLE") or "all").strip().lower()
    if role not in ROLES:
        raise ConfigError(f"QBOT_ROLE (qbot serve --role) must be web, worker or all, not {role!r}")
    return role


def _scopes(env: Mapping[str, str]) -> tuple[str, ...]:
    scopes = tuple((env.get("QBOT_OIDC_SCOPES") or " ".join(DEFAULT_SCOPES)).split())
    if "openid" not in scopes:
        raise ConfigError("QBOT_OIDC_SCOPES must include openid")
    return scopes


def _saml_session_seconds(env: Mapping[str, str]) -> int:
    """QBOT_SAML_SESSION_SECONDS [3600]: the session asked of STS, within what IAM allows (15 min to 12 h)."""
    low, high = SAML_SESSION_RANGE
    value = env_int(env, "QBOT_SAML_SESSION_SECONDS", 3600, minimum=low)
    if value > high:
        raise ConfigError(f"QBOT_SAML_SESSION_SECONDS must be at most {high} (12 hours, IAM's longest session)")
    return value
