"""Vault against a real Redis: sealed accounts and credentials, rotation, unlink, nothing in plaintext."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from bot.cipher import TokenCipher
from bot.model import AwsCredentials, ChatIdentity
from bot.vault import LinkedAccount, Vault
from tests.conftest import expire_now

ALICE = ChatIdentity("slack", "T1", "U-alice")
BOB = ChatIdentity("slack", "T1", "U-bob")
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def account(token: str = "rt-alice-0001", email: str = "alice@corp.example") -> LinkedAccount:
    return LinkedAccount(
        refresh_token=token,
        email=email,
        subject="sub-alice",
        issuer="http://127.0.0.1:3979",
        linked_at=1_700_000_000.5,
        groups=("core-team", "everyone"),
    )


def credentials(minutes: float = 60, secret: str = "SECRETKEY-alice") -> AwsCredentials:
    return AwsCredentials(
        access_key_id="ASIAALICE",
        secret_access_key=secret,
        session_token="SESSIONTOKEN-alice",
        expiration=(datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0),
    )


def unstamped(account: LinkedAccount | None) -> LinkedAccount | None:
    """The account as it was handed to `store`, without the generation `store` gave it."""
    return None if account is None else replace(account, generation="")


async def cache(vault: Vault, identity: ChatIdentity, creds: AwsCredentials) -> bool:
    """Cache credentials as the broker does: for the identity's current link generation."""
    account = await vault.load(identity)
    return await vault.store_credentials(identity, creds, generation=account.generation if account else "")


async def raw(redis: Redis, key: str) -> bytes:
    value = await redis.get(key)
    assert isinstance(value, bytes)
    return value


async def everything_in(redis: Redis) -> list[bytes]:
    """Every key and every value in the database, whatever its type."""
    seen: list[bytes] = []
    async for key in redis.scan_iter():
        seen.append(key)
        kind = await redis.type(key)
        if kind == b"string":
            seen.append(await raw(redis, key))
        elif kind == b"hash":
            for field, value in (await redis.hgetall(key)).items():
                assert isinstance(field, bytes) and isinstance(value, bytes)
                seen += [field, value]
        else:
            raise AssertionError(f"unexpected {kind!r} {key!r}")
    return seen


