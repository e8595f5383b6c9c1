"""The credential broker: valid AWS credentials, tagged with the user's email, for a chat identity.

Cached credentials (in the vault) are reused until `refresh_margin_seconds` before they expire. Otherwise the
broker refreshes at the IdP with the stored refresh token, stores the rotated refresh token at once, verifies
the fresh id_token, and trades it at STS (AssumeRoleWithWebIdentity) for credentials it caches.

Single flight per identity: within a process, concurrent callers share one in-flight task; across processes, a
`RedisLock` lets one holder mint while the others wait, with short backoff and for a bounded time, for the
lock or for the holder's credentials in the cache. So N simultaneous messages of one user cost one
IdP refresh and one STS call, wherever they land.

Credentials belong to one link generation (see `bot.vault`): an unlink or relink that lands while a flight is
minting means its credentials are not cached (and a relink is minted again, for the new link), so the
previous person's credentials never answer for this chat account. Every refreshed id_token must still name
the linked user (sub, iss) and carry the linked email as its AWS Email tag.

SAML mode has no refresh token: the link's credentials come from AssumeRoleWithSAML when the user signs in
(`assume_role_with_saml`, called by the account link), are cached like any others, and are used until they
expire; then the user is asked to sign in again (`SignInExpired`, a `NotLinked`).

Nothing secret is logged: tokens appear only as a sha256 prefix.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar, cast

from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from redis.asyncio import Redis

from bot.aws_clients import credentialless_session
from bot.errors import (
    EmailTagMismatch,
    EmailTagMissing,
    IdTokenInvalid,
    LinkExpired,
    NotLinked,
    QUnavailable,
    SignInExpired,
)
from bot.group_sync import GroupObserver
from bot.metrics import Metrics
from bot.model import AwsCredentials, ChatIdentity
from bot.oidc import OidcClient
from bot.redis_lock import LEASE_SECONDS, RedisLock
from bot.vault import LinkedAccount, Vault

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_PREFIX = "qbot:lock:creds:"
# A SAML link's credentials cannot be renewed: they serve until this close to their end (a Q call must fit).
SAML_LAST_USE_SECONDS = 30.0
SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]", re.ASCII)

_STS_TRANSIENT = {
    "Throttling", "IDPCommunicationError", "InternalFailure", "ServiceUnavailable", "RequestExpired",
}  # fmt: skip


class _LinkChanged(Exception):
    """The link was replaced while its credentials were being minted: what was minted is not this link's."""


