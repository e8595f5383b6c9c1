"""Teams' own AI surfaces: an informative update while Q works in personal chat (the Agents SDK's streaming
response, ended by the answer itself), typing elsewhere, the answer never lost to a refused stream; prompt
starters in the manifest; and the Bot Framework stand-in holding streaming to Teams' protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.teams.agent import INFORMING
from sandbox.botframework import Call, FakeBotFramework, stream_info
from tests.adapters.teams.conftest import ALICE, GROUP_CHAT, TeamsBot

AURORA = "What is Project Aurora?"
COMMANDS = {"qlink", "qstatus", "qnew", "qunlink", "help"}


def replies_to(bf: FakeBotFramework, activity_id: str) -> list[Call]:
    return [c for c in bf.calls if c.kind == "reply" and c.activity_id == activity_id]


def test_personal_chat_shows_an_informative_update_then_the_answer_ends_the_stream(teams: TeamsBot) -> None:
    bf = teams.bf
    teams.linked(ALICE)
    question = teams.message(ALICE, AURORA)
    answer = teams.answer(question)
    assert "Aurora" in json.dumps(answer.cards)

    informative, *others = [c for c in replies_to(bf, question["id"]) if c.type == "typing"]
    info = stream_info(informative.body)
    assert info is not None and (info["streamType"], info["streamSequence"]) == ("informative", 1)
    assert informative.text == INFORMING
    assert others == []  # no typing loop beside the progress bar
    final = stream_info(answer.body)
    assert final is not None and final["streamType"] == "final" and final["streamId"] == informative.response_id
    stream = bf.streams[informative.response_id]
    assert stream.informative == [INFORMING] and stream.final is answer
    assert bf.calls.index(informative) < bf.calls.index(answer) and not bf.refused

    follow_up = teams.message(ALICE, "When does it launch?")  # each question has its own stream
    second = stream_info(teams.answer(follow_up).body)
    assert second is not None and second["streamId"] not in ("", informative.response_id)


def test_a_group_chat_gets_typing_and_no_stream(teams: TeamsBot) -> None:
    bf = teams.bf
    teams.linked(ALICE)
    question = teams.message(ALICE, AURORA, scope="groupChat", mention=True)
    teams.answer(question)
    typing = [c for c in replies_to(bf, question["id"]) if c.type == "typing"]
    assert typing and all(stream_info(c.body) is None for c in typing)
    assert bf.streams == {} and not bf.refused


@pytest.mark.parametrize("ending", ["stopped by the user", "timed out"])
def test_a_stream_teams_will_not_end_with_the_answer_still_gets_the_answer(teams: TeamsBot, ending: str) -> None:
    bf = teams.bf
    teams.linked(ALICE)
    teams.sandbox.q.faults.delay_seconds = 1.0
    if ending == "timed out":
        bf.stream_seconds = 0.0
    question = teams.message(ALICE, AURORA)
    assert teams.post(question).status_code == 202
    bf.wait_for(lambda calls: [c for c in calls if c.type == "typing" and stream_info(c.body)])
    if ending == "stopped by the user":
        bf.stop_streams()
    answer = bf.wait_for(lambda calls: next((c for c in calls if c.cards and c.activity_id == question["id"]), None))
    assert "Aurora" in json.dumps(answer.cards) and stream_info(answer.body) is None  # sent plainly
    [refused] = bf.refused  # the answer as the stream's end, turned down; shown once, plainly
    assert stream_info(refused.body) == {**stream_info(refused.body), "streamType": "final"}  # type: ignore[dict-item]
    assert len([c for c in bf.calls if c.cards and c.activity_id == question["id"]]) == 1


def test_the_manifest_offers_prompt_starters_in_personal_chat() -> None:
    manifest = json.loads((Path(__file__).parents[3] / "manifests" / "teams" / "manifest.json").read_text())
    [personal] = [c for c in manifest["bots"][0]["commandLists"] if c["scopes"] == ["personal"]]
    prompts = [c["title"] for c in personal["commands"] if c["title"] not in COMMANDS]
    assert len(prompts) >= 3 and all(p.endswith("?") or p[0].isupper() for p in prompts)
    assert {c["title"] for c in personal["commands"]} >= COMMANDS  # the commands stay


def _post(bf: FakeBotFramework, conversation: str, activity: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{bf.url}/v3/conversations/{conversation}/activities", json=activity)


def _entity(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": "streaminfo", "streamType": kind, **fields}


def _chunk(text: str, sequence: int, stream_id: str) -> dict[str, Any]:
    entity = _entity("streaming", streamSequence=sequence, streamId=stream_id)
    return {"type": "typing", "text": text, "entities": [entity]}


def test_the_stand_in_holds_streaming_to_teams_protocol(bot_framework: FakeBotFramework) -> None:
    bf, chat = bot_framework, ALICE.personal_chat
    update = {"type": "typing", "text": "Looking…", "entities": [_entity("informative", streamSequence=1)]}
    refused = _post(bf, GROUP_CHAT, update)
    assert refused.status_code == 400 and "Streaming API is not enabled" in refused.text
    assert _post(bf, chat, {**update, "text": "x" * 1001}).status_code == 400
    assert _post(bf, chat, {**update, "type": "message"}).status_code == 400
    started = _post(bf, chat, update)
    assert started.status_code == 201
    stream_id = started.json()["id"]
    again = {**update, "entities": [_entity("informative", streamSequence=1, streamId=stream_id)]}
    assert "ContentStreamSequenceOrderPreConditionFailed" in _post(bf, chat, again).text
    assert _post(bf, chat, _chunk("Aurora is", 2, stream_id)).status_code == 201
    assert "ContentStreamNotAllowed" in _post(bf, chat, _chunk("Zephyr", 3, stream_id)).text  # not what was streamed
    numbered = {"type": "message", "text": "Aurora is a project.",
                "entities": [_entity("final", streamSequence=4, streamId=stream_id)]}
    assert _post(bf, chat, numbered).status_code == 400
    elsewhere = {**numbered, "entities": [_entity("final", streamId=stream_id)]}
    assert _post(bf, "a:personal-29:bob", elsewhere).status_code == 404
    assert _post(bf, chat, elsewhere).status_code == 201
    assert "ContentStreamNotAllowed" in _post(bf, chat, _chunk("Aurora is", 5, stream_id)).text  # ended
    stream = bf.streams[stream_id]
    assert stream.informative == ["Looking…"] and stream.streamed == "Aurora is"
    assert stream.final is not None and stream.final.text == "Aurora is a project."
