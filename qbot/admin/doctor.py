"""`qbot doctor`: checks a configuration end to end, one line per check, each failure with its fix.

Every check talks to the real thing with the configured values (Redis, the IdP, IAM, Q Business, Slack, the
Microsoft login service) and changes nothing anywhere:
- the IdP client check sends a token request with a made-up authorization code: an IdP that knows the client
  and its secret answers `invalid_grant` (the code), one that does not answers `invalid_client`;
- the redirect URI check opens the authorization page (no one signs in): an IdP refuses an unregistered
  redirect URI there and then;
- Redis's eviction policy is read with CONFIG GET, or INFO where a managed Redis refuses CONFIG;
- IAM and Q Business are read with the AWS credentials of wherever the doctor runs (the bot's own, in its
  container); a check they may not read is skipped, not failed.
Statuses: ok, FAIL (exit status 1), warn (works, but worth fixing), skip (not configured, or not readable).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
from botocore.exceptions import NoCredentialsError

from bot.aws_clients import AWS_ERRORS, AdminAws, describe, error_code
from bot.cipher import CipherError, TokenCipher
from bot.config import DEFAULT_SCOPES, Settings, parse_token_keys
from bot.errors import ConfigError
from bot.group_sync import GroupSyncSettings
from bot.groups import IndexGroups
from qbot.admin.policies import SESSION_TAG_KEYS, email_patterns, path_of_provider_arn, provider_path

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_TEAMS_LOGIN_URL = "https://login.microsoftonline.com"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}
_SAMPLE_LINKS = 50
_SCAN_ROUNDS = 20


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status:^4}] {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix else text


class Doctor:
    def __init__(self, env: Mapping[str, str], *, http: httpx.Client, aws: AdminAws | None = None) -> None:
        self.env = env
        self._http = http
        self._aws = aws or AdminAws.from_env(env)
        self.issuer = (env.get("QBOT_OIDC_ISSUER") or "").rstrip("/")
        self.client_id = env.get("QBOT_OIDC_CLIENT_ID") or ""
        self._discovery: dict[str, Any] | None = None
        self._redis: redis.Redis | None = None
        self._application_failed = False

    def run(self) -> Iterator[Check]:
        steps: list[tuple[str, Callable[[], Check]]] = [
            ("configuration", self.configuration),
            ("email match", self.email_match),
            ("Redis", self.redis),
            ("Redis memory", self.redis_memory),
            ("token keys", self.token_keys),
            ("IdP discovery", self.idp_discovery),
            ("IdP client", self.idp_client),
            ("IdP redirect URI", self.idp_redirect_uri),
            ("IAM role", self.role),
            ("Q Business application", self.application),
            ("group sync", self.group_sync),
            ("Slack", self.slack),
            ("Teams", self.teams),
        ]
        try:
            for name, step in steps:
                try:
                    yield step()
                except Exception as err:  # a check that breaks is a failed check, never a crashed doctor
                    yield Check(name, FAIL, f"the check itself failed: {type(err).__name__}: {err}")
        finally:
            if self._redis is not None:
                self._redis.close()

    # -- configuration, Redis, keys ------------------------------------------------------------------------

    def configuration(self) -> Check:
        try:
            Settings.from_env(self.env).check_complete()
            GroupSyncSettings.from_env(self.env)
        except ConfigError as err:
            return Check("configuration", FAIL, str(err), "set the QBOT_* variables it names (README: Configuration)")
        return Check("configuration", OK, "every required QBOT_* setting is present and well-formed")

    def email_match(self) -> Check:
        """A warning, not a failure: turning the rule off is a deployment's choice (an IdP without emails, say),
        but whoever makes it must know what it costs."""
        raw = (self.env.get("QBOT_REQUIRE_EMAIL_MATCH") or "").strip().lower()
        if raw in ("0", "false", "no", "off"):
            return Check(
                "email match", WARN, "QBOT_REQUIRE_EMAIL_MATCH=false: sign-in links become forwardable. Whoever "
                "opens a link and signs in binds their own IdP account to the chat account that asked for it, which "
                "then asks Q as them", "unset QBOT_REQUIRE_EMAIL_MATCH (on by default) unless chat profiles carry "
                "no email; then tell users never to pass a link on",
            )
        return Check("email match", OK, "a sign-in must be by the person whose chat profile email asked for the link")

    def redis(self) -> Check:
        url = self.env.get("QBOT_REDIS_URL") or ""
        if not url:
            return Check(
                "Redis", WARN, "QBOT_REDIS_URL is unset: qbot serve would start an embedded Redis that forgets "
                "every link on restart", "set QBOT_REDIS_URL to a persistent Redis (appendonly yes)",
            )
        try:
            client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        except ValueError as err:
            return Check("Redis", FAIL, f"QBOT_REDIS_URL is not a Redis URL ({err})",
                         "use redis://[:password@]host:port/db (rediss:// for TLS)")
        where = "{host}:{port}".format_map(client.connection_pool.connection_kwargs)
        try:
            client.ping()
        except (redis.RedisError, OSError) as err:
            client.close()
            return Check("Redis", FAIL, f"{where} does not answer ({type(err).__name__}: {err})",
                         "check QBOT_REDIS_URL (host, port, password, rediss:// for TLS) and the network path")
        self._redis = client
        try:
            persistence: dict[str, Any] = dict(client.info("persistence"))
        except redis.RedisError:  # managed Redis may refuse INFO: nothing to say then
            persistence = {}
        if persistence and not persistence.get("aof_enabled"):
            return Check(
                "Redis", WARN, f"{where} answers, but append-only persistence is off: after a restart, refresh "
                "tokens rotated since the last snapshot are lost and those users must link again",
                "appendonly yes (or a replicated managed Redis)",
            )
        return Check("Redis", OK, f"{where} answers")

    def redis_memory(self) -> Check:
        """Linked accounts (`qbot:vault:` keys of chat users) have no TTL: a policy that evicts any key under memory
        pressure silently unlinks users. volatile-* policies evict only keys with a TTL (login states, cached
        credentials, web console sessions): those cost a user a new sign-in at most."""
        if self._redis is None:
            return Check("Redis memory", SKIP, "needs a reachable Redis")
        fix = "set maxmemory-policy noeviction (or volatile-lru) and give Redis enough maxmemory"
        policy, limit = self._memory_policy()
        if policy is None:
            return Check("Redis memory", WARN, "the eviction policy cannot be read here (CONFIG and INFO are refused, "
                         "as on some managed Redis services)", "make sure it is noeviction or volatile-*: " + fix)
        limited = f", maxmemory {limit} bytes" if limit else ", no maxmemory limit"
        if policy.startswith("allkeys-"):
            return Check("Redis memory", FAIL, f"maxmemory-policy {policy} can evict any key, linked accounts "
                         "included: when memory runs short, users are silently unlinked", fix)
        if policy == "noeviction" or policy.startswith("volatile-"):
            evicts = "nothing is evicted" if policy == "noeviction" else "only keys with a TTL can be evicted"
            return Check("Redis memory", OK, f"maxmemory-policy {policy}{limited}: {evicts}, never a chat link")
        return Check("Redis memory", WARN, f"unknown maxmemory-policy {policy!r}", fix)

    def _memory_policy(self) -> tuple[str | None, int]:
        """maxmemory-policy and maxmemory from CONFIG GET, else from INFO memory; (None, 0) when neither answers."""
        assert self._redis is not None
        try:
            config = {_text(k): _text(v) for k, v in self._redis.config_get("maxmemory*").items()}
            return config["maxmemory-policy"], int(config.get("maxmemory") or 0)
        except (redis.RedisError, KeyError, ValueError):
            pass
        try:
            memory = self._redis.info("memory")
        except redis.RedisError:
            return None, 0
        policy = memory.get("maxmemory_policy")
        return (_text(policy) if policy else None), int(memory.get("maxmemory") or 0)

    def token_keys(self) -> Check:
        raw = self.env.get("QBOT_TOKEN_KEYS") or ""
        try:
            keys = parse_token_keys(raw)
        except ConfigError as err:
            return Check("token keys", FAIL, str(err), "make a key with `qbot keygen`; keep old keys after the new one")
        if not keys:
            return Check("token keys", FAIL, "QBOT_TOKEN_KEYS is unset", "set it to the output of `qbot keygen`")
        detail = f"{len(keys)} key(s), well-formed"
        if self._redis is None:
            return Check("token keys", OK, detail)
        cipher = TokenCipher(keys)
        sampled = unreadable = 0
        for key in self._vault_keys():
            blob = self._redis.get(key)
            if blob is None:
                continue
            sampled += 1
            try:
                cipher.open(key.decode() if isinstance(key, bytes) else str(key), blob)
            except CipherError:
                unreadable += 1
        if unreadable:
            return Check(
                "token keys", FAIL, f"{unreadable} of {sampled} stored links sampled do not open with these keys "
                "(those users would have to link again)",
                "put the key they were sealed with back into QBOT_TOKEN_KEYS, after the new one",
            )
        return Check("token keys", OK, detail + (f"; they open all {sampled} stored links sampled" if sampled else ""))

    def _vault_keys(self) -> Iterator[bytes | str]:
        """Up to _SAMPLE_LINKS stored links, from a bounded number of SCAN rounds (a big keyspace stays cheap)."""
        assert self._redis is not None
        cursor, found = 0, 0
        for _ in range(_SCAN_ROUNDS):
            cursor, keys = self._redis.scan(cursor, match="qbot:vault:*", count=1000)
            for key in keys:
                yield key
                found += 1
                if found >= _SAMPLE_LINKS:
                    return
            if cursor == 0:
                return

    # -- the IdP --------------------------------------------------------------------------------------------

    def idp_discovery(self) -> Check:
        if not self.issuer:
            return Check("IdP discovery", FAIL, "QBOT_OIDC_ISSUER is unset", "set it to the IdP's issuer URL")
        url = self.issuer + "/.well-known/openid-configuration"
        fix = "check QBOT_OIDC_ISSUER: it must be the issuer exactly as the IdP's discovery document names it"
        try:
            response = self._http.get(url)
        except httpx.HTTPError as err:
            return Check("IdP discovery", FAIL, f"{url} cannot be reached ({type(err).__name__})",
                         fix + ", and reachable from here (proxy, firewall)")
        try:
            document = response.json() if response.status_code == 200 else None
        except ValueError:
            document = None
        if not isinstance(document, dict):
            return Check("IdP discovery", FAIL, f"{url} answered HTTP {response.status_code}, not a discovery document",
                         fix)
        announced = str(document.get("issuer") or "")
        if announced.rstrip("/") != self.issuer:
            return Check("IdP discovery", FAIL, f"the discovery document names the issuer {announced!r}",
                         f"set QBOT_OIDC_ISSUER={announced.rstrip('/')}")
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
        if missing:
            return Check("IdP discovery", FAIL, f"the discovery document lacks {', '.join(missing)}",
                         "use the issuer of an OpenID Connect app (not a plain OAuth server)")
        self._discovery = document
        scopes = tuple((self.env.get("QBOT_OIDC_SCOPES") or " ".join(DEFAULT_SCOPES)).split())
        supported = document.get("scopes_supported")
        if isinstance(supported, list) and "offline_access" in scopes and "offline_access" not in supported:
            return Check("IdP discovery", WARN, "the IdP does not list offline_access among its scopes: users may "
                         "get no refresh token", "enable refresh tokens (offline_access) for the app at the IdP")
        return Check("IdP discovery", OK, f"{url} names this issuer")

    def idp_client(self) -> Check:
        if self._discovery is None:
            return Check("IdP client", SKIP, "needs the discovery document")
        if not self.client_id:
            return Check("IdP client", FAIL, "QBOT_OIDC_CLIENT_ID is unset", "set it to the IdP app's client id")
        secret = self.env.get("QBOT_OIDC_CLIENT_SECRET") or ""
        methods = self._discovery.get("token_endpoint_auth_methods_supported")
        post = isinstance(methods, list) and "client_secret_basic" not in methods and "client_secret_post" in methods
        form = {
            "grant_type": "authorization_code",
            "code": "qbot-doctor-" + secrets.token_urlsafe(12),  # no such code: the IdP must say invalid_grant
            "redirect_uri": self._redirect_uri(),
            "code_verifier": secrets.token_urlsafe(48),
        }
        endpoint = str(self._discovery["token_endpoint"])
        try:
            if post:
                credentials = {"client_id": self.client_id, "client_secret": secret}
                response = self._http.post(endpoint, data={**form, **credentials})
            else:
                response = self._http.post(endpoint, data=form, auth=(self.client_id, secret))
        except httpx.HTTPError as err:
            return Check("IdP client", FAIL, f"the token endpoint cannot be reached ({type(err).__name__})",
                         "check the network path to the IdP")
        error = _json_field(response, "error")
        if error == "invalid_grant":
            return Check("IdP client", OK, f"the IdP accepts client id {self.client_id!r} and its secret")
        if error == "invalid_client" or response.status_code == 401:
            return Check("IdP client", FAIL, f"the IdP refuses client id {self.client_id!r} or its secret "
                         f"({_json_field(response, 'error_description') or error or response.status_code})",
                         "check QBOT_OIDC_CLIENT_ID and QBOT_OIDC_CLIENT_SECRET against the IdP app")
        if error == "unauthorized_client":
            return Check("IdP client", FAIL, "the IdP app may not use the authorization code grant",
                         "allow the Authorization Code grant (and Refresh Token) for the app at the IdP")
        return Check("IdP client", WARN, f"unexpected answer to a probe: HTTP {response.status_code} {error or ''}",
                     "sign in once with qlink to be sure")

    def idp_redirect_uri(self) -> Check:
        if self._discovery is None or not self.client_id:
            return Check("IdP redirect URI", SKIP, "needs the discovery document and a client id")
        redirect = self._redirect_uri()
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect,
            "scope": "openid",
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": secrets.token_urlsafe(32),
            "code_challenge_method": "S256",
        }
        try:
            response = self._http.get(str(self._discovery["authorization_endpoint"]), params=params)
        except httpx.HTTPError as err:
            return Check("IdP redirect URI", FAIL, f"the authorization endpoint cannot be reached "
                         f"({type(err).__name__})", "check the network path to the IdP")
        if 400 <= response.status_code < 500:
            return Check("IdP redirect URI", FAIL, f"the IdP refuses the redirect URI {redirect} "
                         f"(HTTP {response.status_code})",
                         f"register {redirect} as a sign-in redirect URI of the IdP app, or fix QBOT_PUBLIC_URL")
        return Check("IdP redirect URI", OK, f"the IdP does not refuse {redirect}")

    def _redirect_uri(self) -> str:
        return (self.env.get("QBOT_PUBLIC_URL") or "http://127.0.0.1:3978").rstrip("/") + "/auth/callback"

    # -- AWS ------------------------------------------------------------------------------------------------

    def role(self) -> Check:
        role_arn = self.env.get("QBOT_ROLE_ARN") or ""
        if ":role/" not in role_arn:
            return Check("IAM role", FAIL, "QBOT_ROLE_ARN is unset or not a role ARN",
                         "set it to the QBOT_ROLE_ARN line `qbot admin provision` prints")
        name = role_arn.rsplit("/", 1)[1]
        if self.env.get("QBOT_STS_ENDPOINT_URL") and not self.env.get("QBOT_IAM_ENDPOINT_URL"):
            # STS is a stand-in (the sandbox, say): the role lives there, not in the account's IAM
            return Check("IAM role", SKIP, "STS is a custom endpoint (QBOT_STS_ENDPOINT_URL) and no "
                         "QBOT_IAM_ENDPOINT_URL is set to read the role from")
        try:
            role = self._aws.iam().get_role(RoleName=name)["Role"]
        except NoCredentialsError:
            return Check("IAM role", SKIP, "no AWS credentials here to read it with")
        except AWS_ERRORS as err:
            code = error_code(err)
            if code == "NoSuchEntity":
                return Check("IAM role", FAIL, f"{role_arn} does not exist",
                             "run `qbot admin provision`, or set QBOT_ROLE_ARN to the role it created")
            if code in _DENIED:
                return Check("IAM role", SKIP, f"these AWS credentials may not read it ({code})")
            return Check("IAM role", FAIL, f"IAM GetRole failed: {describe(err)}", "check the AWS credentials here")
        if role.get("Arn") and role["Arn"] != role_arn:
            return Check("IAM role", FAIL, f"the role named {name} is {role['Arn']}, not {role_arn}",
                         f"set QBOT_ROLE_ARN={role['Arn']}")
        document = role.get("AssumeRolePolicyDocument") or {}
        problems = self._trust_problems(document)
        if problems:
            return Check("IAM role", FAIL, f"its trust policy {'; '.join(sorted(set(problems), key=problems.index))}",
                         "run `qbot admin provision` (or apply manifests/aws/trust-policy.json)")
        domains = sorted({p for p in email_patterns(document) if p != "*"})
        emails = f"an Email in {', '.join(domains)}" if domains else "an Email of any domain"
        return Check(
            "IAM role", OK, f"{name} trusts the IdP for client id {self.client_id!r}, in sessions tagged with {emails} "
            "and nothing else",
        )

    def _trust_problems(self, document: dict[str, Any] | str) -> list[str]:
        policy = json.loads(document) if isinstance(document, str) else document
        statements = policy.get("Statement") or []
        statements = statements if isinstance(statements, list) else [statements]
        paths = _issuer_paths(self.issuer)
        assume = False
        seen: list[str] = []
        tagging: list[dict[str, Any]] = []  # the conditions of each statement that allows sts:TagSession
        for statement in statements:
            if statement.get("Effect") != "Allow":
                continue
            actions = _as_list(statement.get("Action"))
            federated = _as_list((statement.get("Principal") or {}).get("Federated"))
            if not any(_provider_path_of(arn) in paths for arn in federated):
                continue
            conditions = statement.get("Condition") or {}
            if "sts:AssumeRoleWithWebIdentity" in actions:
                audiences = [
                    value
                    for operator in ("StringEquals", "ForAnyValue:StringEquals")
                    for key, values in (conditions.get(operator) or {}).items()
                    if key.rsplit(":", 1)[0] in paths and key.endswith(":aud")
                    for value in _as_list(values)
                ]
                seen += audiences
                assume = assume or self.client_id in audiences
            if {"sts:TagSession", "sts:*", "*"} & set(actions):
                tagging.append(conditions)
        problems = []
        if not assume and seen:
            problems.append(f"lets the IdP's tokens for audience(s) {sorted(set(seen))} in, not {self.client_id!r}")
        elif not assume:
            problems.append(
                f"does not allow sts:AssumeRoleWithWebIdentity from the IdP {self.issuer} with "
                f"{(paths or ['<issuer>'])[0]}:aud = {self.client_id!r}"
            )
        if not tagging:
            problems.append("does not allow sts:TagSession with aws:RequestTag/Email present")
        # Allow statements add up: each one that allows TagSession must hold both conditions.
        for conditions in tagging:
            if not any("aws:RequestTag/Email" in (conditions.get(op) or {}) for op in ("StringLike", "StringEquals")):
                problems.append("allows sts:TagSession without an aws:RequestTag/Email condition")
            keys = set(_as_list((conditions.get("ForAllValues:StringEquals") or {}).get("aws:TagKeys")))
            if keys != set(SESSION_TAG_KEYS):
                allowed = f"aws:TagKeys {sorted(keys)}" if keys else "no ForAllValues:StringEquals aws:TagKeys"
                problems.append(f"lets sessions carry tags other than {', '.join(SESSION_TAG_KEYS)} ({allowed})")
        return problems

    def application(self) -> Check:
        app_id = self.env.get("QBOT_Q_APP_ID") or ""
        region = self._aws.region
        self._application_failed = True  # until it passes
        if not app_id:
            return Check("Q Business application", FAIL, "QBOT_Q_APP_ID is unset",
                         "set it to the QBOT_Q_APP_ID line `qbot admin provision` prints")
        try:
            app = self._aws.qbusiness().get_application(applicationId=app_id)
        except NoCredentialsError:
            self._application_failed = False
            return Check("Q Business application", SKIP, "no AWS credentials here to read it with")
        except AWS_ERRORS as err:
            code = error_code(err)
            if code == "ResourceNotFoundException":
                return Check("Q Business application", FAIL, f"no application {app_id} in {region}",
                             "set QBOT_Q_APP_ID (and QBOT_AWS_REGION) to the values `qbot admin provision` printed")
            if code in _DENIED:
                self._application_failed = False
                return Check("Q Business application", SKIP, f"these AWS credentials may not read it ({code})")
            return Check("Q Business application", FAIL, f"GetApplication failed: {describe(err)}",
                         "check QBOT_AWS_REGION and the AWS credentials here")
        if app.get("status") != "ACTIVE":
            return Check("Q Business application", FAIL, f"{app_id} is {app.get('status')}, not ACTIVE",
                         "wait for it to become ACTIVE (or run `qbot admin provision`, which waits)")
        if app.get("identityType") != "AWS_IAM_IDP_OIDC":
            return Check("Q Business application", FAIL, f"{app_id} uses identity type {app.get('identityType')}",
                         "qbot needs an AWS_IAM_IDP_OIDC application: create one with `qbot admin provision`")
        if self.client_id not in (app.get("clientIdsForOIDC") or []):
            return Check("Q Business application", FAIL,
                         f"{app_id} accepts client ids {app.get('clientIdsForOIDC')}, not {self.client_id!r}",
                         "set QBOT_OIDC_CLIENT_ID to one of them, or use an application made for this client id")
        provider = str(app.get("iamIdentityProviderArn") or "")
        if self.issuer and _provider_path_of(provider) not in _issuer_paths(self.issuer):
            return Check("Q Business application", FAIL, f"{app_id} trusts {provider}, not the IdP {self.issuer}",
                         "set QBOT_OIDC_ISSUER to the IdP the application trusts, or provision one for this IdP")
        self._application_failed = False
        auto = (app.get("autoSubscriptionConfiguration") or {}).get("autoSubscribe")
        if auto != "ENABLED":
            return Check("Q Business application", WARN, f"{app_id} is ACTIVE, but auto-subscription is off: "
                         "users without a subscription are refused", "run `qbot admin provision` to enable it")
        return Check("Q Business application", OK, f"{app_id} is ACTIVE, AWS_IAM_IDP_OIDC, for client id "
                     f"{self.client_id!r}")

    def group_sync(self) -> Check:
        try:
            settings = GroupSyncSettings.from_env(self.env)
        except ConfigError as err:
            return Check("group sync", FAIL, str(err), "set QBOT_Q_INDEX_ID, or QBOT_GROUP_SYNC=false")
        if not settings.enabled:
            return Check("group sync", SKIP, "automatic group sync is off (QBOT_GROUP_SYNC)")
        if self._application_failed:
            return Check("group sync", SKIP, "needs a working Q Business application")
        index = IndexGroups(self._aws.qbusiness(), self.env.get("QBOT_Q_APP_ID") or "", settings.index_id)
        try:
            count = len(index.names())
        except NoCredentialsError:
            return Check("group sync", FAIL, "no AWS credentials here: PutGroup would fail",
                         "give the bot an identity (task role, instance profile, QBOT_AWS_PROFILE) allowed "
                         "manifests/aws/group-sync-policy.json")
        except AWS_ERRORS as err:
            return Check("group sync", FAIL, f"ListGroups on index {settings.index_id} failed: {describe(err)}",
                         "check QBOT_Q_INDEX_ID, and allow the bot's AWS identity manifests/aws/group-sync-policy.json")
        return Check("group sync", OK, f"index {settings.index_id} is readable ({count} groups)")

    # -- chat platforms -------------------------------------------------------------------------------------

    def slack(self) -> Check:
        token = (self.env.get("QBOT_SLACK_BOT_TOKEN") or "").strip()
        if not token:
            return Check("Slack", SKIP, "not configured (QBOT_SLACK_BOT_TOKEN)")
        if not (self.env.get("QBOT_SLACK_SIGNING_SECRET") or self.env.get("QBOT_SLACK_APP_TOKEN")):
            return Check("Slack", FAIL, "neither QBOT_SLACK_SIGNING_SECRET nor QBOT_SLACK_APP_TOKEN is set",
                         "set the app's signing secret (HTTP mode) or an xapp- app-level token (Socket Mode)")
        api = (self.env.get("QBOT_SLACK_API_URL") or DEFAULT_SLACK_API_URL).rstrip("/") + "/"
        try:
            response = self._http.post(api + "auth.test", headers={"Authorization": f"Bearer {token}"})
            answer = response.json()
        except (httpx.HTTPError, ValueError) as err:
            return Check("Slack", FAIL, f"{api}auth.test cannot be reached ({type(err).__name__})",
                         "check the network path to Slack (and QBOT_SLACK_API_URL)")
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else None
            return Check("Slack", FAIL, f"auth.test refuses the bot token ({error or response.status_code})",
                         "reinstall the Slack app and set QBOT_SLACK_BOT_TOKEN to its Bot User OAuth Token (xoxb-...)")
        return Check("Slack", OK, f"the bot token works: {answer.get('user', '?')} in {answer.get('team', '?')}")

    def teams(self) -> Check:
        app_id = (self.env.get("QBOT_TEAMS_APP_ID") or "").strip()
        password = self.env.get("QBOT_TEAMS_APP_PASSWORD") or ""
        if not app_id:
            return Check("Teams", SKIP, "not configured (QBOT_TEAMS_APP_ID)")
        if not password:
            anonymous = (self.env.get("QBOT_TEAMS_ALLOW_ANONYMOUS") or "").lower() in ("1", "true", "yes", "on")
            if anonymous:
                return Check("Teams", WARN, "anonymous mode: replies go out unauthenticated (local testing only)",
                             "set QBOT_TEAMS_APP_PASSWORD for a real Teams deployment")
            return Check("Teams", FAIL, "QBOT_TEAMS_APP_PASSWORD is unset", "set it to a client secret of the app")
        tenant = (self.env.get("QBOT_TEAMS_TENANT_ID") or "").strip() or "botframework.com"
        login = (self.env.get("QBOT_TEAMS_LOGIN_URL") or DEFAULT_TEAMS_LOGIN_URL).rstrip("/")
        url = f"{login}/{tenant}/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": app_id,
            "client_secret": password,
            "scope": BOT_FRAMEWORK_SCOPE,
        }
        try:
            response = self._http.post(url, data=form)
        except httpx.HTTPError as err:
            return Check("Teams", FAIL, f"{url} cannot be reached ({type(err).__name__})",
                         "check the network path to the Microsoft login service")
        if response.status_code == 200 and _json_field(response, "access_token"):
            return Check("Teams", OK, f"app {app_id} obtains a Bot Framework token from tenant {tenant}")
        error = _json_field(response, "error") or f"HTTP {response.status_code}"
        description = (_json_field(response, "error_description") or "").split("\n")[0][:160]
        if error == "invalid_client":
            fix = "QBOT_TEAMS_APP_PASSWORD is wrong or expired: make a new client secret for the app"
        elif error in ("unauthorized_client", "invalid_request"):
            fix = "check QBOT_TEAMS_APP_ID, and QBOT_TEAMS_TENANT_ID for a single-tenant app (unset for multi-tenant)"
        else:
            fix = "check QBOT_TEAMS_APP_ID, QBOT_TEAMS_APP_PASSWORD and QBOT_TEAMS_TENANT_ID"
        return Check("Teams", FAIL, f"no token for app {app_id} ({error}: {description})".rstrip(": )") + ")", fix)


def _json_field(response: httpx.Response, name: str) -> str:
    try:
        document = response.json()
    except ValueError:
        return ""
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) else ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _issuer_paths(issuer: str) -> list[str]:
    """How IAM may name the issuer's provider: host[:port]/path, and without the port (IAM drops it)."""
    if not issuer:
        return []
    full = provider_path(issuer)
    parts = urlsplit(issuer)
    bare = ((parts.hostname or "") + parts.path).rstrip("/")
    return [full] if bare == full else [full, bare]


def _provider_path_of(arn: str) -> str:
    try:
        return path_of_provider_arn(arn)
    except ValueError:
        return ""


def run_doctor(env: Mapping[str, str], out: Callable[[str], None], *, aws: AdminAws | None = None) -> int:
    """Print one line per check and a summary; 1 when any check failed, else 0."""
    with httpx.Client(timeout=httpx.Timeout(8.0, connect=4.0), follow_redirects=False) as http:
        checks = []
        for check in Doctor(env, http=http, aws=aws).run():
            checks.append(check)
            out(check.line())
    counts = {status: sum(1 for c in checks if c.status == status) for status in (OK, FAIL, WARN, SKIP)}
    out(f"\n{counts[OK]} ok, {counts[FAIL]} failed, {counts[WARN]} warning(s), {counts[SKIP]} skipped")
    return 1 if counts[FAIL] else 0
