"""`qbot admin rekey`: every value the bot seals in Redis, written by the bot's own stores under the old key, is
readable by stores that know only the new key afterwards; nothing else changes, and a second run writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from bot.adapter_memory import AdapterMemory
from bot.cipher import TokenCipher
from bot.links import LinkTokens, PendingLink
from bot.model import Answer, AwsCredentials, ChatIdentity, IncomingMessage
from bot.pending_questions import PendingQuestions
from bot.private_answers import PrivateAnswers
from bot.turn_queue import STREAM, TurnQueue
from bot.vault import LinkedAccount, Vault
from qbot.admin.rekey import Rekeyer
from qbot.cli import main

OLD, NEW, LOST = (Fernet.generate_key().decode() for _ in range(3))
ALICE = ChatIdentity("slack", "T1", "U-ALICE")
BOB = ChatIdentity("teams", "tenant", "29:bob")


class Stores:
    """The bot's stores that seal what they keep, all under one cipher."""

    def __init__(self, client: Redis, *keys: str) -> None:
        cipher = TokenCipher(list(keys))
        self.vault = Vault(client, cipher)
        self.links = LinkTokens(client, 600, cipher)
        self.private_answers = PrivateAnswers(client, cipher)
        self.pending = PendingQuestions(client, cipher, 600)
        self.memory = AdapterMemory(client, cipher)
        self.turns = TurnQueue(client, cipher)


