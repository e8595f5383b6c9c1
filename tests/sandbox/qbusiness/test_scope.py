"""What narrows a turn: attributeFilter applied to the documents' attributes, chatMode, and both refused like AWS."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sandbox.qbusiness.corpus import CorpusError, parse_document
from sandbox.qbusiness.filters import matches
from tests.sandbox.qbusiness.endpoint import APP_ID, AURORA, REGION, ROADMAP_URL, QEndpoint, ask, cited_urls, refusal

QUESTION = "What requires director approval?"
PRICING = "https://intranet.example.com/strategy/pricing-2026"  # confluence, strategy, sales
TRAVEL = "https://intranet.example.com/finance/travel"  # sharepoint, policy, finance, by Omar Haddad
REMOTE = "https://intranet.example.com/people/remote-work"  # sharepoint, policy, hr, by Dana Lee
ALICE = "alice@example.com"


def source_is(data_source: str) -> dict[str, Any]:
    return {"equalsTo": {"name": "_data_source_id", "value": {"stringValue": data_source}}}


def raw_chat(qb: QEndpoint, body: dict[str, Any], email: str = ALICE) -> tuple[int, str, dict[str, Any]]:
    """A ChatSync signed like boto3 signs it, with a body no botocore client would send."""
    arn = f"arn:aws:sts::123456789012:assumed-role/qbot-sandbox-user/{email.split('@')[0]}"
    issued = qb.registry.mint_session(arn, timedelta(hours=1), {"Email": email})
    payload = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=f"{qb.url}/applications/{APP_ID}/conversations?sync",
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(
        Credentials(issued.access_key_id, issued.secret_access_key, issued.session_token), "qbusiness", REGION
    ).add_auth(request)
    prepared = request.prepare()
    sent = urllib.request.Request(prepared.url, data=payload, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(sent, timeout=10) as response:
            return response.status, "", json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-amzn-ErrorType", ""), json.loads(error.read())


@pytest.mark.parametrize(
    ("attribute_filter", "cited"),
    [
        (source_is("confluence"), {PRICING}),
        (source_is("sharepoint"), {TRAVEL, REMOTE}),
        ({"notFilter": source_is("confluence")}, {TRAVEL, REMOTE}),
        ({"containsAny": {"name": "_data_source_id", "value": {"stringListValue": ["confluence", "jira"]}}}, {PRICING}),
        (
            {
                "andAllFilters": [
                    source_is("sharepoint"),
                    {"equalsTo": {"name": "department", "value": {"stringValue": "hr"}}},
                ]
            },
            {REMOTE},
        ),
        (
            {
                "orAllFilters": [
                    source_is("confluence"),
                    {"containsAll": {"name": "_authors", "value": {"stringListValue": ["Omar Haddad"]}}},
                ]
            },
            {PRICING, TRAVEL},
        ),
        ({"equalsTo": {"name": "_authors", "value": {"stringListValue": ["Dana Lee"]}}}, {REMOTE}),
        (
            {"greaterThan": {"name": "_last_updated_at", "value": {"dateValue": datetime(2025, 10, 1, tzinfo=UTC)}}},
            {PRICING, TRAVEL},
        ),
        (source_is("Confluence"), set()),  # values compare exactly, as Q's do
        ({"equalsTo": {"name": "region", "value": {"stringValue": "emea"}}}, set()),  # no such attribute: no match
    ],
)
def test_only_documents_passing_the_filter_are_cited(
    qb: QEndpoint, attribute_filter: dict[str, Any], cited: set[str]
) -> None:
    alice = qb.user(ALICE)
    assert cited_urls(ask(alice, QUESTION)) == {PRICING, TRAVEL, REMOTE}
    assert cited_urls(ask(alice, QUESTION, attributeFilter=attribute_filter)) == cited


def test_a_filter_narrows_what_the_asker_may_read_and_never_widens_it(qb: QEndpoint) -> None:
    assert ROADMAP_URL in cited_urls(ask(qb.user(ALICE), AURORA, attributeFilter=source_is("confluence")))
    bob = ask(qb.user("bob@example.com"), AURORA, attributeFilter=source_is("confluence"))
    assert bob["sourceAttributions"] == [] and "Aurora" not in bob["systemMessage"]


@pytest.mark.parametrize(
    ("attribute_filter", "says"),
    [
        ({"equalTo": source_is("x")["equalsTo"]}, 'Unknown parameter in attributeFilter: "equalTo"'),
        (
            {"equalsTo": {"name": "_category", "value": {"stringValue": 5}}},
            "Invalid type for parameter attributeFilter.equalsTo.value.stringValue",
        ),
        ({"equalsTo": {"name": "_category", "value": {"stringValue": "a", "longValue": 1}}}, "tagged union"),
        ({"equalsTo": {"name": "_category", "value": {"boolValue": True}}}, "Unknown parameter in attributeFilter"),
        ({"equalsTo": {"name": "bad name", "value": {"stringValue": "a"}}}, "regular expression pattern"),
        (
            {"containsAny": {"name": "_data_source_id", "value": {"stringValue": "confluence"}}},
            "attributeFilter.containsAny supports only stringListValue",
        ),
        ({"greaterThan": {"name": "_category", "value": {"stringValue": "a"}}}, "longValue or dateValue"),
        (
            {"notFilter": {"containsAll": {"name": "_authors", "value": {"stringValue": "Dana Lee"}}}},
            "attributeFilter.notFilter.containsAll supports only stringListValue",
        ),
        ({**source_is("confluence"), "notFilter": source_is("sharepoint")}, "must set exactly one of"),
        ({}, "must set exactly one of"),
        ({"andAllFilters": []}, "andAllFilters must list at least one filter"),
        ({"orAllFilters": [{}]}, "attributeFilter.orAllFilters.1.member must set exactly one of"),
    ],
)
def test_a_malformed_filter_is_refused_and_changes_nothing(
    qb: QEndpoint, attribute_filter: dict[str, Any], says: str
) -> None:
    status, code, body = raw_chat(qb, {"userMessage": QUESTION, "attributeFilter": attribute_filter})
    assert (status, code) == (400, "ValidationException")
    assert says in body["message"]
    assert any(field["name"].startswith("attributeFilter") for field in body["fields"])
    assert qb.q.conversations.of(APP_ID, ALICE) == []


def test_an_unknown_chat_mode_passes_botocore_and_is_refused_by_q(qb: QEndpoint) -> None:
    refused = refusal(qb.user(ALICE).chat_sync, applicationId=APP_ID, userMessage=QUESTION, chatMode="EXPERT_MODE")
    assert refused["Error"]["Code"] == "ValidationException"
    assert (
        "Value 'EXPERT_MODE' at 'chatMode' failed to satisfy constraint: Member must satisfy enum value set: "
        "[RETRIEVAL_MODE, CREATOR_MODE, PLUGIN_MODE]" in refused["Error"]["Message"]
    )
    assert qb.q.conversations.of(APP_ID, ALICE) == []


def test_chat_mode_configuration_goes_only_with_a_plugin(qb: QEndpoint) -> None:
    user = qb.user(ALICE)
    plugin = {"pluginConfiguration": {"pluginId": "0c1d7a52-3f4e-4b8a-9d61-2e5f8c9b0a17"}}
    without = refusal(user.chat_sync, applicationId=APP_ID, userMessage=QUESTION, chatMode="PLUGIN_MODE")
    assert without["Error"]["Code"] == "ValidationException" and "pluginId is required" in without["Error"]["Message"]
    unknown = refusal(
        user.chat_sync, applicationId=APP_ID, userMessage=QUESTION, chatMode="PLUGIN_MODE", chatModeConfiguration=plugin
    )
    assert unknown["Error"]["Code"] == "ResourceNotFoundException"
    misplaced = refusal(
        user.chat_sync,
        applicationId=APP_ID,
        userMessage=QUESTION,
        chatMode="RETRIEVAL_MODE",
        chatModeConfiguration=plugin,
    )
    assert "only valid with chatMode PLUGIN_MODE" in misplaced["Error"]["Message"]
    status, code, body = raw_chat(
        qb,
        {
            "userMessage": QUESTION,
            "chatMode": "PLUGIN_MODE",
            "chatModeConfiguration": {"pluginConfig": plugin["pluginConfiguration"]},
        },
    )
    assert (status, code) == (400, "ValidationException") and "Unknown parameter" in body["message"]
    assert qb.q.conversations.of(APP_ID, ALICE) == []


def test_creator_mode_answers_without_the_index(qb: QEndpoint) -> None:
    alice = qb.user(ALICE)
    creator = ask(alice, AURORA, chatMode="CREATOR_MODE")
    assert creator["sourceAttributions"] == []
    assert creator["systemMessage"].startswith("From general knowledge, without your company's documents")
    assert "launches" not in creator["systemMessage"]
    assert ROADMAP_URL in cited_urls(ask(alice, AURORA, chatMode="RETRIEVAL_MODE"))


def test_creator_mode_answers_from_the_attached_files(qb: QEndpoint) -> None:
    note = b"The Zephyr badge printer on floor 3 needs a blue card to print visitor badges."
    answer = ask(
        qb.user(ALICE),
        "Which card does the Zephyr badge printer need?",
        chatMode="CREATOR_MODE",
        attachments=[{"name": "zephyr.txt", "data": note}],
    )
    assert [source["title"] for source in answer["sourceAttributions"]] == ["zephyr.txt"]
    assert "blue card" in answer["systemMessage"]


def test_a_document_must_name_its_data_source() -> None:
    text = "---\ntitle: Memo\naccess: public\n_category: memo\n_authors: [A, B]\n_view_count: 42\n---\nBody."
    with pytest.raises(CorpusError, match="_data_source_id"):
        parse_document("memo", text)
    document = parse_document("memo", text.replace("_category", "_data_source_id: wiki\n_category"))
    assert document.attributes["_authors"] == ("A", "B")
    assert document.attributes["_view_count"] == 42
    assert document.attributes["_data_source_id"] == "wiki" and document.attributes["_document_title"] == "Memo"
    assert "_source_uri" not in document.attributes  # no url, no derived _source_uri


def test_longs_and_dates_compare_only_with_their_own_kind() -> None:
    attributes: dict[str, Any] = {"_view_count": 42, "_last_updated_at": datetime(2025, 1, 1, tzinfo=UTC)}
    assert matches({"greaterThanOrEquals": {"name": "_view_count", "value": {"longValue": 42}}}, attributes)
    assert not matches({"lessThan": {"name": "_view_count", "value": {"longValue": 42}}}, attributes)
    assert matches({"lessThanOrEquals": {"name": "_view_count", "value": {"longValue": 42}}}, attributes)
    assert not matches(
        {"greaterThan": {"name": "_view_count", "value": {"dateValue": datetime(2020, 1, 1, tzinfo=UTC)}}}, attributes
    )
    assert not matches({"equalsTo": {"name": "_view_count", "value": {"stringValue": "42"}}}, attributes)
    assert matches(
        {"lessThan": {"name": "_last_updated_at", "value": {"dateValue": datetime(2026, 1, 1, tzinfo=UTC)}}}, attributes
    )
