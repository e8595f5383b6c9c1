"""One-time link tokens and OIDC login state against a real Redis: single use, atomic, hashed, sealed."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from redis.asyncio import Redis

from bot.cipher import TokenCipher
from bot.errors import LinkTokenInvalid, LoginStateInvalid
from bot.links import LinkTokens, LoginStates, PendingLink
from bot.model import ChatIdentity
from tests.conftest import expire_now

ALICE = ChatIdentity("teams", "tenant-1", "29:alice")
CIPHER = TokenCipher.ephemeral()


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
    links = LinkTokens(redis, 600, CIPHER)
    token = await links.create(pending())
    assert len(token) == 43  # secrets.token_urlsafe(32): 256 bits
    assert await links.consume(token) == pending()


async def test_link_token_keeps_optional_fields_empty(redis: Redis) -> None:
    links = LinkTokens(redis, 600, CIPHER)
    plain = PendingLink(ChatIdentity("slack", "", "U:1/é"))
    assert await links.consume(await links.create(plain)) == plain
    ending = pending(expires_in=3600)
    assert await links.consume(await links.create(ending)) == ending


async def test_redis_never_holds_the_usable_token(redis: Redis) -> None:
    links = LinkTokens(redis, 600, CIPHER)
    token = await links.create(pending())
    stored = await all_keys_and_values(redis)
    assert stored[0] == f"qbot:link:{hashlib.sha256(token.encode()).hexdigest()}".encode()
    for blob in stored:  # neither the token nor whom it links is readable in Redis
        for secret in (token, "29:alice", "alice@corp"):
            assert secret.encode() not in blob
    assert 595 <= await redis.ttl(stored[0]) <= 600


async def test_link_token_is_single_use(redis: Redis) -> None:
    links = LinkTokens(redis, 600, CIPHER)
    token = await links.create(pending())
    await links.consume(token)
    with pytest.raises(LinkTokenInvalid):
        await links.consume(token)
    assert await redis.dbsize() == 0


async def test_concurrent_consumers_exactly_one_wins(redis: Redis) -> None:
    links = LinkTokens(redis, 600, CIPHER)
    token = await links.create(pending())
    results = await asyncio.gather(*(links.consume(token) for _ in range(20)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, PendingLink)]
    assert winners == [pending()]
    assert sum(isinstance(r, LinkTokenInvalid) for r in results) == 19


async def test_expired_link_token_is_refused(redis: Redis) -> None:
    links = LinkTokens(redis, 600, CIPHER)
    token = await links.create(pending())
    await expire_now(redis, LinkTokens.key_for(token))
    with pytest.raises(LinkTokenInvalid):
        await links.consume(token)


async def test_tampered_link_token_is_refused_and_the_real_one_survives(redis: Redis) -> None:
    links = LinkTokens(redis, 600, CIPHER)
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
        await LinkTokens(redis, 600, CIPHER).consume(token)  # type: ignore[arg-type]
    assert "qlink" in caught.value.user_message


async def test_unreadable_record_is_refused(redis: Redis) -> None:
    links = LinkTokens(redis, 600, CIPHER)
    token = await links.create(pending())
    await redis.set(LinkTokens.key_for(token), b"{not json")
    with pytest.raises(LinkTokenInvalid):
        await links.consume(token)


async def test_a_hand_written_link_record_binds_nothing(redis: Redis) -> None:
    """Anyone who can write to Redis could mint a link for any chat identity if records were plaintext."""
    links = LinkTokens(redis, 600, CIPHER)
    token = "h" * 43
    plaintext = json.dumps({"p": "teams", "n": "tenant-1", "u": "29:alice", "e": None, "r": None, "t": 1.0})
    await redis.set(LinkTokens.key_for(token), plaintext)
    with pytest.raises(LinkTokenInvalid):
        await links.consume(token)
    # Nor does a genuine record moved under another token's key, or one sealed under another key.
    victim = await links.create(pending())
    await redis.set(LinkTokens.key_for(token), await raw(redis, LinkTokens.key_for(victim)))
    with pytest.raises(LinkTokenInvalid):
        await links.consume(token)
    foreign = await LinkTokens(redis, 600, TokenCipher.ephemeral()).create(pending())
    with pytest.raises(LinkTokenInvalid):
        await links.consume(foreign)
    assert await links.consume(victim) == pending()


async def test_older_unused_links_stay_valid(redis: Redis) -> None:
    links = LinkTokens(redis, 600, CIPHER)
    first = await links.create(pending(return_to=None))
    second = await links.create(pending())
    assert first != second
    assert await links.consume(first) == pending(return_to=None)
    assert await links.consume(second) == pending()


# -- login state: sealed into the browser's cookie, only "spent" is remembered ------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_login_state_round_trip_stores_nothing(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral(), ttl_seconds=300)
    state, sealed = states.seal(pending(expires_in=3600), nonce="n-123", code_verifier="verifier-SECRET-xyz")
    assert len(state) == 43  # 256 bits
    login = states.open(state, sealed)
    assert login.pending == pending(expires_in=3600)
    assert (login.nonce, login.code_verifier) == ("n-123", "verifier-SECRET-xyz")
    assert "verifier-SECRET-xyz" not in repr(login)
    assert await redis.dbsize() == 0


async def test_sealed_login_state_hides_its_secrets(redis: Redis) -> None:
    state, sealed = LoginStates(redis, TokenCipher.ephemeral()).seal(pending(), "n-123", "verifier-SECRET-xyz")
    for secret in (state, "verifier-SECRET-xyz", "alice@corp", "n-123", "29:alice"):
        assert secret not in sealed
    assert len(sealed) < 2048  # a cookie, with room to spare


async def test_login_state_opens_only_for_its_own_state(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral())
    victim_state, victim_cookie = states.seal(pending(), "n-victim", "v-victim")
    attacker_state, _ = states.seal(pending(identity=ChatIdentity("teams", "tenant-1", "29:mallory")), "n", "v")
    with pytest.raises(LoginStateInvalid):
        states.open(attacker_state, victim_cookie)
    assert states.open(victim_state, victim_cookie).nonce == "n-victim"


async def test_tampered_login_state_is_refused(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral())
    state, sealed = states.seal(pending(), nonce="n", code_verifier="v")
    for forged in (sealed[:60] + ("A" if sealed[60] != "A" else "B") + sealed[61:], sealed[:-8], "", "x" * 5000,
                   "not a cookie; at all"):
        with pytest.raises(LoginStateInvalid):
            states.open(state, forged)


async def test_expired_login_state_is_refused(redis: Redis) -> None:
    clock = Clock()
    states = LoginStates(redis, TokenCipher.ephemeral(), ttl_seconds=600, clock=clock)
    state, sealed = states.seal(pending(), nonce="n", code_verifier="v")
    clock.now += 599
    assert states.open(state, sealed).nonce == "n"
    clock.now += 1
    with pytest.raises(LoginStateInvalid):
        states.open(state, sealed)


async def test_login_state_under_a_rotated_away_key_is_refused(redis: Redis) -> None:
    state, sealed = LoginStates(redis, TokenCipher.ephemeral()).seal(pending(), nonce="n", code_verifier="v")
    with pytest.raises(LoginStateInvalid):
        LoginStates(redis, TokenCipher.ephemeral()).open(state, sealed)


@pytest.mark.parametrize("state", ["", "nope", "x" * 300, "state with spaces and enough length to pass"])
async def test_malformed_state_is_refused(redis: Redis, state: str) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral())
    _, sealed = states.seal(pending(), nonce="n", code_verifier="v")
    with pytest.raises(LoginStateInvalid):
        states.open(state, sealed)


async def test_a_login_state_is_spent_once_and_the_mark_expires_with_it(redis: Redis) -> None:
    clock = Clock()
    states = LoginStates(redis, TokenCipher.ephemeral(), ttl_seconds=300, clock=clock)
    state, sealed = states.seal(pending(), nonce="n", code_verifier="v")
    clock.now += 100
    login = states.open(state, sealed)
    await states.spend(state, login)
    with pytest.raises(LoginStateInvalid):
        await states.spend(state, login)
    assert await redis.keys() == [LoginStates.key_for(state).encode()]
    assert 195_000 <= await redis.pttl(LoginStates.key_for(state)) <= 200_000


async def test_concurrent_spenders_exactly_one_wins(redis: Redis) -> None:
    states = LoginStates(redis, TokenCipher.ephemeral())
    state, sealed = states.seal(pending(), nonce="n", code_verifier="v")
    login = states.open(state, sealed)
    results = await asyncio.gather(*(states.spend(state, login) for _ in range(20)), return_exceptions=True)
    assert results.count(None) == 1
    assert sum(isinstance(r, LoginStateInvalid) for r in results) == 19


async def test_lifetimes_under_a_second_are_refused(redis: Redis) -> None:
    for make in (lambda ttl: LinkTokens(redis, ttl, CIPHER), lambda ttl: LoginStates(redis, CIPHER, ttl)):
        with pytest.raises(ValueError):
            make(0)
        make(1)  # the shortest allowed
    token = await LinkTokens(redis, 1, CIPHER).create(pending())
    assert 0 < await redis.pttl(LinkTokens.key_for(token)) <= 1000
    assert LoginStates(redis, CIPHER, 1).ttl_seconds == 1
    assert LoginStates(redis, CIPHER).ttl_seconds == 600  # ten minutes to sign in, unless configured


async def test_a_saml_login_state_keeps_its_request_id_and_an_oidc_one_has_none(redis: Redis) -> None:
    states = LoginStates(redis, CIPHER)
    state, sealed = states.seal(pending(), "n", "v", saml_request_id="_a1b2c3")
    assert states.open(state, sealed).saml_request_id == "_a1b2c3"
    state, sealed = states.seal(pending(), "n", "v")
    assert states.open(state, sealed).saml_request_id == ""


async def test_a_login_cookie_that_is_not_text_is_refused(redis: Redis) -> None:
    states = LoginStates(redis, CIPHER)
    state, sealed = states.seal(pending(), "n", "v")
    for not_text in (None, sealed.encode(), 42):
        with pytest.raises(LoginStateInvalid):
            states.open(state, not_text)  # type: ignore[arg-type]


async def test_a_state_spent_at_its_last_moment_stays_spent_for_a_second(redis: Redis) -> None:
    clock = Clock()
    states = LoginStates(redis, CIPHER, ttl_seconds=300, clock=clock)
    state, sealed = states.seal(pending(), nonce="n", code_verifier="v")
    clock.now += 299.8
    await states.spend(state, states.open(state, sealed))
    assert 900 <= await redis.pttl(LoginStates.key_for(state)) <= 1000
