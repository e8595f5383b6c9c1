"""Bot Framework signing keys: a token naming an unknown key id refetches the keys at most once a minute, so a
flood of tokens with made-up key ids cannot make the bot hammer the key source. Driven against a loopback
OpenID metadata + JWKS server that counts its fetches; the key cache's clock is moved, never waited out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt as pyjwt
import pytest
from aiohttp import web
from joserfc.jwk import ECKey, RSAKey

from adapters.teams.tokens import (
    FAILED_FETCH_RETRY_SECONDS,
    KEYS_MAX_AGE_SECONDS,
    MAX_TOKEN_LENGTH,
    UNKNOWN_KEY_REFETCH_SECONDS,
    BotFrameworkTokens,
    TokenRejected,
    VerifiedToken,
)
from sandbox.botframework import FakeBotFramework, rsa_key
from sandbox.serving import Served, bind
from tests.adapters.teams.conftest import APP_ID


class KeySource:
    """login.botframework.com's metadata and JWKS on loopback: publishes `published` (kid -> key name)."""

    def __init__(self) -> None:
        self.published = {"key-1": "bot-framework"}
        self.extra_keys: list[Any] = []  # JWKS entries served as they are, before the published keys
        self.down = False  # answer 503 to every request
        self.jwks_uri: object = None  # what the metadata names as jwks_uri, if not the real one
        self.key_fetches = 0
        self.served = Served(self._app(), bind("127.0.0.1", 0))
        self.url = self.served.url
        self.signer = FakeBotFramework(url=self.url)  # signs tokens the way Bot Framework does

    def token(self, kid: str, key: str = "bot-framework") -> str:
        return f"Bearer {self.signer.token(APP_ID, key=key, kid=kid)}"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metadata", self._metadata)
        app.router.add_get("/keys", self._keys)
        return app

    async def _metadata(self, _request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        jwks_uri = self.url + "/keys" if self.jwks_uri is None else self.jwks_uri
        return web.json_response({"issuer": "https://api.botframework.com", "jwks_uri": jwks_uri})

    async def _keys(self, _request: web.Request) -> web.Response:
        self.key_fetches += 1
        keys: list[Any] = list(self.extra_keys)
        for kid, name in self.published.items():
            jwk = dict(RSAKey.import_key(rsa_key(name).public_key()).as_dict(private=False))
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return web.json_response({"keys": keys})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def source() -> AsyncIterator[KeySource]:
    keys = KeySource()
    await keys.served.start()
    yield keys
    await keys.served.stop()


async def verify(tokens: BotFrameworkTokens, source: KeySource, authorization: str) -> dict[str, Any]:
    return await tokens.verify(authorization, channel_id="msteams", service_url=source.url + "/")


# issue 17 table: adapters/teams/tokens.py: keys refetched on every unknown kid
async def test_unknown_key_ids_refetch_the_keys_at_most_once_a_minute(source: KeySource) -> None:
    clock = Clock()
    tokens = BotFrameworkTokens(APP_ID, source.url + "/metadata", clock=clock)
    try:
        assert (await verify(tokens, source, source.token("key-1")))["aud"] == APP_ID
        assert source.key_fetches == 1

        # A flood of made-up key ids, right after a fetch: each is refused, none fetches the keys again.
        for n in range(5):
            with pytest.raises(TokenRejected, match="unknown key"):
                await verify(tokens, source, source.token(f"made-up-{n}", key="rogue"))
        assert source.key_fetches == 1

        # Bot Framework rotates its keys: a minute after the last fetch, a token naming the new key refetches
        # once and is accepted; another unknown kid right after it is refused without a fetch.
        source.published["key-2"] = "bot-framework-next"
        clock.now += UNKNOWN_KEY_REFETCH_SECONDS + 1
        claims = await verify(tokens, source, source.token("key-2", key="bot-framework-next"))
        assert claims["aud"] == APP_ID and source.key_fetches == 2
        with pytest.raises(TokenRejected, match="unknown key"):
            await verify(tokens, source, source.token("made-up-again", key="rogue"))
        assert source.key_fetches == 2
        # known keys never refetch, however much later (within the day the keys are cached for)
        clock.now += 3600
        await verify(tokens, source, source.token("key-1"))
        assert source.key_fetches == 2
    finally:
        await tokens.close()


async def test_a_failed_first_fetch_is_retried_after_a_few_seconds_not_on_every_token(source: KeySource) -> None:
    clock = Clock()
    tokens = BotFrameworkTokens(APP_ID, source.url + "/metadata", clock=clock)
    try:
        source.down = True
        with pytest.raises(TokenRejected, match="unknown key"):
            await verify(tokens, source, source.token("key-1"))
        source.down = False
        clock.now += FAILED_FETCH_RETRY_SECONDS - 1  # too soon: refused without asking the key source
        with pytest.raises(TokenRejected, match="unknown key"):
            await verify(tokens, source, source.token("key-1"))
        assert source.key_fetches == 0
        await tokens.close()  # closing drops the HTTP session; the next fetch opens a new one
        clock.now += 2
        assert (await verify(tokens, source, source.token("key-1")))["aud"] == APP_ID
        assert source.key_fetches == 1
    finally:
        await tokens.close()
    await tokens.close()  # closing again, or a cache that never fetched, is harmless
    await BotFrameworkTokens(APP_ID, source.url + "/metadata").close()


async def test_keys_are_refetched_after_a_day_and_kept_when_that_fails(source: KeySource) -> None:
    clock = Clock()
    tokens = BotFrameworkTokens(APP_ID, source.url + "/metadata", clock=clock)
    try:
        await verify(tokens, source, source.token("key-1"))
        clock.now += KEYS_MAX_AGE_SECONDS
        await verify(tokens, source, source.token("key-1"))
        assert source.key_fetches == 1  # a day old, not older: still cached
        clock.now += 1
        source.published = {"key-2": "bot-framework-next"}  # key-1 retired
        with pytest.raises(TokenRejected, match="unknown key"):
            await verify(tokens, source, source.token("key-1"))
        assert source.key_fetches == 2
        assert (await verify(tokens, source, source.token("key-2", key="bot-framework-next")))["aud"] == APP_ID

        # A day later the key source is down: the keys in hand keep verifying, and the next try is a minute
        # away, not a few seconds (that fast retry is only for having no keys at all).
        clock.now += KEYS_MAX_AGE_SECONDS + 1
        source.down = True
        await verify(tokens, source, source.token("key-2", key="bot-framework-next"))
        source.down = False
        clock.now += UNKNOWN_KEY_REFETCH_SECONDS
        with pytest.raises(TokenRejected, match="unknown key"):
            await verify(tokens, source, source.token("key-3", key="rogue"))
        assert source.key_fetches == 2
    finally:
        await tokens.close()


async def test_a_token_longer_than_the_limit_is_refused_unread(source: KeySource) -> None:
    tokens = BotFrameworkTokens(APP_ID, source.url + "/metadata", clock=Clock())
    try:
        def padded(n: int, kid: str = "key-1") -> str:
            return source.signer.token(APP_ID, kid=kid, pad="x" * n)

        n = 0
        for step in (1024, 64, 1):  # the longest padding that stays within the limit
            while len(padded(n + step)) <= MAX_TOKEN_LENGTH:
                n += step
        # base64 skips some lengths: a key id a character or two longer reaches the limit exactly
        source.published.update({"key-1a": "bot-framework", "key-1ab": "bot-framework"})
        at_limit = next(t for kid in ("key-1", "key-1a", "key-1ab") for m in range(n - 6, n + 1)
                        if len(t := padded(m, kid)) == MAX_TOKEN_LENGTH)
        assert len(at_limit) == MAX_TOKEN_LENGTH
        assert (await verify(tokens, source, f"Bearer {at_limit}"))["aud"] == APP_ID
        longer = padded(n + 1)
        assert MAX_TOKEN_LENGTH < len(longer) <= MAX_TOKEN_LENGTH + 2  # just over (base64 skips some lengths)
        with pytest.raises(TokenRejected, match="too long") as refused:
            await verify(tokens, source, f"Bearer {longer}")
        assert refused.value.reason == "token too long"  # what the route logs
    finally:
        await tokens.close()


async def test_unusable_jwks_entries_are_skipped_and_endorsements_kept(source: KeySource) -> None:
    clock = Clock()
    tokens = BotFrameworkTokens(APP_ID, source.url + "/metadata", clock=clock)
    ec_key = {**ECKey.generate_key("P-256").as_dict(private=False), "kid": "ec-1"}  # not an RSA key: no use
    source.extra_keys = ["not an object", {"kty": "RSA"}, {"kid": 7, "kty": "RSA"}, {"kid": "broken", "kty": "RSA"},
                         ec_key]
    source.published = {"key-1": "bot-framework"}
    try:
        assert (await verify(tokens, source, source.token("key-1")))["aud"] == APP_ID
        for unusable in ("broken", "ec-1"):
            with pytest.raises(TokenRejected, match="unknown key"):
                await verify(tokens, source, source.token(unusable))
        # a JWKS with nothing usable in it keeps the keys in hand
        source.published = {}
        clock.now += KEYS_MAX_AGE_SECONDS + 1
        assert (await verify(tokens, source, source.token("key-1")))["aud"] == APP_ID
        assert source.key_fetches == 2
    finally:
        await tokens.close()


async def test_a_key_endorsed_for_some_channels_signs_only_for_those(source: KeySource) -> None:
    tokens = BotFrameworkTokens(APP_ID, source.url + "/metadata", clock=Clock())
    source.published = {}
    jwk = dict(RSAKey.import_key(rsa_key("bot-framework").public_key()).as_dict(private=False))
    source.extra_keys = [{**jwk, "kid": "key-1", "use": "sig", "endorsements": ["msteams", "skype"]}]
    try:
        for channel in ("msteams", "skype"):
            claims = await tokens.verify(source.token("key-1"), channel_id=channel, service_url=source.url)
            assert claims["aud"] == APP_ID
        with pytest.raises(TokenRejected, match="not endorsed"):
            await tokens.verify(source.token("key-1"), channel_id="webchat", service_url=source.url + "/")
    finally:
        await tokens.close()


def test_the_serviceurl_binds_ignoring_only_case_and_trailing_slashes() -> None:
    def binds(claimed: object, activity: str) -> bool:
        try:
            BotFrameworkTokens.bind(VerifiedToken({"serviceurl": claimed}, None), channel_id="msteams",
                                    service_url=activity)
        except TokenRejected:
            return False
        return True

    assert binds("https://smba.trafficmanager.net/amer/", "https://smba.trafficmanager.net/amer")
    assert binds("https://SMBA.trafficmanager.net/Amer", "https://smba.trafficmanager.net/amer//")
    assert not binds("https://smba.trafficmanager.net/amerX", "https://smba.trafficmanager.net/amer")
    assert not binds("https://smba.trafficmanager.net/amer", "https://smba.trafficmanager.net/amerx/")
    assert not binds("https://smba.trafficmanager.net/amer", "https://smba.trafficmanager.net/amerX")
    assert not binds("/https://smba.trafficmanager.net/amer", "https://smba.trafficmanager.net/amer")
    assert not binds("https://smba.trafficmanager.net/amer ", "https://smba.trafficmanager.net/amer")
    assert not binds(None, "https://smba.trafficmanager.net/amer")


async def test_only_a_bearer_token_with_a_key_id_and_every_claim_is_accepted(source: KeySource) -> None:
    tokens = BotFrameworkTokens(APP_ID, source.url + "/metadata", clock=Clock())
    try:
        signed = source.signer.token(APP_ID, kid="key-1")
        no_kid = pyjwt.encode({"aud": APP_ID}, rsa_key("bot-framework"), algorithm="RS256")
        empty_kid = pyjwt.encode({"aud": APP_ID}, rsa_key("bot-framework"), algorithm="RS256", headers={"kid": ""})
        for authorization, reason in (
            (f"Basic {signed}", "no bearer token"),
            ("Bearer  ", "no bearer token"),
            ("", "no bearer token"),
            (f"Bearer {no_kid}", "token names no signing key"),
            (f"Bearer {empty_kid}", "token names no signing key"),
        ):
            with pytest.raises(TokenRejected) as refused:
                await verify(tokens, source, authorization)
            assert refused.value.reason == reason, authorization
        assert source.key_fetches == 0  # none of those made the bot fetch keys
        assert (await verify(tokens, source, f"bearer  {signed} "))["aud"] == APP_ID  # scheme case, spacing
        now = int(time.time())
        # Bot Framework's clocks may be up to 5 minutes off ours: a token that expired a minute ago still passes
        late = source.signer.token(APP_ID, kid="key-1", exp=now - 60, nbf=now - 3600)
        assert (await verify(tokens, source, f"Bearer {late}"))["aud"] == APP_ID
        for claims in ({"iss": "https://sts.windows.net/evil/"}, {"aud": "another-app"}, {"exp": None},
                       {"iss": None}, {"aud": None}, {"exp": now - 600, "nbf": now - 3600}):
            with pytest.raises(TokenRejected, match="invalid token"):
                await verify(tokens, source, f"Bearer {source.signer.token(APP_ID, kid='key-1', **claims)}")
    finally:
        await tokens.close()


@pytest.mark.parametrize("jwks_uri", ["", 5, ["/keys"]])
async def test_metadata_without_a_usable_jwks_uri_refuses_tokens_cleanly(source: KeySource, jwks_uri: object) -> None:
    source.jwks_uri = jwks_uri
    tokens = BotFrameworkTokens(APP_ID, source.url + "/metadata", clock=Clock())
    try:
        with pytest.raises(TokenRejected, match="unknown key"):
            await verify(tokens, source, source.token("key-1"))
        assert source.key_fetches == 0
    finally:
        await tokens.close()
