"""`qbot doctor` against the sandbox (IdP, Q Business), real Redis, moto IAM and local Slack/Microsoft login
stand-ins: a correct configuration passes every check; each broken setting fails its own check, with its fix."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from cryptography.fernet import Fernet

from bot.cipher import TokenCipher
from qbot.admin.policies import trust_policy
from qbot.cli import main
from sandbox.serving import Served, bind
from sandbox.world import INDEX_ID, ROLE_ARN, Sandbox
from tests.conftest import LoopThread

SLACK_TOKEN = "xoxb-good-token"
TEAMS_APP_ID = "00000000-0000-0000-0000-00000000b07"
TEAMS_PASSWORD = "teams-secret"
# The sandbox application trusts this provider (IAM names providers without the issuer's port).
SANDBOX_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/127.0.0.1"


def chat_platforms() -> web.Application:
    """Slack's auth.test and the Microsoft login token endpoint, as far as the doctor uses them."""

    async def auth_test(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "user": "qbot", "team": "Example Corp", "user_id": "U0BOT"})

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if request.match_info["tenant"] != "botframework.com" or form.get("scope") != "https://api.botframework.com/.default":
            return web.json_response({"error": "invalid_request", "error_description": "AADSTS90002"}, status=400)
        if form.get("client_id") != TEAMS_APP_ID or form.get("client_secret") != TEAMS_PASSWORD:
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
                status=401,
            )
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ.fake.token"})

    app = web.Application()
    app.router.add_post("/slack/api/auth.test", auth_test)
    app.router.add_post("/login/{tenant}/oauth2/v2.0/token", token)
    return app


@pytest.fixture
def platforms(servers: LoopThread) -> Iterator[str]:
    served = Served(chat_platforms(), bind("127.0.0.1", 0))
    servers.run(served.start())
    yield served.url
    servers.run(served.stop())


@pytest.fixture
def good_env(
    sandbox: Sandbox, admin_env: dict[str, str], redis_url: str, platforms: str, iam: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """A complete, correct configuration; the role exists in (moto's) IAM as provisioning makes it."""
    iam.create_open_id_connect_provider(Url="https://127.0.0.1", ClientIDList=["qbot"])
    iam.create_role(
        RoleName=ROLE_ARN.rsplit("/", 1)[1],
        AssumeRolePolicyDocument=json.dumps(trust_policy(SANDBOX_PROVIDER, ["qbot"])),
    )
    env = {
        **sandbox.env(),
        "QBOT_REDIS_URL": redis_url,
        "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(),
        "QBOT_GROUP_SYNC": "true",
        "QBOT_Q_INDEX_ID": INDEX_ID,
        "QBOT_SLACK_BOT_TOKEN": SLACK_TOKEN,
        "QBOT_SLACK_SIGNING_SECRET": "slack-signing-secret",
        "QBOT_SLACK_API_URL": platforms + "/slack/api/",
        "QBOT_TEAMS_APP_ID": TEAMS_APP_ID,
        "QBOT_TEAMS_APP_PASSWORD": TEAMS_PASSWORD,
        "QBOT_TEAMS_LOGIN_URL": platforms + "/login",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, tuple[str, str]]]:
    """Exit status, and per check: (status, the rest of its lines)."""
    code = main(["doctor"])
    out = capsys.readouterr().out
    checks: dict[str, tuple[str, str]] = {}
    for match in re.finditer(r"^\[(.{4})\] ([^:]+): (.*)$", out, re.MULTILINE):
        checks[match.group(2)] = (match.group(1).strip(), match.group(3))
    return code, checks