async def test_store_and_load_round_trip(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    assert await vault.load(ALICE) is None
    await vault.store(ALICE, account())
    assert unstamped(await vault.load(ALICE)) == account()
    assert await vault.load(BOB) is None
    assert await redis.ttl(Vault.account_key(ALICE)) == -1  # a link does not expire by itself


async def test_redis_holds_no_plaintext_secret(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account("rt-PLAINTEXT-refresh"))
    await vault.replace_refresh_token(ALICE, "rt-PLAINTEXT-rotated")
    await cache(vault, ALICE, credentials(secret="SECRET-PLAINTEXT-key"))
    stored = await everything_in(redis)
    assert len(stored) == 6  # three keys (account, generation, credentials), three values
    for blob in stored:
        for secret in (b"rt-PLAINTEXT", b"SECRET-PLAINTEXT-key", b"SESSIONTOKEN-alice", b"alice@corp"):
            assert secret not in blob


async def test_key_rotation_reads_old_entries(redis: Redis) -> None:
    await Vault(redis, TokenCipher([KEY_A])).store(ALICE, account())
    await cache(Vault(redis, TokenCipher([KEY_A])), ALICE, credentials())
    rotated = Vault(redis, TokenCipher([KEY_B, KEY_A]))  # QBOT_TOKEN_KEYS="B,A"
    assert unstamped(await rotated.load(ALICE)) == account()
    assert await rotated.load_credentials(ALICE) == credentials()
    # the next write is under B, which a deployment still on A alone cannot read
    assert await rotated.replace_refresh_token(ALICE, "rt-alice-0002")
    assert unstamped(await Vault(redis, TokenCipher([KEY_B])).load(ALICE)) == account("rt-alice-0002")


async def test_undecryptable_entry_reads_as_not_linked(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await Vault(redis, TokenCipher([KEY_A])).store(ALICE, account("rt-must-not-be-logged"))
    dropped = Vault(redis, TokenCipher([KEY_B]))  # key A removed from QBOT_TOKEN_KEYS
    with caplog.at_level(logging.WARNING, logger="bot.vault"):
        assert await dropped.load(ALICE) is None
    assert ALICE.key in caplog.text
    assert "rt-must-not-be-logged" not in caplog.text
    assert not await dropped.replace_refresh_token(ALICE, "rt-new")  # nothing to update
    await dropped.store(ALICE, account("rt-relinked"))  # relinking repairs it
    assert unstamped(await dropped.load(ALICE)) == account("rt-relinked")


async def test_blob_copied_to_another_identity_does_not_open(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    await cache(vault, ALICE, credentials())
    await redis.set(Vault.account_key(BOB), await raw(redis, Vault.account_key(ALICE)))
    await redis.set(Vault.credentials_key(BOB), await raw(redis, Vault.credentials_key(ALICE)))
    assert await vault.load(BOB) is None
    assert await vault.load_credentials(BOB) is None


async def test_replace_refresh_token_keeps_the_rest(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    assert not await vault.replace_refresh_token(ALICE, "rt-x")  # never creates a link
    assert await vault.load(ALICE) is None
    await vault.store(ALICE, account("rt-1"))
    assert await vault.replace_refresh_token(ALICE, "rt-2")
    assert unstamped(await vault.load(ALICE)) == account("rt-2")
    assert not await vault.replace_refresh_token(ALICE, "rt-3", previous="rt-1")  # stale: refused
    assert await vault.replace_refresh_token(ALICE, "rt-3", previous="rt-2")
    assert unstamped(await vault.load(ALICE)) == account("rt-3")


async def test_concurrent_compare_and_swap_has_one_winner(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account("rt-old"))
    results = await asyncio.gather(
        *(vault.replace_refresh_token(ALICE, f"rt-new-{i}", previous="rt-old") for i in range(10))
    )
    assert sum(results) == 1
    winner = results.index(True)
    assert unstamped(await vault.load(ALICE)) == account(f"rt-new-{winner}")


async def test_replace_does_not_resurrect_a_deleted_link(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account("rt-1"))
    await vault.delete(ALICE)
    assert not await vault.replace_refresh_token(ALICE, "rt-2", previous="rt-1")
    assert await redis.exists(Vault.account_key(ALICE)) == 0


async def test_delete_returns_the_account_and_drops_credentials(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    await vault.store(BOB, account("rt-bob", "bob@corp.example"))
    await cache(vault, ALICE, credentials())
    assert unstamped(await vault.delete(ALICE)) == account()
    assert await vault.load(ALICE) is None
    assert await vault.load_credentials(ALICE) is None
    assert await vault.delete(ALICE) is None
    assert unstamped(await vault.load(BOB)) == account("rt-bob", "bob@corp.example")
    # nothing of Alice's link stays behind in Redis, not even sealed: not its generation, not its credentials
    assert sorted(await redis.keys()) == sorted([Vault.account_key(BOB).encode(), Vault.generation_key(BOB).encode()])


async def transactions(redis: Redis) -> int:
    """MULTI/EXEC blocks the server has run so far."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_exec", {}).get("calls", 0))


async def test_linking_extending_and_unlinking_are_each_one_transaction(redis: Redis) -> None:
    """Each writes several keys (account, generation, credentials) that must change together: another
    client never sees a link without its generation, or credentials outliving their unlink."""
    vault = Vault(redis, TokenCipher([KEY_A]))
    for step in (vault.store(ALICE, account()), vault.touch(ALICE, 600), vault.delete(ALICE)):
        before = await transactions(redis)
        await step
        assert await transactions(redis) == before + 1


async def test_delete_of_undecryptable_entry_still_removes_it(redis: Redis) -> None:
    await Vault(redis, TokenCipher([KEY_A])).store(ALICE, account())
    assert await Vault(redis, TokenCipher([KEY_B])).delete(ALICE) is None
    assert await redis.exists(Vault.account_key(ALICE)) == 0


async def test_relink_drops_credentials_of_the_previous_login(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    await cache(vault, ALICE, credentials())
    await vault.store(ALICE, account("rt-other", "someone-else@corp.example"))
    assert await vault.load_credentials(ALICE) is None


async def test_credentials_round_trip_and_expire_with_them(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    assert await vault.load_credentials(ALICE) is None
    creds = credentials(minutes=60)
    await cache(vault, ALICE, creds)
    loaded = await vault.load_credentials(ALICE)
    assert loaded == creds
    assert loaded is not None and loaded.expiration.tzinfo is not None
    ttl_ms = await redis.pttl(Vault.credentials_key(ALICE))
    assert 3_590_000 < ttl_ms <= 3_600_000
    await vault.delete_credentials(ALICE)
    assert await vault.load_credentials(ALICE) is None
    assert await vault.load(ALICE) is not None  # forgetting credentials keeps the link


async def test_credentials_expire_in_redis(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    soon = AwsCredentials("ASIA", "s", "t", datetime.now(UTC) + timedelta(milliseconds=800))
    await cache(vault, ALICE, soon)
    assert await vault.load_credentials(ALICE) == soon
    assert 0 < await redis.pttl(Vault.credentials_key(ALICE)) <= 800  # Redis drops them when they expire
    await expire_now(redis, Vault.credentials_key(ALICE))
    assert await vault.load_credentials(ALICE) is None
    assert await redis.exists(Vault.credentials_key(ALICE)) == 0


async def test_expired_credentials_are_not_stored(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    await cache(vault, ALICE, credentials(minutes=60))
    assert await cache(vault, ALICE, credentials(minutes=-1)) is False
    assert await vault.load_credentials(ALICE) is None
    assert await redis.exists(Vault.credentials_key(ALICE)) == 0


async def test_naive_expiration_is_refused(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    naive = AwsCredentials("ASIA", "s", "t", datetime.now() + timedelta(hours=1))
    with pytest.raises(ValueError):
        await cache(vault, ALICE, naive)


async def test_works_with_decoded_responses(redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        vault = Vault(client, TokenCipher([KEY_A]))
        await vault.store(ALICE, account())
        await cache(vault, ALICE, credentials())
        assert unstamped(await vault.load(ALICE)) == account()
        assert await vault.load_credentials(ALICE) == credentials()
        assert await vault.replace_refresh_token(ALICE, "rt-2", previous="rt-alice-0001")
        assert unstamped(await vault.delete(ALICE)) == account("rt-2")
    finally:
        await client.aclose()


def test_repr_shows_no_secret() -> None:
    text = repr(account("rt-in-repr")) + repr(credentials(secret="SECRET-in-repr"))
    assert "rt-in-repr" not in text and "SECRET-in-repr" not in text and "SESSIONTOKEN" not in text


# -- link generations: credentials belong to the link they were minted from ----------------------------


async def test_credentials_are_not_cached_for_a_link_that_is_gone(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    assert not await vault.store_credentials(ALICE, credentials(), generation="")  # no link: nothing cached
    await vault.store(ALICE, account())
    minted_from = await vault.load(ALICE)
    assert minted_from is not None and len(minted_from.generation) == 32
    await vault.delete(ALICE)  # qunlink lands while STS is minting
    assert not await vault.store_credentials(ALICE, credentials(), generation=minted_from.generation)
    assert await redis.exists(Vault.credentials_key(ALICE)) == 0


async def test_credentials_of_a_replaced_link_are_neither_cached_nor_used(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    alice_link = await vault.load(ALICE)
    assert alice_link is not None
    await vault.store(ALICE, account("rt-bob", "bob@corp.example"))  # relinked as bob meanwhile
    bob_link = await vault.load(ALICE)
    assert bob_link is not None and bob_link.generation != alice_link.generation
    assert not await vault.store_credentials(ALICE, credentials(), generation=alice_link.generation)
    assert await vault.store_credentials(ALICE, credentials(secret="bob"), generation=bob_link.generation)
    assert await vault.load_credentials(ALICE) == credentials(secret="bob")


async def test_cached_credentials_are_used_only_while_their_generation_is_current(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    assert await cache(vault, ALICE, credentials())
    # Another replica relinks with a generation change that does not (or not yet) drop the cached entry.
    await redis.set(Vault.generation_key(ALICE), "another-link")
    assert await vault.load_credentials(ALICE) is None


async def test_store_returns_the_replaced_account(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    assert await vault.store(ALICE, account("rt-first")) is None
    assert unstamped(await vault.store(ALICE, account("rt-second"))) == account("rt-first")


async def test_a_link_with_a_lifetime_expires_with_its_generation(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account(), ttl_seconds=600)
    assert 590 < await redis.ttl(Vault.account_key(ALICE)) <= 600
    assert 590 < await redis.ttl(Vault.generation_key(ALICE)) <= 600
    assert await vault.touch(ALICE, 60)
    assert 50 < await redis.ttl(Vault.account_key(ALICE)) <= 60
    assert 50 < await redis.ttl(Vault.generation_key(ALICE)) <= 60
    assert not await vault.touch(BOB, 60)
    assert await redis.exists(Vault.generation_key(BOB)) == 0


async def test_a_link_from_before_generations_still_caches_and_uses_credentials(redis: Redis) -> None:
    """Such a link has no generation key; it reads as the empty generation its credentials are minted for."""
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    await redis.delete(Vault.generation_key(ALICE))
    assert await vault.store_credentials(ALICE, credentials(), generation="")
    assert await vault.load_credentials(ALICE) == credentials()
    assert not await vault.store_credentials(ALICE, credentials(), generation="some-link")


async def test_a_rotated_refresh_token_keeps_the_links_lifetime(redis: Redis) -> None:
    """A web console link ends with its session even when the IdP rotates its refresh token meanwhile."""
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account("rt-1"), ttl_seconds=600)
    assert await vault.replace_refresh_token(ALICE, "rt-2", previous="rt-1")
    loaded = await vault.load(ALICE)
    assert loaded is not None and loaded.refresh_token == "rt-2"
    assert 590 < await redis.ttl(Vault.account_key(ALICE)) <= 600


async def test_an_entry_from_before_groups_and_generations_still_opens(redis: Redis) -> None:
    """Entries written by older releases lack "g" and "n": they read as no groups and the empty generation,
    not as unreadable (which would make the user link again)."""
    cipher = TokenCipher([KEY_A])
    key = Vault.account_key(ALICE)
    old = {"r": "rt-alice-0001", "e": "alice@corp.example", "s": "sub-alice", "i": "http://127.0.0.1:3979", "t": 1.5}
    await redis.set(key, cipher.seal(key, old))
    loaded = await Vault(redis, cipher).load(ALICE)
    assert loaded == LinkedAccount("rt-alice-0001", "alice@corp.example", "sub-alice", "http://127.0.0.1:3979",
                                   linked_at=1.5, groups=(), generation="")


async def test_exists_tells_linked_from_unlinked(redis: Redis) -> None:
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account())
    assert await vault.exists(ALICE) is True
    assert await vault.exists(BOB) is False
    await vault.delete(ALICE)
    assert await vault.exists(ALICE) is False


async def test_concurrent_unconditional_replacements_all_land_by_retrying(redis: Redis) -> None:
    """Without `previous`, a write that lost the WATCH race reads again and writes: none is dropped."""
    vault = Vault(redis, TokenCipher([KEY_A]))
    await vault.store(ALICE, account("rt-old"))
    results = await asyncio.gather(*(vault.replace_refresh_token(ALICE, f"rt-new-{i}") for i in range(10)))
    assert results == [True] * 10
    loaded = await vault.load(ALICE)
    assert loaded is not None and loaded.refresh_token in {f"rt-new-{i}" for i in range(10)}


async def test_credentials_past_their_expiry_are_not_used_even_if_redis_still_holds_them(redis: Redis) -> None:
    """Redis expires the entry with the credentials, but a clock that disagrees must not hand out dead ones."""
    cipher = TokenCipher([KEY_A])
    vault = Vault(redis, cipher)
    await vault.store(ALICE, account())
    linked = await vault.load(ALICE)
    assert linked is not None
    key = Vault.credentials_key(ALICE)
    expired = credentials(minutes=-1)
    payload = {"a": expired.access_key_id, "s": expired.secret_access_key, "t": expired.session_token,
               "x": expired.expiration.timestamp(), "g": linked.generation}
    await redis.set(key, cipher.seal(key, payload), ex=3600)
    assert await vault.load_credentials(ALICE) is None
