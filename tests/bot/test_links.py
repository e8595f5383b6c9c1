"""One-time link tokens and OIDC login state against a real Redis: single use, atomic, hashed, sealed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.cipher import TokenCipher
from bot.errors import LinkTokenInvalid, LoginStateInvalid
from bot.links import LinkTokens, LoginState, LoginStates, PendingLink
from bot.model import ChatIdentity

ALICE = ChatIdentity("teams", "tenant-1", "29:alice")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def pending(**changes: object) -> PendingLink:
    values: dict[str, object] = {
        "identity": ALICE,
        "profile_email": "alice@corp.example",
        "return_to": "/?thread=1",
        "created_at": 1_700_000_000.25,
    }
    values.update(changes)
    return PendingLink(**values)  # type: ignore[arg-type]


async def raw(redis: Redis, key: str | bytes) -> bytes:
    value = await redis.get(key)
    assert isinstance(value, bytes)
    return value


async def all_keys_and_values(redis: Redis) -> list[bytes]:
    seen: list[bytes] = []
    async for key in redis.scan_iter():
        seen += [key, await raw(redis, key)]
    return seen


# -- link tokens -----------------------------------------------------------------------------------------


async def test_link_token_round_trip(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    token = await links.create(pending())
    assert len(token) >= 43  # secrets.token_urlsafe(32): 256 bits
    assert await links.consume(token) == pending()


async def test_link_token_keeps_optional_fields_empty(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    plain = PendingLink(ChatIdentity("slack", "", "U:1/é"))
    assert await links.consume(await links.create(plain)) == plain


async def test_redis_never_holds_the_usable_token(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    token = await links.create(pending())
    stored = await all_keys_and_values(redis)
    assert stored[0] == f"qbot:link:{hashlib.sha256(token.encode()).hexdigest()}".encode()
    assert all(token.encode() not in blob for blob in stored)
    assert 595 <= await redis.ttl(stored[0]) <= 600


async def test_link_token_is_single_use(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    token = await links.create(pending())
    await links.consume(token)
    with pytest.raises(LinkTokenInvalid):
        await links.consume(token)
    assert await redis.dbsize() == 0


async def test_concurrent_consumers_exactly_one_wins(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    token = await links.create(pending())
    results = await asyncio.gather(*(links.consume(token) for _ in range(20)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, PendingLink)]
    assert winners == [pending()]
    assert sum(isinstance(r, LinkTokenInvalid) for r in results) == 19


async def test_expired_link_token_is_refused(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    token = await links.create(pending())
    await redis.pexpire(LinkTokens.key_for(token), 20)
    await asyncio.sleep(0.1)
    with pytest.raises(LinkTokenInvalid):
        await links.consume(token)


async def test_tampered_link_token_is_refused_and_the_real_one_survives(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    token = await links.create(pending())
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(LinkTokenInvalid):
        await links.consume(forged)
    assert await links.consume(token) == pending()


@pytest.mark.parametrize(
    "token", ["", "short", "x" * 500, "../../etc/passwd-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a b" * 20, None, 42]
)
async def test_malformed_link_token_is_refused(redis: Redis, token: object) -> None:
    with pytest.raises(LinkTokenInvalid) as caught:
        await LinkTokens(redis, ttl_seconds=600).consume(token)  # type: ignore[arg-type]
    assert "qlink" in caught.value.user_message


async def test_unreadable_record_is_refused(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    token = await links.create(pending())
    await redis.set(LinkTokens.key_for(token), b"{not json")
    with pytest.raises(LinkTokenInvalid):
        await links.consume(token)


async def test_older_unused_links_stay_valid(redis: Redis) -> None:
    links = LinkTokens(redis, ttl_seconds=600)
    first = await links.create(pending(return_to=None))
    second = await links.create(pending())
    assert first != second
    assert await links.consume(first) == pending(return_to=None)
    assert await links.consume(second) == pending()


# -- login state -----------------------------------------------------------------------------------------


async def test_login_state_round_trip(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral(), ttl_seconds=300)
    state = await states.create(pending(), nonce="n-123", code_verifier="verifier-SECRET-xyz")
    assert len(state) >= 43
    assert await states.consume(state) == LoginState(pending(), "n-123", "verifier-SECRET-xyz")
    assert "verifier-SECRET-xyz" not in repr(LoginState(pending(), "n", "verifier-SECRET-xyz"))


async def test_login_state_is_sealed_hashed_and_expiring(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral(), ttl_seconds=300)
    state = await states.create(pending(), nonce="n-123", code_verifier="verifier-SECRET-xyz")
    stored = await all_keys_and_values(redis)
    assert stored[0] == LoginStates.key_for(state).encode()
    for blob in stored:
        for secret in (state, "verifier-SECRET-xyz", "alice@corp", "n-123"):
            assert secret.encode() not in blob
    assert 295 <= await redis.ttl(stored[0]) <= 300


async def test_login_state_replay_is_refused(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral())
    state = await states.create(pending(), nonce="n", code_verifier="v")
    await states.consume(state)
    with pytest.raises(LoginStateInvalid):
        await states.consume(state)


async def test_concurrent_state_consumers_exactly_one_wins(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral())
    state = await states.create(pending(), nonce="n", code_verifier="v")
    results = await asyncio.gather(*(states.consume(state) for _ in range(20)), return_exceptions=True)
    assert sum(isinstance(r, LoginState) for r in results) == 1
    assert sum(isinstance(r, LoginStateInvalid) for r in results) == 19


@pytest.mark.parametrize("state", ["", "nope", "x" * 300, "state with spaces and enough length to pass"])
async def test_malformed_or_unknown_state_is_refused(redis: Redis, state: str) -> None:
    with pytest.raises(LoginStateInvalid):
        await LoginStates(redis, TokenCipher.ephemeral()).consume(state)


async def test_tampered_state_value_is_refused(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral())
    state = await states.create(pending(), nonce="n", code_verifier="v")
    key = LoginStates.key_for(state)
    blob = bytearray(await raw(redis, key))
    blob[60] = ord("A") if blob[60] != ord("A") else ord("B")
    await redis.set(key, bytes(blob))
    with pytest.raises(LoginStateInvalid):
        await states.consume(state)


async def test_state_value_moved_to_another_state_is_refused(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral())
    victim = await states.create(pending(), nonce="n-victim", code_verifier="v-victim")
    attacker = await states.create(pending(identity=ChatIdentity("teams", "tenant-1", "29:mallory")), "n", "v")
    await redis.set(LoginStates.key_for(attacker), await raw(redis, LoginStates.key_for(victim)))
    with pytest.raises(LoginStateInvalid):
        await states.consume(attacker)


async def test_expired_state_is_refused(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral(), ttl_seconds=1)
    state = await states.create(pending(), nonce="n", code_verifier="v")
    await redis.pexpire(LoginStates.key_for(state), 20)
    await asyncio.sleep(0.1)
    with pytest.raises(LoginStateInvalid):
        await states.consume(state)


async def test_state_under_a_rotated_away_key_is_refused(redis: Redis) -> None:
    state = await LoginStates(redis, TokenCipher.ephemeral()).create(pending(), nonce="n", code_verifier="v")
    with pytest.raises(LoginStateInvalid):
        await LoginStates(redis, TokenCipher.ephemeral()).consume(state)
