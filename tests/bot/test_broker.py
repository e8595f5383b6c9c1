"""CredentialBroker through the real chain: sandbox IdP and STS over HTTP, a real Redis, the real vault."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from bot.broker import LOCK_PREFIX, CredentialBroker, role_session_name
from bot.cipher import TokenCipher
from bot.errors import (
    EmailTagMismatch,
    EmailTagMissing,
    IdentityProviderError,
    IdTokenInvalid,
    LinkExpired,
    NotLinked,
    QUnavailable,
)
from bot.metrics import Metrics
from bot.model import ChatIdentity
from bot.vault import Vault
from sandbox.serving import bind, url_of
from sandbox.world import ROLE_ARN, Sandbox
from tests.bot.linking import link_user, oidc_client, signed_in_account
from tests.conftest import until

ALICE = ChatIdentity("slack", "T0001", "U0ALICE")
ALICE_EMAIL = "alice@example.com"


class Process:
    """One bot process's share of the graph: its own Redis connection, vault, OIDC client, metrics, broker."""

    def __init__(self, sandbox: Sandbox, redis_url: str, cipher: TokenCipher, executor: ThreadPoolExecutor,
                 **broker_options: Any) -> None:
        self.redis = Redis.from_url(redis_url)
        self.vault = Vault(self.redis, cipher)
        self.oidc = oidc_client(sandbox)
        self.metrics = Metrics()
        env = sandbox.env()
        broker_options.setdefault("sts_endpoint_url", env["QBOT_STS_ENDPOINT_URL"])
        self.broker = CredentialBroker(
            self.vault, self.oidc, self.redis, role_arn=env["QBOT_ROLE_ARN"], region=env["QBOT_AWS_REGION"],
            metrics=self.metrics, executor=executor, **broker_options,
        )

    def count(self, metric: str, outcome: str) -> float:
        return self.metrics.registry.get_sample_value(f"qbot_{metric}_total", {"outcome": outcome}) or 0.0

    async def close(self) -> None:
        await self.oidc.aclose()
        await self.redis.aclose()


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="test-aws")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
async def make_process(
    sandbox: Sandbox, redis_url: str, executor: ThreadPoolExecutor
) -> AsyncIterator[Callable[..., Process]]:
    cipher = TokenCipher.ephemeral()  # shared: every process of one deployment has the same keys
    made: list[Process] = []

    def make(**broker_options: Any) -> Process:
        made.append(Process(sandbox, redis_url, cipher, executor, **broker_options))
        return made[-1]

    yield make
    for process in made:
        await process.close()


@pytest.fixture
def bot(make_process: Callable[..., Process]) -> Process:
    return make_process()


def issued_to(sandbox: Sandbox, access_key_id: str) -> tuple[str | None, str]:
    """Who the STS stand-in minted these credentials for: (Email session tag, assumed-role ARN)."""
    issued = sandbox.credentials.lookup(access_key_id)
    assert issued is not None
    return issued.email, issued.principal_arn


async def test_not_linked(bot: Process) -> None:
    with pytest.raises(NotLinked):
        await bot.broker.credentials(ALICE)


async def test_mints_tagged_credentials_then_reuses_them(bot: Process, sandbox: Sandbox) -> None:
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    creds = await bot.broker.credentials(ALICE)
    assert creds.access_key_id.startswith("ASIA") and 3500 < creds.seconds_left() <= 3600
    assert issued_to(sandbox, creds.access_key_id) == (
        ALICE_EMAIL, f"arn:aws:sts::123456789012:assumed-role/{ROLE_ARN.rsplit('/', 1)[1]}/{ALICE_EMAIL}"
    )
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.refresh_token != account.refresh_token  # the rotated one, at once

    again = await bot.broker.credentials(ALICE)
    assert again == creds
    assert sandbox.idp.stats.refreshes["alice"] == 1 and sandbox.sts.stats.calls[ALICE_EMAIL] == 1
    assert bot.count("idp_refreshes", "ok") == 1 and bot.count("sts_calls", "ok") == 1


