"""Channel policies against a real Redis: what one replica stores, another reads at once; nothing invalid is ever
stored; a stored value that does not parse is reported, never read as "no policy"."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.channel_policy import KEY, ChannelPolicies, ChannelPolicy, ChannelPolicyError, parse_channel

SLACK = ("slack", "C0GENERAL")
TEAMS = ("teams", "19:general@thread.tacv2")
ONE_SOURCE = {"equalsTo": {"name": "_data_source_id", "value": {"stringValue": "ds-wiki"}}}


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two Redis clients: two bot processes (or the CLI and a bot) sharing the deployment's Redis."""
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    yield first, second
    await first.aclose()
    await second.aclose()


@pytest.fixture
def redis(replicas: tuple[Redis, Redis]) -> Redis:
    return replicas[0]


async def test_a_change_through_one_replica_is_seen_by_the_other_at_once(replicas: tuple[Redis, Redis]) -> None:
    one, other = ChannelPolicies(replicas[0]), ChannelPolicies(replicas[1])
    assert await other.get(*SLACK) is None

    await one.set(*SLACK, ChannelPolicy(reply="thread"))
    assert await other.get(*SLACK) == ChannelPolicy(reply="thread")

    await other.set(*SLACK, ChannelPolicy(reply="private", chat_mode="RETRIEVAL_MODE"))
    assert await one.get(*SLACK) == ChannelPolicy(reply="private", chat_mode="RETRIEVAL_MODE")

    assert await one.unset(*SLACK) is True
    assert await other.get(*SLACK) is None
    assert await other.unset(*SLACK) is False


async def test_all_lists_every_channel_by_platform_and_channel_id(replicas: tuple[Redis, Redis]) -> None:
    await ChannelPolicies(replicas[0]).set(*SLACK, ChannelPolicy(reply="thread"))
    await ChannelPolicies(replicas[1]).set(*TEAMS, ChannelPolicy(attribute_filter=ONE_SOURCE, chat_mode="CREATOR_MODE"))

    assert await ChannelPolicies(replicas[0]).all() == {
        "slack:C0GENERAL": ChannelPolicy(reply="thread"),
        "teams:19:general@thread.tacv2": ChannelPolicy(attribute_filter=ONE_SOURCE, chat_mode="CREATOR_MODE"),
    }
    assert [parse_channel(spec) for spec in await ChannelPolicies(replicas[1]).all()] == [SLACK, TEAMS]


async def test_the_stored_form_is_one_hash_with_percent_encoded_channels(redis: Redis) -> None:
    """The README documents this key; a Teams id's own ':' is encoded, so the first ':' separates the platform."""
    await ChannelPolicies(redis).set(*TEAMS, ChannelPolicy(reply="thread", attribute_filter=ONE_SOURCE))

    stored = await redis.hgetall(KEY)
    assert KEY == "qbot:channels"
    assert list(stored) == [b"teams:19%3Ageneral%40thread.tacv2"]
    assert json.loads(stored[b"teams:19%3Ageneral%40thread.tacv2"]) == {
        "reply": "thread", "attribute_filter": ONE_SOURCE,
    }


async def test_a_policy_with_nothing_set_is_no_policy(redis: Redis) -> None:
    policies = ChannelPolicies(redis)
    await policies.set(*SLACK, ChannelPolicy(reply="thread"))
    await policies.set(*SLACK, ChannelPolicy())
    assert await redis.hlen(KEY) == 0
    assert await policies.get(*SLACK) is None


INVALID_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"reply": "ephemeral"}, "reply must be thread or private"),
    ({"chat_mode": "EXPERT_MODE"}, "chat mode must be RETRIEVAL_MODE or CREATOR_MODE or PLUGIN_MODE"),
    ({"chat_mode": "PLUGIN_MODE"}, "PLUGIN_MODE needs the plugin to ask"),
    ({"attribute_filter": [ONE_SOURCE]}, "must be a non-empty JSON object"),
    ({"attribute_filter": "equalsTo"}, "must be a non-empty JSON object"),
    ({"attribute_filter": {}}, "must be a non-empty JSON object"),
    ({"attribute_filter": {"orAllFilters": [ONE_SOURCE] * 200}}, "at most 8192 are kept"),
    ({"attribute_filter": {"equalsTo": {"name": "x", "value": {"stringValue": b"bytes"}}}}, "is not JSON"),
]


