"""`POST /api/messages` accepts only activities with a valid Bot Framework token (keys from the configured
OpenID metadata on loopback); anything else is a 401 and nothing happens. Other routes are untouched."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import pytest
from cryptography.fernet import Fernet

from adapters.teams.adapter import TeamsAdapter
from bot.config import Settings
from bot.turn_queue import STREAM
from qbot.app import GRAPH, build_app
from sandbox.botframework import FakeBotFramework, rsa_key
from tests.adapters.teams.conftest import ALICE, APP_ID, TENANT, TeamsBot, teams_env


def test_correctly_signed_activity_is_accepted_and_answered(teams: TeamsBot) -> None:
    replies = teams.ask(teams.message(ALICE, "help"))
    assert replies[0].conversation_id == ALICE.personal_chat


def test_bad_tokens_get_401_and_nothing_happens(teams: TeamsBot) -> None:
    bf = teams.bf
    activity = teams.message(ALICE, "qlink")
    now = int(time.time())
    forged_with_known_kid = jwt.encode(
        {"iss": "https://api.botframework.com", "aud": APP_ID, "exp": now + 600, "serviceurl": bf.url + "/"},
        rsa_key("rogue"),
        algorithm="RS256",
        headers={"kid": bf.kid},
    )
    unsigned = jwt.encode(
        {"iss": "https://api.botframework.com", "aud": APP_ID, "exp": now + 600, "serviceurl": bf.url + "/"},
        key=None,
        algorithm="none",
        headers={"kid": bf.kid},
    )
    cases: dict[str, dict[str, Any]] = {
        "no token": {"token": None},
        "not bearer": {"token": "Basic YWxpY2U6c2VjcmV0"},
        "bearer only": {"token": "Bearer"},
        "garbage": {"token": "Bearer not-a-jwt"},
        "three garbage segments": {"token": "Bearer aaa.bbb.ccc"},
        "bad base64 header": {"token": "Bearer @@@.e30.sig"},
        "alg none": {"token": f"Bearer {unsigned}"},
        "unknown key": {"token": f"Bearer {bf.token(APP_ID, key='rogue', kid='kid-nobody-published')}"},
        "rogue key, known kid": {"token": f"Bearer {forged_with_known_kid}"},
        "expired": {"exp": now - 3600, "nbf": now - 7200},
        "wrong audience": {"aud": "00000000-0000-0000-0000-000000000000"},
        "wrong issuer": {"iss": "https://sts.windows.net/evil/"},
        "no expiry": {"exp": None},
        "other serviceurl": {"serviceurl": "https://evil.example.com/"},
        "no serviceurl": {"serviceurl": None},
    }
    for name, case in cases.items():
        if "token" in case:
            response = teams.post(activity, token=case["token"])
        else:
            response = teams.post(activity, **case)
        assert response.status_code == 401, (name, response.status_code, response.text)
        assert "Traceback" not in response.text
    # The same activity, properly signed, still works (the refusals left no state behind), and is the only one
    # handled: a refusal that had started anything would have been answered before it, or counted.
    assert bf.calls == []
    assert teams.ask(activity)[0].conversation_id == ALICE.personal_chat
    assert len(bf.posted()) == 1 and handled(teams) == 1


def handled(teams: TeamsBot) -> float:
    """Teams messages the core has handled, whatever their outcome."""
    registry = teams.bot.graph.metrics.registry
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "qbot_messages"
        for sample in metric.samples
        if sample.name == "qbot_messages_total" and sample.labels.get("platform") == "teams"
    )


def test_malformed_bodies_are_400_never_500(teams: TeamsBot) -> None:
    url = teams.url + "/api/messages"
    token = {"Authorization": f"Bearer {teams.bf.token(APP_ID)}"}
    for body in (b"", b"not json", b"[]", b'{"type": 5}', b'{"type": "message"}', b'{"conversation": "x"}'):
        response = teams.http.post(url, content=body, headers={**token, "Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.status_code, response.text)


def test_an_activity_without_a_service_url_or_a_message_without_an_id_is_400_and_nothing_happens(
    teams: TeamsBot,
) -> None:
    no_service_url = teams.message(ALICE, "help")
    del no_service_url["serviceUrl"]
    no_id = teams.message(ALICE, "help")
    del no_id["id"]
    for activity, why in ((no_service_url, "needs a serviceUrl"), (no_id, "a message activity needs an id")):
        response = teams.post(activity)
        assert response.status_code == 400 and why in response.text, response.text
    assert teams.bot.run(teams.bot.graph.redis.xlen(STREAM)) == 0  # nothing taken in to be answered
    assert teams.bf.calls == []


def test_garbage_with_any_bearer_is_401_before_parsing_and_never_an_error(
    teams: TeamsBot, caplog: pytest.LogCaptureFixture
) -> None:
    """The token is checked before the body is read: a deeply nested body with a made-up bearer header used to
    be a 500 with a traceback; with a valid token, the same body is a 400."""
    url = teams.url + "/api/messages"
    deep = b"[" * 100_000 + b"]" * 100_000
    caplog.set_level("INFO")
    for authorization in ("Bearer x", "Bearer aaa.bbb.ccc", f"Bearer {teams.bf.token(APP_ID, key='rogue')}"):
        response = teams.http.post(url, content=deep, headers={"Authorization": authorization})
        assert response.status_code == 401, authorization
    token = {"Authorization": f"Bearer {teams.bf.token(APP_ID)}"}
    for body in (deep, b'{"type": "message", "channelData": ' + deep + b"}", b"\xff\xfe"):
        assert teams.http.post(url, content=body, headers=token).status_code == 400
    assert teams.bf.calls == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info or r.exc_text] == []


def test_other_routes_ignore_teams_auth(teams: TeamsBot) -> None:
    for path in ("/healthz", "/readyz"):
        response = teams.http.get(teams.url + path, headers={"Authorization": "Bearer garbage"})
        assert response.status_code == 200
    assert teams.http.get(teams.url + "/auth/start?t=nope", headers={"Authorization": "x"}).status_code == 400


def test_activities_from_another_tenant_are_refused(make_teams: Any, bot_framework: FakeBotFramework) -> None:
    teams = make_teams(**teams_env(bot_framework, QBOT_TEAMS_TENANT_ID="11111111-2222-4333-8444-555555555555"))
    assert teams.post(teams.message(ALICE, "help")).status_code == 403


def test_with_a_tenant_set_an_activity_without_one_is_refused(make_teams: Any, bot_framework: FakeBotFramework) -> None:
    teams = make_teams(**teams_env(bot_framework, QBOT_TEAMS_TENANT_ID=TENANT))
    anonymous = teams.message(ALICE, "help")
    del anonymous["channelData"]["tenant"]
    del anonymous["conversation"]["tenantId"]
    assert teams.post(anonymous).status_code == 403
    assert bot_framework.calls == []
    assert teams.ask(teams.message(ALICE, "help"))[0].conversation_id == ALICE.personal_chat  # its own tenant: fine


def test_anonymous_mode_without_app_id_answers_only_loopback(
    make_teams: Any, bot_framework: FakeBotFramework
) -> None:
    teams = make_teams(QBOT_TEAMS_ALLOW_ANONYMOUS="true")
    assert teams.ask(teams.message(ALICE, "help"), count=1)  # unsigned, from the local connector
    remote = teams.message(ALICE, "help")
    remote["serviceUrl"] = "https://smba.trafficmanager.net/emea/"
    assert teams.post(remote, token=None).status_code == 403


def _settings(redis_url: str, **env: str) -> Settings:
    return Settings.from_env({"QBOT_REDIS_URL": redis_url, "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(), **env})


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"QBOT_TEAMS_APP_ID": APP_ID, "QBOT_TEAMS_APP_PASSWORD": "secret", "QBOT_TEAMS_TENANT_ID": "t"}, True),
        ({"QBOT_TEAMS_ALLOW_ANONYMOUS": "true"}, True),
    ],
)
def test_teams_is_on_only_with_credentials_or_anonymous_mode(redis_server: str, env: dict[str, str], on: bool) -> None:
    app = build_app(_settings(redis_server, **env))
    adapters = [a for a in app[GRAPH].adapters if isinstance(a, TeamsAdapter)]
    assert bool(adapters) is on
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    assert (("POST", "/api/messages") in routes) is on


def test_a_key_endorsed_for_teams_only_does_not_sign_other_channels(teams: TeamsBot) -> None:
    activity = teams.message(ALICE, "help")
    activity["channelId"] = "webchat"
    assert teams.post(activity).status_code == 401


async def test_unreachable_or_broken_key_sources_reject_instead_of_failing(refused_url: str) -> None:
    from adapters.teams.tokens import BotFrameworkTokens, TokenRejected

    url = refused_url  # nothing listens there
    tokens = BotFrameworkTokens(APP_ID, url + "/v1/.well-known/openidconfiguration")
    fake = FakeBotFramework(url=url)
    try:
        with pytest.raises(TokenRejected):
            await tokens.verify(f"Bearer {fake.token(APP_ID)}", channel_id="msteams", service_url=url + "/")
    finally:
        await tokens.close()