@pytest.fixture
def store(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    monkeypatch.setenv("QBOT_REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def raw_values(client: redis.Redis) -> dict[bytes, bytes]:
    return {key: client.get(key) for key in client.scan_iter("qbot:*", _type="STRING")}


def qbot(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["admin", "rekey", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def seal_one_of_each_under(redis_url: str, *keys: str) -> tuple[str, str]:
    """One value of every sealed kind, written as the bot writes it; returns the link token and the turn's id."""
    client = Redis.from_url(redis_url)
    stores = Stores(client, *keys)
    await stores.vault.store(ALICE, LinkedAccount("alice-refresh-token", "alice@example.com", "sub-a", "https://idp"))
    account = await stores.vault.load(ALICE)
    assert account is not None
    creds = AwsCredentials("ASIAALICE", "alice-secret-key", "alice-session",
                           datetime.now(UTC) + timedelta(hours=1))
    assert await stores.vault.store_credentials(ALICE, creds, generation=account.generation)
    token = await stores.links.create(PendingLink(BOB, profile_email="bob@example.com"))
    answer = Answer("Aurora ships in May.", (), "c" * 36, "m" * 36, private=True)
    await stores.private_answers.keep(ALICE, "C1", "t1", answer)
    await stores.pending.keep(IncomingMessage(BOB, "What is Aurora?", "D1", "t2", "msg-1"), "address")
    await stores.memory.put("teams", "card-1", {"answer": "Aurora ships in May."}, 600)
    assert await stores.turns.submit("slack", ["Ev1"], '{"text": "hello"}')
    [(entry_id, _)] = await client.xrange(STREAM)
    await client.aclose()
    return token, entry_id.decode()


async def read_everything_with(redis_url: str, token: str, *keys: str) -> list[object]:
    client = Redis.from_url(redis_url)
    stores = Stores(client, *keys)
    try:
        return [
            await stores.vault.load(ALICE),
            await stores.vault.load_credentials(ALICE),
            await stores.private_answers.peek("c" * 36, "m" * 36),
            await stores.memory.get("teams", "card-1"),
            await stores.pending.take(BOB),
            await stores.links.consume(token),
        ]
    finally:
        await client.aclose()


async def test_rekey_reseals_every_kind_under_the_first_key_keeping_ttls(
    redis_url: str, store: redis.Redis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token, entry_id = await seal_one_of_each_under(redis_url, OLD)
    ttls = {key: store.ttl(key) for key in raw_values(store)}
    assert sorted(ttls.values())[0] == -1  # the chat link never expires; everything else does
    monkeypatch.setenv("QBOT_TOKEN_KEYS", f"{NEW},{OLD}")

    code, out, _ = qbot(capsys)
    assert code == 1  # the question in the stream still needs the old key
    for line in ("linked accounts          1 re-sealed", "cached AWS credentials   1 re-sealed",
                 "one-time links           1 re-sealed", "private answers          1 re-sealed",
                 "pending questions        1 re-sealed", "adapter memory           1 re-sealed",
                 "turn stream              1 question(s) in flight under an older key", "6 value(s) re-sealed"):
        assert line in out, out
    assert "Not done: questions in the turn stream" in out and "Done:" not in out
    assert {key: store.ttl(key) for key in raw_values(store)}.keys() == ttls.keys()
    for key, ttl in ttls.items():  # same keys, same expiry (KEEPTTL), nothing made permanent
        assert (store.ttl(key) == -1) == (ttl == -1), key

    # the worker answers the question; nothing needs the old key any more
    client = Redis.from_url(redis_url)
    await TurnQueue(client, TokenCipher([NEW, OLD])).finish(entry_id)
    await client.aclose()
    before = raw_values(store)
    code, out, _ = qbot(capsys)
    assert code == 0 and "0 value(s) re-sealed" in out
    assert "linked accounts          1 already under the first key" in out
    assert "Done: nothing in Redis needs the older keys" in out
    assert raw_values(store) == before  # idempotent: the second run wrote nothing

    account, creds, kept, memo, pending, link = await read_everything_with(redis_url, token, NEW)  # old key dropped
    assert isinstance(account, LinkedAccount) and account.refresh_token == "alice-refresh-token"
    assert isinstance(creds, AwsCredentials) and creds.secret_access_key == "alice-secret-key"
    assert kept is not None and kept.answer.text == "Aurora ships in May."
    assert memo == {"answer": "Aurora ships in May."}
    assert pending is not None and pending.message.text == "What is Aurora?"
    assert isinstance(link, PendingLink) and link.identity == BOB


async def test_without_the_rekey_the_new_key_alone_reads_nothing(redis_url: str) -> None:
    """The control for the test above: the stores really do need the old key until the rekey."""
    await seal_one_of_each_under(redis_url, OLD)
    client = Redis.from_url(redis_url)
    stores = Stores(client, NEW)
    assert await stores.vault.load(ALICE) is None and await stores.memory.get("teams", "card-1") is None
    await client.aclose()


async def test_a_dry_run_counts_and_writes_nothing(
    redis_url: str, store: redis.Redis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await seal_one_of_each_under(redis_url, OLD)
    before = raw_values(store)
    monkeypatch.setenv("QBOT_TOKEN_KEYS", f"{NEW},{OLD}")
    code, out, _ = qbot(capsys, "--dry-run")
    assert code == 1 and "6 value(s) would re-seal" in out and "dry run: nothing written" in out
    assert raw_values(store) == before


async def test_values_no_configured_key_opens_are_left_alone_and_reported(
    redis_url: str, store: redis.Redis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await seal_one_of_each_under(redis_url, LOST)
    before = raw_values(store)
    monkeypatch.setenv("QBOT_TOKEN_KEYS", f"{NEW},{OLD}")
    code, out, _ = qbot(capsys)
    assert code == 1 and "linked accounts          1 open with no configured key" in out
    assert "turn stream              1 open with no configured key" in out
    assert "Not done: 7 value(s) open with no key in QBOT_TOKEN_KEYS" in out
    assert raw_values(store) == before


def test_a_value_sealed_for_another_key_is_not_opened_there(redis_url: str, store: redis.Redis) -> None:
    """The seal's context is its Redis key: a blob copied under another user's key stays unreadable."""
    old = TokenCipher([OLD])
    store.set("qbot:vault:slack:T1:U-MALLORY", old.seal("qbot:vault:slack:T1:U-ALICE", {"r": "alice's token"}))
    report = Rekeyer(store, [NEW, OLD]).run()
    assert report.unreadable["linked accounts"] == 1 and not report.resealed


def test_a_value_the_bot_rewrote_meanwhile_is_not_overwritten(store: redis.Redis) -> None:
    """The compare-and-set: a rotation the bot stored after rekey read the value wins over the re-sealed copy."""
    old, new = TokenCipher([OLD]), TokenCipher([NEW])
    key = "qbot:vault:slack:T1:U-ALICE"
    read = old.seal(key, {"r": "refresh token 1"})
    rotated = new.seal(key, {"r": "refresh token 2"})
    store.set(key, rotated)
    rekeyer = Rekeyer(store, [NEW, OLD])
    assert rekeyer._reseal(keys=[key], args=[read, new.seal(key, {"r": "refresh token 1"})]) == 0
    assert new.open(key, store.get(key)) == {"r": "refresh token 2"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QBOT_TOKEN_KEYS": ""}, "QBOT_TOKEN_KEYS unset"),
        ({"QBOT_TOKEN_KEYS": "not-a-key"}, "QBOT_TOKEN_KEYS key #1 is not 32 bytes"),
        ({"QBOT_TOKEN_KEYS": NEW, "QBOT_REDIS_URL": ""}, "QBOT_REDIS_URL unset"),
        ({"QBOT_TOKEN_KEYS": NEW, "QBOT_REDIS_URL": "http://nowhere"}, "QBOT_REDIS_URL is not a Redis URL"),
    ],
)
def test_bad_settings_exit_2_and_say_which(
    store: redis.Redis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = qbot(capsys)
    assert code == 2 and message in err


async def test_the_doctor_warns_of_links_under_an_older_key_until_the_rekey(
    redis_url: str, store: redis.Redis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from qbot.admin.doctor_redis import RedisChecks

    await seal_one_of_each_under(redis_url, OLD)
    env = {"QBOT_REDIS_URL": redis_url, "QBOT_TOKEN_KEYS": f"{NEW},{OLD}"}

    def token_keys_check() -> tuple[str, str, str]:
        checks = RedisChecks(env)
        try:
            checks.redis()
            result = checks.token_keys()
        finally:
            checks.close()
        return result.status, result.detail, result.fix

    status, detail, fix = token_keys_check()
    assert (status, detail) == ("warn", "1 of 1 stored links sampled are sealed under an older key")
    assert "qbot admin rekey" in fix
    monkeypatch.setenv("QBOT_TOKEN_KEYS", env["QBOT_TOKEN_KEYS"])
    assert qbot(capsys)[0] == 1  # the stream's question still needs the old key; the links are re-sealed
    status, detail, _ = token_keys_check()
    assert status == "ok" and detail.endswith("they open all 1 stored links sampled")