@pytest.mark.parametrize(("fields", "problem"), INVALID_POLICIES, ids=[p for _, p in INVALID_POLICIES])
def test_an_invalid_policy_cannot_be_made(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ChannelPolicyError, match=problem):
        ChannelPolicy(**fields)


async def test_a_filter_q_business_would_refuse_is_refused_and_nothing_is_stored(redis: Redis) -> None:
    """A typo (equalTo) would make every question in the channel fail; it is caught when it is set."""
    policies = ChannelPolicies(redis)
    typo = {"equalTo": {"name": "_data_source_id", "value": {"stringValue": "ds-wiki"}}}
    wrong_type = {"equalsTo": {"name": "_data_source_id", "value": {"stringValue": 7}}}
    for attribute_filter, problem in ((typo, 'Unknown parameter in input: "equalTo"'),
                                      (wrong_type, "equalsTo.value.stringValue")):
        with pytest.raises(ChannelPolicyError, match="not a Q Business AttributeFilter") as refused:
            await policies.set(*SLACK, ChannelPolicy(reply="thread", attribute_filter=attribute_filter))
        assert problem in str(refused.value)
    assert await redis.hlen(KEY) == 0


async def test_a_filter_breaking_qs_documented_rules_is_refused(redis: Redis) -> None:
    """Shapes botocore accepts but Q refuses: each would fail every question in the channel."""
    policies = ChannelPolicies(redis)
    source = {"name": "_data_source_id", "value": {"stringValue": "confluence"}}
    cases = [
        ({"equalsTo": source, "notFilter": {"equalsTo": source}}, "exactly one operator"),
        ({"andAllFilters": []}, "at least one filter"),
        ({"orAllFilters": [{"equalsTo": source, "containsAny": source}]}, "filter.orAllFilters[0] must set"),
        ({"containsAny": source}, "stringListValue"),
        ({"notFilter": {"greaterThan": source}}, "longValue or dateValue"),
    ]
    for attribute_filter, problem in cases:
        with pytest.raises(ChannelPolicyError) as refused:
            await policies.set(*SLACK, ChannelPolicy(attribute_filter=attribute_filter))
        assert problem in str(refused.value), attribute_filter
    fine = {"andAllFilters": [{"equalsTo": source}, {"containsAny": {
        "name": "_authors", "value": {"stringListValue": ["Dana Lee"]}}}]}
    await policies.set(*SLACK, ChannelPolicy(attribute_filter=fine))
    assert await redis.hlen(KEY) == 1


@pytest.mark.parametrize("channel", [("web", "console"), ("slack", "#general"), ("slack", "c0general"),
                                     ("Slack", "C0GENERAL"), ("teams", "19%3Ageneral%40thread.tacv2"),
                                     ("teams", "general")])
async def test_a_channel_that_is_not_a_canonical_id_is_refused(redis: Redis, channel: tuple[str, str]) -> None:
    with pytest.raises(ChannelPolicyError):
        await ChannelPolicies(redis).set(*channel, ChannelPolicy(reply="thread"))
    assert await redis.hlen(KEY) == 0


async def test_update_changes_only_the_fields_it_names(replicas: tuple[Redis, Redis]) -> None:
    one, other = ChannelPolicies(replicas[0]), ChannelPolicies(replicas[1])
    await one.set(*SLACK, ChannelPolicy(reply="thread", attribute_filter=ONE_SOURCE))

    assert await other.update(*SLACK, {"chat_mode": "RETRIEVAL_MODE"}) == ChannelPolicy(
        reply="thread", attribute_filter=ONE_SOURCE, chat_mode="RETRIEVAL_MODE")
    assert await one.update(*SLACK, {"reply": None, "attribute_filter": None}) == ChannelPolicy(
        chat_mode="RETRIEVAL_MODE")
    assert await one.get(*SLACK) == ChannelPolicy(chat_mode="RETRIEVAL_MODE")

    assert await other.update(*SLACK, {"chat_mode": None}) is None  # nothing left: no policy
    assert await replicas[0].hlen(KEY) == 0


