"""Bot Framework signing keys: a token naming an unknown key id refetches the keys at most once a minute, so a
flood of tokens with made-up key ids cannot make the bot hammer the key source. Driven against a loopback
OpenID metadata + JWKS server that counts its fetches; the key cache's clock is moved, never waited out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from joserfc.jwk import RSAKey

from adapters.teams.tokens import UNKNOWN_KEY_REFETCH_SECONDS, BotFrameworkTokens, TokenRejected
from sandbox.botframework import FakeBotFramework, rsa_key
from sandbox.serving import Served, bind
from tests.adapters.teams.conftest import APP_ID


class KeySource:
    """login.botframework.com's metadata and JWKS on loopback: publishes `published` (kid -> key name)."""

    def __init__(self) -> None:
        self.published = {"key-1": "bot-framework"}
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
        return web.json_response({"issuer": "https://api.botframework.com", "jwks_uri": self.url + "/keys"})

    async def _keys(self, _request: web.Request) -> web.Response:
        self.key_fetches += 1
        keys: list[dict[str, Any]] = []
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