async def test_an_idp_that_does_not_rotate_refresh_tokens_keeps_the_one_it_has(bot: Process, sandbox: Sandbox) -> None:
    """Cognito answers a refresh without a new refresh token (authlib hands back the one redeemed): the stored one
    stays, and works again."""
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.idp.faults.omit_refresh_token = True
    await bot.broker.credentials(ALICE)
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.refresh_token == account.refresh_token
    await bot.broker.forget(ALICE)
    await bot.broker.credentials(ALICE)  # the same refresh token, redeemed again
    assert sandbox.idp.stats.refreshes["alice"] == 2 and bot.count("idp_refreshes", "ok") == 2


async def test_refreshes_inside_the_margin_with_the_rotated_token(
    make_process: Callable[..., Process], sandbox: Sandbox
) -> None:
    bot = make_process(duration_seconds=900, refresh_margin_seconds=1000)  # always inside the margin
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    first = await bot.broker.credentials(ALICE)
    second = await bot.broker.credentials(ALICE)  # redeems the refresh token the first call stored
    third = await bot.broker.credentials(ALICE)
    assert len({first.access_key_id, second.access_key_id, third.access_key_id}) == 3
    assert 800 < third.seconds_left() <= 900
    assert sandbox.idp.stats.refreshes["alice"] == 3 and sandbox.sts.stats.calls[ALICE_EMAIL] == 3


