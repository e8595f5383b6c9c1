"""The composition root: builds Redis, stores, OIDC client, broker, Q client, core and adapters, explicitly.

Tests build the same graph with the sandbox's endpoints; nothing here is a module-level singleton.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from aiohttp import web
from redis.asyncio import Redis

from adapters.ports import Adapter, AdapterServices
from adapters.web.plugin_callback import plugin_routes
from adapters.web.signin import auth_routes
from bot.accounts import Accounts
from bot.adapter_memory import AdapterMemory
from bot.attachments import DownloadBudget
from bot.broker import CredentialBroker
from bot.channel_policy import ChannelPolicies
from bot.cipher import TokenCipher
from bot.config import Settings
from bot.conversations import Conversations
from bot.core import Core
from bot.deliveries import Deliveries
from bot.group_sync import GroupSync, build_group_sync
from bot.link_deadlines import LinkDeadlines
from bot.links import LinkTokens, LoginStates
from bot.metrics import Metrics
from bot.oidc import OidcClient
from bot.pending_questions import PendingQuestions
from bot.plugins import Plugins
from bot.private_answers import PrivateAnswers
from bot.qbusiness import QBusinessClient
from bot.redaction import configured_secrets, install_redaction
from bot.saml import AssertionLedger, SamlMetadataSource, SamlServiceProvider
from bot.tls import tls_context
from bot.turn_lock import TurnLock
from bot.turn_metrics import TurnStreamMetrics
from bot.turn_queue import TurnQueue, TurnWorkers
from bot.vault import Vault
from qbot.health import health_routes
from qbot.redis_client import redis_client

log = logging.getLogger(__name__)

AWS_THREADS = 32  # STS and group sync calls at once; each is brief, and a user's credentials last an hour
AdapterFactory = Callable[[Core, Settings, AdapterServices], Adapter | None]
FORWARDABLE_LINKS = (
    "QBOT_REQUIRE_EMAIL_MATCH=false: sign-in links become forwardable. Whoever opens a link and signs in binds "
    "their own IdP account to the chat account that asked for it, and that chat account then asks Q as them."
)


@dataclass
class BotGraph:
    """Everything `build_app` made, for tests and benchmarks that look inside."""

    settings: Settings
    redis: Redis
    core: Core
    metrics: Metrics
    adapters: list[Adapter]
    broker: CredentialBroker
    deliveries: Deliveries
    group_sync: GroupSync | None
    services: AdapterServices
    turns: TurnQueue
    workers: TurnWorkers | None  # None in a web-only process (`qbot serve --role web`)


GRAPH = web.AppKey("graph", BotGraph)


def default_adapters() -> list[AdapterFactory]:
    """Every platform's adapter (each is on when its settings are)."""
    from adapters.slack.app import slack_adapter
    from adapters.teams.adapter import teams_adapter
    from adapters.web.console import web_console

    return [web_console, teams_adapter, slack_adapter]