def fingerprint(token: str) -> str:
    """A log-safe handle for a secret: the first 12 hex digits of its sha256."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]  # equivalent mutant: [:13], a longer log handle


def role_session_name(identity: ChatIdentity, email: str | None) -> str:
    """The RoleSessionName STS records (CloudTrail shows it): the email when there is one, else a hash of
    the chat identity; always [\\w+=,.@-]{2,64}."""
    digest = hashlib.sha256(identity.key.encode()).hexdigest()
    base = SESSION_NAME_UNSAFE.sub("-", email) if email else f"qbot-{digest[:16]}"
    if len(base) > 64:
        base = f"{base[:51]}-{digest[:12]}"
    return base if len(base) >= 2 else f"qbot-{digest[:16]}"


class CredentialBroker:
    """AWS credentials per chat identity; one IdP refresh and one STS call per credential lifetime."""

    def __init__(
        self,
        vault: Vault,
        oidc: OidcClient,
        redis: Redis,
        *,
        role_arn: str,
        region: str,
        sts_endpoint_url: str | None,
        metrics: Metrics,
        executor: Executor,
        refresh_margin_seconds: float = 300,
        duration_seconds: int = 3600,
        flight_timeout_seconds: float = 30.0,
        lock_wait_seconds: float | None = None,
        lock_lease_seconds: float = LEASE_SECONDS,
        group_observer: GroupObserver | None = None,
        saml_provider_arn: str | None = None,
    ) -> None:
        self._vault = vault
        self._saml_provider_arn = saml_provider_arn  # SAML mode: the IAM SAML provider STS checks assertions with
        self._oidc = oidc
        self._redis = redis
        self._role_arn = role_arn
        self._metrics = metrics
        self._executor = executor
        self._margin = refresh_margin_seconds
        self._group_observer = group_observer  # told the groups of every refreshed id_token
        self._duration = duration_seconds
        self._flight_timeout = flight_timeout_seconds
        # The lock is a lease its holder renews while minting (which `flight_timeout_seconds` bounds), so two
        # holders never overlap; a crashed holder's lock frees itself within the lease, within the waiters' patience.
        self._lock_ttl = lock_lease_seconds
        self._wait_seconds = flight_timeout_seconds + 10 if lock_wait_seconds is None else lock_wait_seconds
        # STS AssumeRoleWithWebIdentity is unsigned: no AWS credentials are looked up for this client.
        self._sts = cast("STSClient", credentialless_session().create_client(
            "sts",
            region_name=region,
            endpoint_url=sts_endpoint_url,
            config=Config(
                signature_version=UNSIGNED,
                connect_timeout=3,
                read_timeout=10,
                retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=50,
            ),
        ))
        self._flights: dict[str, asyncio.Task[AwsCredentials]] = {}

    async def credentials(self, identity: ChatIdentity) -> AwsCredentials:
        """Credentials valid for at least `refresh_margin_seconds` (or as long as STS grants, if shorter).

        NotLinked without a link; LinkExpired (and the link is cleared) when the IdP refuses the refresh
        token; EmailTagMissing when the id_token lacks the Email tag; IdTokenInvalid, IdentityProviderError
        or QUnavailable when the IdP or STS fail otherwise.
        """
        # equivalent mutants: not reading the flight here (None, get(None)) only costs a joiner one cache read; the
        # second read below still joins the flight in the air
        flight = self._flights.get(identity.key)
        if flight is None:  # (while one is in the air, joining it costs no Redis round trip)
            cached = await self._usable_cached(identity)
            if cached is not None:
                return cached
            flight = self._flights.get(identity.key)  # one may have taken off while we read the cache
        if flight is None:
            # equivalent mutants: the task's name (read by debuggers only)
            flight = asyncio.create_task(self._fly(identity), name=f"credentials {identity.key}")
            self._flights[identity.key] = flight
            flight.add_done_callback(functools.partial(self._landed, identity.key))
        # shield: one impatient caller giving up must not cancel the flight the others wait for
        return await asyncio.shield(flight)

    async def forget(self, identity: ChatIdentity) -> None:
        """Drop the cached credentials: the next `credentials()` mints new ones."""
        await self._vault.delete_credentials(identity)

    # -- single flight --------------------------------------------------------------------------------

    def _landed(self, key: str, task: asyncio.Task[AwsCredentials]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        # not killed: `if task.cancelled()` only changes what asyncio logs when the task is garbage collected
        if not task.cancelled():
            task.exception()  # retrieved: callers that all gave up must not leave a "never retrieved" warning

    async def _fly(self, identity: ChatIdentity) -> AwsCredentials:
        """Take the Redis lock and mint, or wait for the process that holds it to fill the cache."""
        lock = RedisLock(
            self._redis, LOCK_PREFIX + identity.key, ttl_seconds=self._lock_ttl, wait_seconds=self._wait_seconds,
            renew=True,
        )
        if not await lock.acquire(stop_waiting=functools.partial(self._cache_filled, identity)):
            cached = await self._usable_cached(identity)
            if cached is not None:  # the holder minted them while we waited
                return cached
            raise QUnavailable(
                "Getting your AWS credentials is taking too long. Please try again in a minute.",
                detail=f"waited {self._wait_seconds:.0f}s for the credential lock of {identity.key}",
            )
        try:
            # the previous holder may have finished between our cache check and the lock
            cached = await self._usable_cached(identity)
            if cached is not None:
                return cached
            try:
                async with asyncio.timeout(self._flight_timeout):
                    return await self._mint(identity)
            except TimeoutError:
                raise QUnavailable(
                    "Getting your AWS credentials is taking too long. Please try again in a minute.",
                    detail=f"minting credentials for {identity.key} took over {self._flight_timeout}s",
                ) from None
        finally:
            await lock.release()

    async def _cache_filled(self, identity: ChatIdentity) -> bool:
        return await self._usable_cached(identity) is not None

    async def _usable_cached(self, identity: ChatIdentity) -> AwsCredentials | None:
        cached = await self._vault.load_credentials(identity)
        # equivalent mutant: `>=` differs only when the (float) seconds left equal the margin exactly
        if cached is not None and cached.seconds_left() > self._margin:
            return cached
        return None

    # -- minting --------------------------------------------------------------------------------------

    async def _mint(self, identity: ChatIdentity) -> AwsCredentials:
        """Mint and cache credentials for the current link; a relink meanwhile is minted once more, for it."""
        for _ in range(2):
            account = await self._vault.load(identity)
            if account is None:
                raise NotLinked(detail=f"{identity.key} has no linked account")
            try:
                creds = await self._mint_for(identity, account)
                if await self._vault.store_credentials(identity, creds, generation=account.generation):
                    return creds
            except _LinkChanged:
                pass
            log.info("the link of %s changed while its credentials were minted: they were dropped", identity.key)
        raise NotLinked(detail=f"{identity.key} was unlinked or relinked while its credentials were minted")

    async def _mint_for(self, identity: ChatIdentity, account: LinkedAccount) -> AwsCredentials:
        if not account.refresh_token:  # a SAML link: its sign-in's credentials, while they last; nothing to renew
            cached = await self._vault.load_credentials(identity)
            # equivalent mutant: `>=` differs only at exactly SAML_LAST_USE_SECONDS left (a float)
            if cached is not None and cached.seconds_left() > SAML_LAST_USE_SECONDS:
                return cached
            raise SignInExpired(detail=f"the SAML sign-in of {identity.key} has no credentials left")
        try:
            tokens = await self._oidc.refresh(account.refresh_token)
        except LinkExpired:
            self._metrics.idp_refreshes.labels("expired").inc()
            await self._clear_dead_link(identity, account.refresh_token)
            raise
        except Exception:
            self._metrics.idp_refreshes.labels("error").inc()
            raise
        self._metrics.idp_refreshes.labels("ok").inc()

        # equivalent mutant: `or`: a refresh answered without a refresh token (Cognito) comes back from authlib with
        # the one redeemed, which the vault then stores again (test_an_idp_that_does_not_rotate_refresh_tokens_...)
        if tokens.refresh_token and tokens.refresh_token != account.refresh_token:
            stored = await self._vault.replace_refresh_token(
                identity, tokens.refresh_token, previous=account.refresh_token
            )
            log.debug(
                "refresh token of %s rotated %s -> %s (stored: %s)",
                identity.key, fingerprint(account.refresh_token), fingerprint(tokens.refresh_token), stored,
            )
            if not stored:  # unlinked or relinked meanwhile: these tokens belong to a link that is gone
                raise _LinkChanged

        claims = await self._oidc.verify_id_token(tokens.id_token, nonce=None)
        if claims.subject != account.subject or claims.issuer != account.issuer:
            raise IdTokenInvalid(detail="sub/iss: the refreshed id_token names another user than the link")
        if claims.email_tag is None:
            raise EmailTagMissing(detail=f"refreshed id_token of {identity.key} has no Email principal tag")
        # STS and Q act on the Email tag: it must still be the email the link was verified with.
        if claims.email_tag.lower() != account.email.lower() or (
            claims.email is not None and claims.email.lower() != claims.email_tag.lower()
        ):
            raise EmailTagMismatch(
                "Your sign-in now gives AWS a different email address than the one you linked with, so I "
                "won't answer as it. Run qlink to link again; if this keeps happening, ask your administrator.",
                detail=f"refreshed id_token of {identity.key}: Email tag differs from the linked email",
            )
        if self._group_observer is not None:
            await self._group_observer.observe(claims.email_tag, claims.groups)

        return await self._assume_role(identity, tokens.id_token, claims.email_tag)

    async def _clear_dead_link(self, identity: ChatIdentity, refresh_token: str) -> None:
        """Forget a link whose refresh token the IdP refused, unless it was relinked meanwhile."""
        current = await self._vault.load(identity)
        if current is None or current.refresh_token == refresh_token:
            await self._vault.delete(identity)
            log.info("link of %s expired at the IdP (refresh token %s): cleared", identity.key,
                     fingerprint(refresh_token))
        await self._vault.delete_credentials(identity)

    async def _assume_role(self, identity: ChatIdentity, id_token: str, email: str) -> AwsCredentials:
        return await self._call_sts(identity, functools.partial(
            self._sts.assume_role_with_web_identity,
            RoleArn=self._role_arn,
            RoleSessionName=role_session_name(identity, email),
            WebIdentityToken=id_token,
            DurationSeconds=self._duration,
        ))

    async def assume_role_with_saml(self, identity: ChatIdentity, saml_response_b64: str) -> AwsCredentials:
        """SAML mode: trade a verified SAML response for the link's credentials (AssumeRoleWithSAML, unsigned), for
        the configured session length. STS verifies it again against IAM's SAML provider, and takes the session
        name and Email tag from the assertion's attributes. Not cached here: the link stores them."""
        if not self._saml_provider_arn:
            raise QUnavailable(detail="assume_role_with_saml without QBOT_SAML_PROVIDER_ARN")
        # equivalent mutant: identity=None (it names the chat account in a `detail` only). Not killed: dropping
        # DurationSeconds, which STS defaults to the 3600 s the SAML tests configure
        return await self._call_sts(identity, functools.partial(
            self._sts.assume_role_with_saml,
            RoleArn=self._role_arn,
            PrincipalArn=self._saml_provider_arn,
            SAMLAssertion=saml_response_b64,
            DurationSeconds=self._duration,
        ))

    async def _call_sts(self, identity: ChatIdentity, call: Callable[[], Any]) -> AwsCredentials:
        # equivalent mutants: the defaults of the .get()s below (Error, Code, ResponseMetadata, RequestId,
        # HTTPStatusCode): botocore's ClientError always carries them; and `detail` is for the log only
        try:
            response = await self._off_loop(call)
        except ClientError as err:
            error = err.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            request_id = str(err.response.get("ResponseMetadata", {}).get("RequestId", ""))
            transient = code in _STS_TRANSIENT or err.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", 0
            ) >= 500
            self._metrics.sts_calls.labels("error" if transient else "refused").inc()
            detail = f"STS {code} for {identity.key}: {error.get('Message', '')}"
            if transient:
                raise QUnavailable(
                    "AWS is not issuing credentials right now. Please try again in a minute.",
                    detail=detail, request_id=request_id,
                ) from None
            raise QUnavailable(
                f"AWS refused to issue credentials for your sign-in ({code}). "
                "Please tell your administrator: the IAM role's trust policy or identity provider may be wrong.",
                detail=detail, request_id=request_id,
            ) from None
        except BotoCoreError as err:
            self._metrics.sts_calls.labels("error").inc()
            raise QUnavailable(
                "AWS STS cannot be reached. Please try again in a minute.",
                detail=f"STS for {identity.key}: {type(err).__name__}",
            ) from None
        self._metrics.sts_calls.labels("ok").inc()
        issued = response["Credentials"]
        return AwsCredentials(
            access_key_id=issued["AccessKeyId"],
            secret_access_key=issued["SecretAccessKey"],
            session_token=issued["SessionToken"],
            expiration=issued["Expiration"],
        )

    async def _off_loop(self, call: Callable[[], T]) -> T:
        # equivalent mutant: the loop's default executor runs the call alike (ours only bounds the threads)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