async def test_forget_drops_the_cached_credentials(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    first = await bot.broker.credentials(ALICE)
    await bot.broker.forget(ALICE)
    assert await bot.vault.load_credentials(ALICE) is None
    assert (await bot.broker.credentials(ALICE)).access_key_id != first.access_key_id
    assert sandbox.sts.stats.calls[ALICE_EMAIL] == 2


async def test_fifty_concurrent_calls_cost_one_refresh_and_one_sts_call(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.sts.faults.delay_seconds = 0.1  # a slow STS piles every caller up behind the first
    results = await asyncio.gather(*(bot.broker.credentials(ALICE) for _ in range(50)))
    assert {creds.access_key_id for creds in results} == {results[0].access_key_id}
    assert sandbox.idp.stats.refreshes["alice"] == 1
    assert sandbox.sts.stats.calls[ALICE_EMAIL] == 1
    assert await bot.redis.exists(LOCK_PREFIX + ALICE.key) == 0  # released


async def test_two_processes_racing_cost_one_refresh_and_one_sts_call(
    make_process: Callable[..., Process], sandbox: Sandbox
) -> None:
    one, two = make_process(), make_process()
    await link_user(sandbox, one.vault, ALICE, oidc=one.oidc)
    sandbox.sts.faults.delay_seconds = 0.1
    calls = [process.broker.credentials(ALICE) for _ in range(25) for process in (one, two)]
    results = await asyncio.gather(*calls)
    assert len({creds.access_key_id for creds in results}) == 1
    assert sandbox.idp.stats.refreshes["alice"] == 1
    assert sandbox.sts.stats.calls[ALICE_EMAIL] == 1
    assert one.count("sts_calls", "ok") + two.count("sts_calls", "ok") == 1


async def test_a_crashed_holders_lock_frees_itself(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    await bot.redis.set(LOCK_PREFIX + ALICE.key, "another-process", px=150)
    creds = await bot.broker.credentials(ALICE)
    assert creds.seconds_left() > 3000 and sandbox.sts.stats.calls[ALICE_EMAIL] == 1


async def test_waiting_for_a_stuck_holder_is_bounded(make_process: Callable[..., Process], sandbox: Sandbox) -> None:
    bot = make_process(lock_wait_seconds=0.15)
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    await bot.redis.set(LOCK_PREFIX + ALICE.key, "another-process", px=10_000)
    with pytest.raises(QUnavailable) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.user_message == (
        "Getting your AWS credentials is taking too long. Please try again in a minute."
    )
    assert await bot.redis.get(LOCK_PREFIX + ALICE.key) == b"another-process"  # not ours to release
    assert sandbox.idp.stats.refreshes["alice"] == 0


async def lock_attempts(redis: Redis) -> int:
    """SET commands Redis has served: the credential lock is taken with SET NX, and nothing else sets meanwhile."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


async def _more(count: Awaitable[int], *, than: int) -> bool:
    return await count > than


async def test_a_waiter_takes_the_holders_credentials_without_waiting_out_its_lock(
    make_process: Callable[..., Process], sandbox: Sandbox
) -> None:
    one, two = make_process(), make_process(lock_wait_seconds=60)
    await link_user(sandbox, one.vault, ALICE, oidc=one.oidc)
    minted = await one.broker.credentials(ALICE)
    await one.broker.forget(ALICE)
    await one.redis.set(LOCK_PREFIX + ALICE.key, "another-process", px=60_000)  # ... which is minting again
    attempts = await lock_attempts(one.redis)
    waiting = asyncio.create_task(two.broker.credentials(ALICE))
    await until(lambda: _more(lock_attempts(one.redis), than=attempts))  # the waiter found the lock taken
    assert not waiting.done()
    account = await one.vault.load(ALICE)
    assert account is not None
    assert await one.vault.store_credentials(ALICE, minted, generation=account.generation)  # the holder lands
    # a guard, not a timing claim: without noticing the cache it would wait out the lock's minute
    assert await asyncio.wait_for(waiting, 10) == minted
    assert await one.redis.get(LOCK_PREFIX + ALICE.key) == b"another-process"
    assert sandbox.sts.stats.calls[ALICE_EMAIL] == 1


async def test_revoked_sign_in_clears_the_link(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    await bot.broker.credentials(ALICE)
    await bot.broker.forget(ALICE)
    sandbox.idp.revoke_user("alice")
    with pytest.raises(LinkExpired) as caught:
        await bot.broker.credentials(ALICE)
    assert "qlink" in caught.value.user_message
    assert await bot.vault.load(ALICE) is None and await bot.vault.load_credentials(ALICE) is None
    assert bot.count("idp_refreshes", "expired") == 1
    with pytest.raises(NotLinked):
        await bot.broker.credentials(ALICE)


async def test_concurrent_callers_all_hear_link_expired(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.idp.revoke_user("alice")
    results = await asyncio.gather(*(bot.broker.credentials(ALICE) for _ in range(10)), return_exceptions=True)
    assert all(isinstance(result, LinkExpired) for result in results)
    assert bot.count("idp_refreshes", "expired") == 1


async def test_a_reused_refresh_token_clears_the_link(bot: Process, sandbox: Sandbox) -> None:
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    thief = oidc_client(sandbox)
    try:
        await thief.refresh(account.refresh_token)  # someone else redeemed the token the bot holds
    finally:
        await thief.aclose()
    with pytest.raises(LinkExpired):
        await bot.broker.credentials(ALICE)
    assert await bot.vault.load(ALICE) is None


async def test_missing_email_tag_keeps_the_link_and_the_rotated_token(bot: Process, sandbox: Sandbox) -> None:
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.idp.faults.omit_aws_tags = True
    with pytest.raises(EmailTagMissing):
        await bot.broker.credentials(ALICE)
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.refresh_token != account.refresh_token
    assert sandbox.sts.stats.calls[ALICE_EMAIL] == 0
    sandbox.idp.faults.omit_aws_tags = False  # the administrator fixes the IdP app: the link still works
    assert (await bot.broker.credentials(ALICE)).access_key_id.startswith("ASIA")


async def test_sts_refusal_is_a_clear_error(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.sts.faults.error_next = ["AccessDenied"]
    with pytest.raises(QUnavailable) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.user_message == (
        "AWS refused to issue credentials for your sign-in (AccessDenied). Please tell your administrator: the IAM "
        "role's trust policy or identity provider may be wrong."
    )
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", caught.value.request_id)
    assert bot.count("sts_calls", "refused") == 1
    assert await bot.vault.load(ALICE) is not None  # the link is fine; AWS's side is not


async def test_sts_throttling_is_retried(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.sts.faults.error_next = ["Throttling"]
    assert (await bot.broker.credentials(ALICE)).access_key_id.startswith("ASIA")
    assert sandbox.sts.stats.refusals["Throttling"] == 1 and sandbox.sts.stats.calls[ALICE_EMAIL] == 1


async def test_no_secret_reaches_our_logs_or_messages(
    bot: Process, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    creds = await bot.broker.credentials(ALICE)
    rotated = await bot.vault.load(ALICE)
    assert rotated is not None
    sandbox.idp.revoke_user("alice")
    await bot.broker.forget(ALICE)
    with pytest.raises(LinkExpired) as caught:
        await bot.broker.credentials(ALICE)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] == "bot")
    text = ours + str(caught.value) + caught.value.detail + caught.value.user_message
    for secret in (account.refresh_token, rotated.refresh_token, creds.secret_access_key, creds.session_token):
        assert secret not in text
    assert "rotated" in ours and "expired" in ours  # logged, with tokens as fingerprints


async def test_unlink_while_minting_caches_nothing(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.sts.faults.delay_seconds = 60  # STS holds the call: the unlink lands while credentials are minted
    try:
        flight = asyncio.create_task(bot.broker.credentials(ALICE))
        await until(lambda: sandbox.sts.stats.delayed == 1)
        assert await bot.vault.delete(ALICE) is not None  # what qunlink does
    finally:
        sandbox.sts.faults.delay_seconds = 0
    with pytest.raises(NotLinked):
        await flight
    assert await bot.redis.exists(Vault.credentials_key(ALICE)) == 0
    with pytest.raises(NotLinked):  # the next question is not answered as alice
        await bot.broker.credentials(ALICE)


async def test_relink_while_minting_answers_as_the_new_link(
    make_process: Callable[..., Process], sandbox: Sandbox
) -> None:
    bot, other_replica = make_process(), make_process()
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.sts.faults.delay_seconds = 60
    try:
        flight = asyncio.create_task(bot.broker.credentials(ALICE))
        await until(lambda: sandbox.sts.stats.delayed == 1)  # alice's credentials are being minted
        await link_user(sandbox, other_replica.vault, ALICE, "bob", oidc=other_replica.oidc)  # relinked as bob
    finally:
        sandbox.sts.faults.delay_seconds = 0
    creds = await flight
    assert issued_to(sandbox, creds.access_key_id)[0] == "bob@example.com"
    for replica in (bot, other_replica):
        cached = await replica.broker.credentials(ALICE)
        assert issued_to(sandbox, cached.access_key_id)[0] == "bob@example.com"


async def test_a_refreshed_token_whose_email_tag_changed_is_refused(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    # An IdP claim mapping from an editable attribute now tags alice's sign-in as bob.
    sandbox.idp.faults.id_token_claims = {
        "https://aws.amazon.com/tags": {"principal_tags": {"Email": ["bob@example.com"]}}
    }
    with pytest.raises(EmailTagMismatch) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.user_message == (
        "Your sign-in now gives AWS a different email address than the one you linked with, so I won't answer "
        "as it. Run qlink to link again; if this keeps happening, ask your administrator."
    )
    assert sum(sandbox.sts.stats.calls.values()) == 0
    assert await bot.redis.exists(Vault.credentials_key(ALICE)) == 0


async def test_a_refreshed_token_whose_email_differs_from_its_tag_is_refused(
    bot: Process, sandbox: Sandbox
) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.idp.faults.id_token_claims = {"email": "carol@example.com"}  # the tag still says alice
    with pytest.raises(EmailTagMismatch):
        await bot.broker.credentials(ALICE)
    assert sum(sandbox.sts.stats.calls.values()) == 0


# issue 17 table: bot/broker.py: the refreshed id_token's sub/iss no longer compared with the linked account
async def test_a_refreshed_token_naming_another_subject_is_refused(bot: Process, sandbox: Sandbox) -> None:
    """Same issuer, same email and Email tag, another `sub`: another account at the IdP, so not this link."""
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.idp.faults.id_token_claims = {"sub": sandbox.idp.subject("bob")}
    with pytest.raises(IdTokenInvalid) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.detail.startswith("sub/iss:")
    assert caught.value.user_message == "The sign-in service returned an identity we could not verify. Run qlink again."
    assert sum(sandbox.sts.stats.calls.values()) == 0
    assert await bot.redis.exists(Vault.credentials_key(ALICE)) == 0
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.subject == account.subject


async def test_an_idp_refusing_a_refresh_for_another_reason_keeps_the_link(bot: Process, sandbox: Sandbox) -> None:
    """Not invalid_grant: the IdP is unwell, not the sign-in dead. The link and its refresh token stay; the user
    reads the IdP's own error; the refresh is counted as an error, not as an expiry."""
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.idp.faults.refresh_error = "temporarily_unavailable"
    with pytest.raises(IdentityProviderError) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.user_message == (
        "The sign-in service refused to renew your sign-in "
        "(temporarily_unavailable: Refused by a sandbox fault switch.)."
    )
    assert bot.count("idp_refreshes", "error") == 1
    assert bot.count("idp_refreshes", "expired") == 0 and bot.count("idp_refreshes", "ok") == 0
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.refresh_token == account.refresh_token
    assert sum(sandbox.sts.stats.calls.values()) == 0


async def test_cached_credentials_are_served_without_taking_the_lock(bot: Process, sandbox: Sandbox) -> None:
    """The cache is read before the credential lock: a cached answer costs one read, no lock, no IdP, no STS."""
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    minted = await bot.broker.credentials(ALICE)
    attempts = await lock_attempts(bot.redis)
    assert await bot.broker.credentials(ALICE) == minted
    assert await lock_attempts(bot.redis) == attempts
    assert sandbox.idp.stats.refreshes["alice"] == 1 and sandbox.sts.stats.calls[ALICE_EMAIL] == 1


def test_role_session_names_fit_sts() -> None:
    assert role_session_name(ALICE, "alice@example.com") == "alice@example.com"
    assert role_session_name(ALICE, "o'brien+x y@example.com") == "o-brien+x-y@example.com"
    long_name = role_session_name(ALICE, "a" * 80 + "@example.com")
    assert len(long_name) == 64 and long_name != role_session_name(ChatIdentity("web", "", "b"), "a" * 80 + "@x.y")
    without_email = role_session_name(ALICE, None)
    assert re.fullmatch(r"qbot-[0-9a-f]{16}", without_email)
    assert role_session_name(ALICE, "x") == without_email
    # the bounds themselves: 64 and 2 characters are kept as they are, 65 is shortened to 64
    exactly_64 = "b" * 52 + "@example.com"
    assert role_session_name(ALICE, exactly_64) == exactly_64
    assert role_session_name(ALICE, "c" + exactly_64) == "c" + "b" * 50 + "-" + role_session_name(ALICE, None)[5:17]
    assert role_session_name(ALICE, "ab") == "ab"


# -- a refresh in flight while the link changes: the IdP holds the refresh (a slow token endpoint) -----------


async def _refresh_held_at_the_idp(sandbox: Sandbox, bot: Process) -> asyncio.Task[Any]:
    """Start alice's credentials flight and return once its refresh is waiting at the (slow) IdP."""
    sandbox.idp.faults.token_delay_seconds = 60
    flight = asyncio.create_task(bot.broker.credentials(ALICE))
    await until(lambda: sandbox.idp.stats.token_requests_delayed == 1)
    return flight


# issue 17 table: bot/broker.py: a failed refresh-token swap ignored (unlink/relink during a refresh)
async def test_a_relink_during_a_refresh_never_takes_the_old_links_tokens_to_sts(
    bot: Process, sandbox: Sandbox
) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    bobs_link, _ = await signed_in_account(sandbox, "bob")
    try:
        flight = await _refresh_held_at_the_idp(sandbox, bot)
        await bot.vault.store(ALICE, bobs_link)  # the relink lands while alice's refresh is at the IdP
    finally:
        sandbox.idp.faults.token_delay_seconds = 0
    creds = await flight
    assert issued_to(sandbox, creds.access_key_id)[0] == "bob@example.com"
    # alice's rotated refresh token could not replace bob's: her tokens went no further, not even to STS
    assert sandbox.sts.stats.calls[ALICE_EMAIL] == 0 and sandbox.sts.stats.calls["bob@example.com"] == 1
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.email == "bob@example.com"


# issue 17 table: bot/broker.py: a failed refresh-token swap ignored (unlink/relink during a refresh)
async def test_an_unlink_during_a_refresh_takes_nothing_to_sts(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    try:
        flight = await _refresh_held_at_the_idp(sandbox, bot)
        assert await bot.vault.delete(ALICE) is not None  # qunlink while the refresh is at the IdP
    finally:
        sandbox.idp.faults.token_delay_seconds = 0
    with pytest.raises(NotLinked):
        await flight
    assert sum(sandbox.sts.stats.calls.values()) == 0
    assert await bot.vault.load(ALICE) is None and await bot.redis.exists(Vault.credentials_key(ALICE)) == 0


# issue 17 table: bot/broker.py: the dead link always cleared
async def test_a_refused_refresh_keeps_the_link_made_meanwhile(bot: Process, sandbox: Sandbox) -> None:
    """alice's sign-in is revoked; while the bot's refresh is being refused, she links again (as bob here, to tell
    the links apart): the refusal clears only the dead link, never the new one."""
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    new_link, _ = await signed_in_account(sandbox, "bob")
    sandbox.idp.revoke_user("alice")
    try:
        flight = await _refresh_held_at_the_idp(sandbox, bot)
        await bot.vault.store(ALICE, new_link)
    finally:
        sandbox.idp.faults.token_delay_seconds = 0
    with pytest.raises(LinkExpired):
        await flight
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.refresh_token == new_link.refresh_token
    creds = await bot.broker.credentials(ALICE)  # and it answers
    assert issued_to(sandbox, creds.access_key_id)[0] == "bob@example.com"


async def test_a_link_that_keeps_changing_is_not_chased_past_a_second_mint(bot: Process, sandbox: Sandbox) -> None:
    """A relink during the refresh is minted once more, for the new link; a second relink during that mint ends
    the flight (bounded work per question): nothing is cached, and the next question mints for the newest link."""
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    bobs_link, _ = await signed_in_account(sandbox, "bob")
    carols_link, _ = await signed_in_account(sandbox, "carol")
    try:
        flight = await _refresh_held_at_the_idp(sandbox, bot)
        await bot.vault.store(ALICE, bobs_link)  # relinked while alice's refresh is at the IdP
        sandbox.sts.faults.delay_seconds = 60
        sandbox.idp.faults.token_delay_seconds = 0  # alice's refresh lands, is dropped; bob's link is minted
        await until(lambda: sandbox.sts.stats.delayed == 1)
        await bot.vault.store(ALICE, carols_link)  # relinked again while bob's credentials are minted
    finally:
        sandbox.idp.faults.token_delay_seconds = 0
        sandbox.sts.faults.delay_seconds = 0
    with pytest.raises(NotLinked):
        await flight
    assert await bot.redis.exists(Vault.credentials_key(ALICE)) == 0
    assert sandbox.sts.stats.calls["carol@example.com"] == 0
    creds = await bot.broker.credentials(ALICE)
    assert issued_to(sandbox, creds.access_key_id)[0] == "carol@example.com"


# -- AWS STS or the IdP failing: one clear message, and the link kept -----------------------------------------


async def test_sts_answering_5xx_says_try_again_and_keeps_the_link(bot: Process, sandbox: Sandbox) -> None:
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.sts.faults.outage = "ServiceUnavailable"
    with pytest.raises(QUnavailable) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.user_message == "AWS is not issuing credentials right now. Please try again in a minute."
    assert caught.value.request_id and bot.count("sts_calls", "error") == 1
    assert await bot.vault.load(ALICE) is not None and await bot.vault.load_credentials(ALICE) is None
    sandbox.sts.faults.outage = None  # STS is back: the same link answers
    assert issued_to(sandbox, (await bot.broker.credentials(ALICE)).access_key_id)[0] == ALICE_EMAIL


async def test_sts_unreachable_says_so_and_keeps_the_link(
    make_process: Callable[..., Process], sandbox: Sandbox, refused_url: str
) -> None:
    bot = make_process(sts_endpoint_url=refused_url)
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    with pytest.raises(QUnavailable) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.user_message == "AWS STS cannot be reached. Please try again in a minute."
    assert bot.count("sts_calls", "error") == 1
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.refresh_token != account.refresh_token  # the rotated token, kept
    assert await bot.vault.load_credentials(ALICE) is None


async def test_a_slow_idp_says_try_again_and_keeps_the_link(
    make_process: Callable[..., Process], sandbox: Sandbox
) -> None:
    bot = make_process(flight_timeout_seconds=0.2)
    account, _ = await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.idp.faults.token_delay_seconds = 60
    try:
        with pytest.raises(QUnavailable) as caught:
            await bot.broker.credentials(ALICE)
    finally:
        sandbox.idp.faults.token_delay_seconds = 0
    assert caught.value.user_message == (
        "Getting your AWS credentials is taking too long. Please try again in a minute."
    )
    assert sandbox.idp.stats.token_requests_delayed == 1 and sum(sandbox.sts.stats.calls.values()) == 0
    stored = await bot.vault.load(ALICE)
    assert stored is not None and stored.refresh_token == account.refresh_token
    assert await bot.redis.exists(LOCK_PREFIX + ALICE.key) == 0  # released for the next question


async def test_sts_throttling_every_retry_says_try_again(bot: Process, sandbox: Sandbox) -> None:
    """Throttling is a 400 at STS, yet transient: once botocore's retries are spent the user is told to retry,
    not to call the administrator."""
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    sandbox.sts.faults.outage = "Throttling"
    with pytest.raises(QUnavailable) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.user_message == "AWS is not issuing credentials right now. Please try again in a minute."
    assert bot.count("sts_calls", "error") == 1 and bot.count("sts_calls", "refused") == 0


@pytest.fixture
async def failing_proxy_url() -> AsyncIterator[str]:
    """A proxy in front of STS that answers every call with an HTTP 500 error page (no STS error code in it)."""

    async def error_page(request: web.Request) -> web.Response:
        return web.Response(status=500,
                            text="<html><body>Internal Server Error</body></html>",
                            content_type="text/html")

    sock = bind("127.0.0.1", 0)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", error_page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    yield url_of(sock)
    await runner.cleanup()


async def test_an_http_500_from_sts_says_try_again_whatever_its_code(
    make_process: Callable[..., Process], sandbox: Sandbox, failing_proxy_url: str
) -> None:
    """Any 5xx is AWS's side failing, even without a code we know: the user is told to try again."""
    bot = make_process(sts_endpoint_url=failing_proxy_url)
    await link_user(sandbox, bot.vault, ALICE, oidc=bot.oidc)
    with pytest.raises(QUnavailable) as caught:
        await bot.broker.credentials(ALICE)
    assert caught.value.user_message == "AWS is not issuing credentials right now. Please try again in a minute."
    assert bot.count("sts_calls", "error") == 1 and bot.count("sts_calls", "refused") == 0
    assert await bot.vault.load(ALICE) is not None and await bot.vault.load_credentials(ALICE) is None