def build_app(settings: Settings, adapters: list[AdapterFactory] | None = None) -> web.Application:
    if not settings.redis_url:
        raise ValueError("build_app needs settings.redis_url (qbot serve starts an embedded Redis when unset)")
    secrets = [settings.oidc_client_secret, settings.session_secret, *settings.token_keys]
    install_redaction().add_secrets([*secrets, *configured_secrets(settings.extra)])  # before anything logs
    if not settings.require_email_match:
        log.warning(FORWARDABLE_LINKS)
    metrics = Metrics()
    redis = redis_client(settings.redis_url, max_connections=settings.redis_max_connections)
    cipher = TokenCipher(settings.token_keys)
    # Blocking boto3 calls only: STS (once per user per credential lifetime) and group sync. ChatSync is async.
    executor = ThreadPoolExecutor(max_workers=AWS_THREADS, thread_name_prefix="aws")
    http = httpx.AsyncClient(timeout=httpx.Timeout(15.0), verify=tls_context())
    vault = Vault(redis, cipher)
    group_sync = build_group_sync(  # None unless QBOT_GROUP_SYNC=true
        settings.extra, redis, application_id=settings.q_app_id, region=settings.aws_region, executor=executor
    )
    oidc = OidcClient(
        settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret,
        list(settings.oidc_scopes), settings.redirect_uri, http=http,
    )
    saml: SamlServiceProvider | None = None
    if settings.identity_mode == "saml":  # AssumeRoleWithSAML at sign-in, for the longest session asked
        saml = SamlServiceProvider(
            SamlMetadataSource(
                url=settings.saml_metadata_url or None, file=settings.saml_metadata_file or None, http=http
            ),
            sp_entity_id=settings.saml_sp_entity_id,
            acs_url=settings.saml_acs_url,
            ledger=AssertionLedger(redis),
        )
    broker = CredentialBroker(
        vault, oidc, redis, role_arn=settings.role_arn, region=settings.aws_region,
        sts_endpoint_url=settings.sts_endpoint_url, metrics=metrics, executor=executor,
        group_observer=group_sync,
        saml_provider_arn=settings.saml_provider_arn if saml is not None else None,
        duration_seconds=settings.saml_session_seconds if saml is not None else 3600,
    )
    q = QBusinessClient(
        app_id=settings.q_app_id, region=settings.aws_region, endpoint_url=settings.q_endpoint_url,
        max_concurrency=settings.q_max_concurrency, metrics=metrics,
    )
    conversations = Conversations(redis, settings.conversation_ttl_seconds)
    deliveries = Deliveries(redis)
    accounts = Accounts(
        settings,
        vault=vault,
        links=LinkTokens(redis, settings.link_ttl_seconds, cipher),
        login_states=LoginStates(redis, cipher, settings.link_ttl_seconds),
        link_deadlines=LinkDeadlines(redis),
        conversations=conversations,
        oidc=oidc,
        metrics=metrics,
        group_observer=group_sync,
        saml=saml,
        broker=broker,
    )
    turn_lock = TurnLock(redis)
    core = Core(
        settings,
        accounts=accounts,
        vault=vault,
        conversations=conversations,
        broker=broker,
        q=q,
        metrics=metrics,
        deliveries=deliveries,
        turns=turn_lock,
        downloads=DownloadBudget.from_env(settings.extra),  # one budget for every platform's files
        channel_policies=ChannelPolicies(redis),
        private_answers=PrivateAnswers(redis, cipher),
        pending_questions=PendingQuestions(redis, cipher, settings.link_ttl_seconds),
        plugins=Plugins(
            redis, cipher, q=q, broker=broker, conversations=conversations, turns=turn_lock,
            public_url=settings.public_url, auth_seconds=settings.link_ttl_seconds,
        ),
    )
    app = web.Application()
    turns = TurnQueue(redis, cipher, claim_idle_seconds=settings.turn_claim_seconds)
    workers = None
    if settings.role in ("worker", "all"):
        workers = TurnWorkers(turns, turns.handlers, concurrency=settings.worker_concurrency)
    stream_metrics = TurnStreamMetrics(turns, workers)
    metrics.registry.register(stream_metrics)
    metrics_token = settings.extra.get("QBOT_METRICS_TOKEN", "")  # set: /metrics wants it as a bearer token
    app.add_routes(health_routes(redis, metrics, stream_metrics, metrics_token=metrics_token))
    takes_requests = settings.role in ("web", "all")  # a worker serves only /healthz, /readyz and /metrics
    if takes_requests:
        app.add_routes(auth_routes(core))
        app.add_routes(plugin_routes(core))
    built: list[Adapter] = []
    services = AdapterServices(memory=AdapterMemory(redis, cipher), deliveries=deliveries, turns=turns)
    for factory in adapters if adapters is not None else default_adapters():
        adapter = factory(core, settings, services)
        if adapter is not None:
            if takes_requests:
                app.add_routes(adapter.routes())
            built.append(adapter)
    app[GRAPH] = BotGraph(
        settings, redis, core, metrics, built, broker, deliveries, group_sync, services, turns, workers
    )

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        for adapter in built:
            await adapter.start()
        if workers is not None:
            await workers.start()
        if group_sync is not None:
            await group_sync.start()
        yield
        if group_sync is not None:
            await group_sync.stop()
        if workers is not None:
            await workers.stop()
        for adapter in reversed(built):
            await adapter.stop()
        await oidc.aclose()
        await http.aclose()
        await q.aclose()
        await redis.aclose()
        executor.shutdown(wait=False, cancel_futures=True)

    app.cleanup_ctx.append(lifecycle)
    return app