def test_a_correct_configuration_passes_every_check(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks = doctor(capsys)

    assert code == 0, checks
    assert list(checks) == [
        "configuration", "email match", "Redis", "Redis memory", "token keys", "channel policies", "IdP discovery",
        "IdP client",
        "IdP redirect URI", "IAM role", "Q Business application", "group sync", "Slack", "Teams",
    ]
    statuses = {name: status for name, (status, _) in checks.items()}
    assert all(status == "ok" for name, status in statuses.items() if name != "Redis"), checks
    assert statuses["Redis"] in ("ok", "warn")  # the test Redis persists nothing, and the doctor says so
    assert "qbot in Example Corp" in checks["Slack"][1]
    assert "accepts client id 'qbot'" in checks["IdP client"][1]
    assert "tagged with an Email of any domain and nothing else" in checks["IAM role"][1]
    assert "maxmemory-policy noeviction" in checks["Redis memory"][1]
    assert checks["channel policies"][1] == "no channel has a policy: every channel follows QBOT_CHANNEL_REPLY_MODE"


def test_unconfigured_platforms_are_skipped_not_failed(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("QBOT_SLACK_BOT_TOKEN", "QBOT_SLACK_SIGNING_SECRET", "QBOT_TEAMS_APP_ID", "QBOT_TEAMS_APP_PASSWORD",
                 "QBOT_GROUP_SYNC"):
        monkeypatch.delenv(name)
    code, checks = doctor(capsys)
    assert code == 0
    assert {checks[n][0] for n in ("Slack", "Teams", "group sync")} == {"skip"}


HALF_CONFIGURED = [
    ("QBOT_SLACK_BOT_TOKEN", None, "Slack", "Slack needs QBOT_SLACK_BOT_TOKEN"),
    ("QBOT_SLACK_APP_TOKEN", "xoxb-not-an-app-token", "Slack", "QBOT_SLACK_APP_TOKEN must be an app-level token"),
    ("QBOT_TEAMS_ALLOW_ANONYMOUS", "maybe", "Teams", "QBOT_TEAMS_ALLOW_ANONYMOUS must be true or false"),
]


@pytest.mark.parametrize(("variable", "value", "check", "problem"), HALF_CONFIGURED,
                         ids=[h[0] for h in HALF_CONFIGURED])
def test_a_platform_setting_the_adapter_refuses_fails_the_doctor_too(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    variable: str, value: str | None, check: str, problem: str,
) -> None:
    """The doctor reads each platform's settings as its adapter does: where `qbot serve` would refuse to start
    (a signing secret without a bot token, a bot token as the app token, a flag that is not true or false), the
    doctor fails instead of skipping the platform or passing it."""
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)

    code, checks = doctor(capsys)

    assert code == 1
    assert checks[check][0] == "FAIL", checks
    assert problem in checks[check][1]


# REFUSED stands for a loopback host:port the test holds where connections are refused.
BROKEN = [
    ("QBOT_REDIS_URL", "redis://REFUSED/0", "Redis", "does not answer", "check QBOT_REDIS_URL"),
    ("QBOT_TOKEN_KEYS", "not-a-key", "token keys", "is not 32 bytes", "qbot keygen"),
    ("QBOT_OIDC_ISSUER", "http://REFUSED", "IdP discovery", "cannot be reached", "check QBOT_OIDC_ISSUER"),
    ("QBOT_OIDC_CLIENT_SECRET", "wrong", "IdP client", "refuses client id 'qbot'", "QBOT_OIDC_CLIENT_SECRET"),
    ("QBOT_PUBLIC_URL", "http://127.0.0.1:9", "IdP redirect URI", "refuses the redirect URI",
     "register http://127.0.0.1:9/auth/callback"),
    ("QBOT_ROLE_ARN", "arn:aws:iam::123456789012:role/nobody", "IAM role", "does not exist", "qbot admin provision"),
    ("QBOT_Q_APP_ID", "00000000-0000-4000-8000-000000000000", "Q Business application", "no application",
     "set QBOT_Q_APP_ID"),
    ("QBOT_Q_INDEX_ID", "00000000-0000-4000-8000-000000000000", "group sync", "ListGroups", "group-sync-policy.json"),
    ("QBOT_SLACK_BOT_TOKEN", "xoxb-revoked", "Slack", "invalid_auth", "Bot User OAuth Token"),
    ("QBOT_TEAMS_APP_PASSWORD", "expired", "Teams", "invalid_client", "make a new client secret"),
    ("QBOT_TEAMS_TENANT_ID", "contoso.example", "Teams", "invalid_request", "QBOT_TEAMS_TENANT_ID"),
]


@pytest.mark.parametrize(("variable", "value", "check", "problem", "fix"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_setting_fails_its_own_check_with_the_fix(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    variable: str, value: str, check: str, problem: str, fix: str, refused_url: str,
) -> None:
    monkeypatch.setenv(variable, value.replace("REFUSED", refused_url.removeprefix("http://")))

    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks[check]
    assert status == "FAIL", checks
    assert problem in text and " -> fix: " in text and fix in text.split(" -> fix: ", 1)[1], text
    failed = {name for name, (s, _) in checks.items() if s == "FAIL"} - {"configuration"}
    assert failed == {check}, checks  # one broken setting, one failed check (and its dependants skip)


def test_a_trust_policy_without_the_email_tag_condition_fails(
    good_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = trust_policy(SANDBOX_PROVIDER, ["qbot"])
    policy["Statement"] = policy["Statement"][:1]
    iam.update_assume_role_policy(RoleName=ROLE_ARN.rsplit("/", 1)[1], PolicyDocument=json.dumps(policy))

    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["IAM role"]
    assert status == "FAIL" and "sts:TagSession with aws:RequestTag/Email" in text and "trust-policy.json" in text


def test_a_trust_policy_for_another_client_fails(
    good_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    iam.update_assume_role_policy(
        RoleName=ROLE_ARN.rsplit("/", 1)[1], PolicyDocument=json.dumps(trust_policy(SANDBOX_PROVIDER, ["other"]))
    )
    code, checks = doctor(capsys)
    assert code == 1 and "for audience(s) ['other'] in, not 'qbot'" in checks["IAM role"][1]


def test_stored_links_the_keys_cannot_open_fail_the_key_check(
    good_env: dict[str, str], redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import redis

    key = "qbot:vault:test:T1:U-OLD"
    sealed = TokenCipher([Fernet.generate_key().decode()]).seal(key, {"r": "x"})  # under a key since dropped
    with redis.Redis.from_url(redis_url) as client:
        client.set(key, sealed)

    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["token keys"]
    assert status == "FAIL" and "1 of 1 stored links" in text and "put the key they were sealed with back" in text


def test_aws_checks_are_skipped_when_these_credentials_cannot_read(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("QBOT_GROUP_SYNC")

    code, checks = doctor(capsys)

    assert code == 0, checks
    assert checks["IAM role"][0] == "skip" and checks["Q Business application"][0] == "skip"
    assert "no AWS credentials" in checks["IAM role"][1]


def test_against_a_stand_in_sts_the_role_is_not_looked_up_in_real_iam(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox has no IAM: with STS overridden and no IAM endpoint, doctor must not reach for real IAM."""
    monkeypatch.delenv("QBOT_IAM_ENDPOINT_URL", raising=False)
    code, checks = doctor(capsys)
    assert checks["IAM role"][0] == "skip" and "QBOT_IAM_ENDPOINT_URL" in checks["IAM role"][1]
    assert code == 0, checks


def update_trust(iam: Any, policy: dict[str, Any]) -> None:
    iam.update_assume_role_policy(RoleName=ROLE_ARN.rsplit("/", 1)[1], PolicyDocument=json.dumps(policy))


def test_a_trust_policy_without_the_tag_keys_condition_fails(
    good_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without it, an IdP claim mapping can add any session tag (one a permission elsewhere might trust)."""
    policy = trust_policy(SANDBOX_PROVIDER, ["qbot"])
    del policy["Statement"][1]["Condition"]["ForAllValues:StringEquals"]
    update_trust(iam, policy)

    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["IAM role"]
    assert status == "FAIL" and "lets sessions carry tags other than Email (no ForAllValues:StringEquals" in text
    assert "run `qbot admin provision`" in text


def test_a_trust_policy_allowing_more_tag_keys_fails(
    good_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = trust_policy(SANDBOX_PROVIDER, ["qbot"])
    policy["Statement"][1]["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"] = ["Email", "Department"]
    update_trust(iam, policy)

    code, checks = doctor(capsys)

    assert code == 1 and "(aws:TagKeys ['Department', 'Email'])" in checks["IAM role"][1]


def test_a_second_unconditioned_tag_session_statement_fails(
    good_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """IAM allows what any Allow statement allows: a loose one next to the strict one undoes it."""
    policy = trust_policy(SANDBOX_PROVIDER, ["qbot"])
    policy["Statement"].append({**policy["Statement"][1], "Sid": "Loose", "Condition": {}})
    update_trust(iam, policy)

    code, checks = doctor(capsys)

    assert code == 1
    text = checks["IAM role"][1]
    assert "allows sts:TagSession without an aws:RequestTag/Email condition" in text
    assert "lets sessions carry tags other than Email" in text


def test_the_email_domain_of_the_trust_policy_is_reported(
    good_env: dict[str, str], iam: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    update_trust(iam, trust_policy(SANDBOX_PROVIDER, ["qbot"], ["example.com"]))

    code, checks = doctor(capsys)

    assert code == 0, checks
    assert checks["IAM role"] == (
        "ok", "qbot-sandbox-user trusts the IdP for client id 'qbot', in sessions tagged with an Email in "
        "*@example.com and nothing else",
    )


def test_turning_the_email_rule_off_warns_that_links_become_forwardable(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warning, not a failure: the setting is a deliberate choice the doctor makes sure is an informed one."""
    monkeypatch.setenv("QBOT_REQUIRE_EMAIL_MATCH", "false")

    code, checks = doctor(capsys)

    assert code == 0, checks
    status, text = checks["email match"]
    assert status == "warn" and "sign-in links become forwardable" in text
    assert "binds their own IdP account to the chat account that asked for it" in text


@pytest.fixture
def memory_policy(redis_url: str) -> Iterator[Callable[[str], None]]:
    """Sets the test Redis's maxmemory-policy; puts the previous one back (the server is shared)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    previous = client.config_get("maxmemory-policy")["maxmemory-policy"]
    yield lambda policy: client.config_set("maxmemory-policy", policy)
    client.config_set("maxmemory-policy", previous)
    client.close()


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random"])
def test_a_memory_policy_that_can_evict_linked_accounts_fails(
    good_env: dict[str, str], memory_policy: Callable[[str], None], capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    memory_policy(policy)

    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["Redis memory"]
    assert status == "FAIL" and f"maxmemory-policy {policy} can evict any key, linked accounts included" in text
    assert text.endswith("-> fix: set maxmemory-policy noeviction (or volatile-lru) and give Redis enough maxmemory")


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-ttl", "noeviction"])
def test_memory_policies_that_spare_keys_without_a_ttl_pass(
    good_env: dict[str, str], memory_policy: Callable[[str], None], capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    memory_policy(policy)
    code, checks = doctor(capsys)
    assert code == 0, checks
    assert checks["Redis memory"][0] == "ok" and f"maxmemory-policy {policy}," in checks["Redis memory"][1]


@pytest.fixture
def restricted_user(
    good_env: dict[str, str], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., None]]:
    """Points the doctor at Redis as an ACL user refused the given commands, as managed Redis refuses CONFIG."""
    import redis

    admin = redis.Redis.from_url(redis_url)

    def restrict(*refused: str) -> None:
        admin.acl_setuser("doctor", enabled=True, passwords=["+doctor-password"], keys=["*"],
                          commands=["+@all", *(f"-{command}" for command in refused)], reset=True)
        monkeypatch.setenv("QBOT_REDIS_URL", redis_url.replace("redis://", "redis://doctor:doctor-password@", 1))

    yield restrict
    admin.acl_deluser("doctor")
    admin.close()


def test_without_config_the_policy_is_read_from_info(
    restricted_user: Callable[..., None], memory_policy: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    restricted_user("config")
    memory_policy("allkeys-lru")

    code, checks = doctor(capsys)

    assert code == 1 and checks["Redis memory"][0] == "FAIL" and "allkeys-lru" in checks["Redis memory"][1]


def test_a_redis_that_refuses_config_and_info_is_a_warning_that_says_so(
    restricted_user: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    restricted_user("config", "info")

    code, checks = doctor(capsys)

    status, text = checks["Redis memory"]
    assert status == "warn" and "the eviction policy cannot be read here" in text
    assert "make sure it is noeviction or volatile-*" in text
    assert checks["Redis"][0] == "ok" and code == 0, checks


def test_channels_with_a_policy_are_listed(good_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["slack:C0GENERAL", "--reply", "thread"],
                 ["teams:19:general@thread.tacv2", "--chat-mode", "RETRIEVAL_MODE", "--attribute-filter",
                  '{"equalsTo": {"name": "_data_source_id", "value": {"stringValue": "ds-wiki"}}}']):
        assert main(["admin", "channels", "set", *argv]) == 0
    capsys.readouterr()

    code, checks = doctor(capsys)

    assert code == 0, checks
    assert checks["channel policies"] == ("ok", "2 channel(s) with a policy: slack:C0GENERAL (reply thread); "
                                          "teams:19:general@thread.tacv2 (reply default, RETRIEVAL_MODE, attribute "
                                          "filter)")


def test_many_channels_are_summarised_with_a_pointer_to_the_full_list(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import redis

    with redis.Redis.from_url(good_env["QBOT_REDIS_URL"]) as client:
        client.hset("qbot:channels", mapping={f"slack:C{n:02d}": '{"reply": "thread"}' for n in range(12)})

    code, checks = doctor(capsys)

    assert code == 0
    status, text = checks["channel policies"]
    assert status == "ok" and text.startswith("12 channel(s) with a policy: slack:C00 (reply thread); ")
    assert "slack:C09 (reply thread); and 2 more (qbot admin channels list)" in text and "C10" not in text


UNPARSEABLE_POLICIES = [
    ('{"reply": "ephemeral"}', "reply must be thread or private"),
    ('{"attribute_filter": {"equalTo": {}}}', "not a Q Business AttributeFilter"),  # written by hand, or an old qbot
]


@pytest.mark.parametrize(("raw", "problem"), UNPARSEABLE_POLICIES, ids=[p for _, p in UNPARSEABLE_POLICIES])
def test_a_stored_channel_policy_that_does_not_parse_fails_the_doctor(
    good_env: dict[str, str], capsys: pytest.CaptureFixture[str], raw: str, problem: str
) -> None:
    import redis

    with redis.Redis.from_url(good_env["QBOT_REDIS_URL"]) as client:
        client.hset("qbot:channels", mapping={"slack:C0GENERAL": '{"reply": "thread"}', "slack:C0RANDOM": raw})

    code, checks = doctor(capsys)

    assert code == 1
    status, text = checks["channel policies"]
    assert status == "FAIL"
    assert text.startswith("1 of 2 stored channel policies do not parse; questions in those channels fail. First: "
                           "the stored policy of slack:C0RANDOM")
    assert problem in text
    assert text.endswith("-> fix: qbot admin channels unset slack:C0RANDOM, then set it again")
    assert {name for name, (s, _) in checks.items() if s == "FAIL"} == {"channel policies"}