async def test_a_refused_update_leaves_the_stored_policy_as_it_was(redis: Redis) -> None:
    policies = ChannelPolicies(redis)
    await policies.set(*SLACK, ChannelPolicy(reply="thread"))
    before = await redis.hgetall(KEY)
    changes: dict[str, Any]
    for changes in ({"reply": "ephemeral"}, {"attribute_filter": {"equalTo": {}}}, {"colour": "red"}):
        with pytest.raises(ChannelPolicyError):
            await policies.update(*SLACK, changes)
    assert await redis.hgetall(KEY) == before


async def test_concurrent_updates_of_different_fields_both_survive(replicas: tuple[Redis, Redis]) -> None:
    """Two administrators (or replicas) changing one channel at once: neither change is lost (WATCH/MULTI)."""
    one, other = ChannelPolicies(replicas[0]), ChannelPolicies(replicas[1])
    await asyncio.gather(
        one.update(*SLACK, {"reply": "thread"}),
        other.update(*SLACK, {"chat_mode": "RETRIEVAL_MODE"}),
        one.update(*SLACK, {"attribute_filter": ONE_SOURCE}),
    )
    assert await one.get(*SLACK) == ChannelPolicy(reply="thread", chat_mode="RETRIEVAL_MODE",
                                                  attribute_filter=ONE_SOURCE)


UNREADABLE = [
    (b"{not json", "not JSON"),
    (b'["thread"]', "not a JSON object"),
    (b'{"reply": "ephemeral"}', "reply must be thread or private"),
    (b'{"reply": "thread", "restrict_to": "ds-wiki"}', "unknown field(s) restrict_to"),
]


@pytest.mark.parametrize(("raw", "problem"), UNREADABLE, ids=[p for _, p in UNREADABLE])
async def test_a_stored_value_that_does_not_parse_is_an_error_not_no_policy(
    redis: Redis, raw: bytes, problem: str
) -> None:
    """Reading it as "no policy" would silently drop the channel's restriction (its filter, say)."""
    await redis.hset(KEY, "slack:C0GENERAL", raw)
    policies = ChannelPolicies(redis)

    with pytest.raises(ChannelPolicyError, match="stored policy of slack:C0GENERAL does not parse") as refused:
        await policies.get(*SLACK)
    assert problem in str(refused.value) and "qbot admin channels unset slack:C0GENERAL" in str(refused.value)
    with pytest.raises(ChannelPolicyError):
        await policies.all()
    with pytest.raises(ChannelPolicyError):
        await policies.update(*SLACK, {"chat_mode": "RETRIEVAL_MODE"})
    assert await redis.hget(KEY, "slack:C0GENERAL") == raw
    assert list(await policies.stored()) == ["slack:C0GENERAL"]
    assert await policies.unset(*SLACK) is True


VALID_SPECS = [
    ("slack:C0GENERAL", SLACK),
    ("slack:G01PRIVATE", ("slack", "G01PRIVATE")),
    (" Slack:C0GENERAL ", SLACK),
    ("teams:19:general@thread.tacv2", TEAMS),
    ("teams:19%3Ageneral%40thread.tacv2", TEAMS),  # as it appears in a Teams "Get link to channel" URL
    ("teams:19:meeting_abc@thread.v2", ("teams", "19:meeting_abc@thread.v2")),
]


@pytest.mark.parametrize(("spec", "parsed"), VALID_SPECS, ids=[s for s, _ in VALID_SPECS])
def test_parse_channel_reads_platform_and_id(spec: str, parsed: tuple[str, str]) -> None:
    assert parse_channel(spec) == parsed


INVALID_SPECS = [
    ("C0GENERAL", "is not PLATFORM:CHANNEL"),
    ("slack:", "is not PLATFORM:CHANNEL"),
    ("web:console", "the web console has no shared places"),
    ("discord:123", "unknown platform 'discord': expected slack or teams"),
    ("slack:#general", "'#general' is not a Slack channel id. Slack channel ids look like C0123ABCD"),
    ("slack:DU_ALICE", "is not a Slack channel id"),
    ("teams:General", "'General' is not a Teams channel id. Teams ids look like 19:…@thread.tacv2"),
    ("teams:19:general@thread.tacv2;messageid=1", "is not a Teams channel id"),
]


@pytest.mark.parametrize(("spec", "problem"), INVALID_SPECS, ids=[s for s, _ in INVALID_SPECS])
def test_parse_channel_refuses_with_what_a_valid_one_looks_like(spec: str, problem: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_channel(spec)
    assert problem in str(refused.value)
