"""Records (ToolCall, ToolResult, Step, Episode, Task): JSON round trip, versions, public API."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from helpers import make_scenario
from hypothesis import given, settings
from hypothesis import strategies as st

import simenv
from simenv import Episode, Step, Task, ToolCall, ToolResult
from simenv.rollouts.policies import Oracle, Random
from simenv.types import EPISODE_SCHEMA_VERSION


def _episode(**changes: Any) -> Episode:
    call = ToolCall("c1", "ship", {"order_id": "O-1", "note": "é ✓"})
    bad = ToolCall("c2", "", {}, "the tool call is not valid JSON")
    ok = ToolResult("c1", "ship", '{"shipped": true}', False, "sandbox", 0.001)
    err = ToolResult("c2", "", "Error: the tool call is not valid JSON", True, "error", 0.0)
    action = {"role": "assistant", "content": "", "tool_calls": [call.to_openai()]}
    fields: dict[str, Any] = {
        "scenario_id": "a/B-v3",
        "task_id": "t1",
        "seed": 3,
        "messages": (
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi\nthere"},
            action,
            ok.to_message(),
        ),
        "steps": (
            Step(1, action, (call, bad), (ok, err)),
            Step(2, {"role": "assistant", "content": "done"}, reward=1.5, terminated=True),
        ),
        "reward": 1.5,
        "reward_components": {"correct": 1.0, "style": 0.5},
        "evaluation": 1.0,
        "termination": "answer",
        "episode_id": "abc",
        "scenario_version": 3,
        "policy": {"name": "oracle"},
        "metadata": {"turns": [{"tokens": [1, 2, 3]}], "nested": {"x": None}},
    }
    fields.update(changes)
    return Episode(**fields)


def test_tool_call_renders_as_an_openai_entry_and_result_as_a_tool_message() -> None:
    call = ToolCall("c7", "lookup", {"id": "O-7", "n": [1, 2]})
    entry = call.to_openai()
    assert entry == {
        "id": "c7",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"id": "O-7", "n": [1, 2]}'},
    }
    assert json.loads(entry["function"]["arguments"]) == call.arguments
    message = ToolResult("c7", "lookup", "found", provenance="replay").to_message()
    assert message == {"role": "tool", "tool_call_id": "c7", "name": "lookup", "content": "found"}


def test_step_round_trips_through_a_dict() -> None:
    step = _episode().steps[0]
    d = step.to_dict()
    assert Step.from_dict(d) == step
    assert Step.from_dict(json.loads(json.dumps(d))) == step
    assert Step.from_dict({"turn": 4, "action": {"role": "assistant", "content": "x"}}) == Step(
        4, {"role": "assistant", "content": "x"}
    )


def test_episode_json_round_trip_is_exact_and_one_line() -> None:
    episode = _episode()
    line = episode.to_json()
    assert "\n" not in line and "é ✓" in line  # unicode kept readable, newlines escaped
    again = Episode.from_json(line)
    assert again == episode
    assert again.to_json() == line
    assert isinstance(again.steps[0].tool_calls[0], ToolCall)
    assert isinstance(again.messages, tuple) and isinstance(again.steps, tuple)
    assert json.loads(line)["reward"] == 1.5 and json.loads(line)["schema_version"] == 1


def _writable(line: str) -> Episode:
    """The line as a JSONL store writes and reads it back: UTF-8 bytes, one line."""
    assert "\n" not in line
    return Episode.from_json(line.encode("utf-8").decode("utf-8"))


def test_text_that_cannot_be_utf8_is_written_replaced_and_counted() -> None:
    # A lone surrogate (what the JSON escape "\ud83d" decodes to) and a file name decoded with
    # surrogateescape (bytes that are not UTF-8), in a message, a call, a key and a result.
    name = b"r\xe9sum\xe9.txt".decode("utf-8", "surrogateescape")
    call = ToolCall("c1", "lookup", {"order_id": "\ud83d", "\udc80": 1})
    result = ToolResult("c1", "lookup", f"Error: no order '\ud83d'; files: {name}", True)
    action = {"role": "assistant", "content": "x\udfff", "tool_calls": [call.to_openai()]}
    episode = _episode(
        messages=({"role": "user", "content": "hi"}, action, result.to_message()),
        steps=(Step(1, action, (call,), (result,), reward=1.5, terminated=True),),
        metadata={"turns": 1, "sanitized": 2},
    )
    again = _writable(episode.to_json())
    assert again.steps[0].tool_calls[0].arguments == {"order_id": "\ufffd", "\ufffd": 1}
    content = again.steps[0].tool_results[0].content
    assert content == "Error: no order '\ufffd'; files: r\ufffdsum\ufffd.txt"
    assert again.messages[1]["content"] == "x\ufffd" == again.steps[0].action["content"]
    # 6 strings repaired here (content twice, the call's value and key, the result twice), added
    # to the 2 the environment counted; everything else is kept as it was.
    assert again.metadata == {"turns": 1, "sanitized": 2 + 6}
    assert (again.reward, again.episode_id, again.reward_components) == (
        1.5,
        "abc",
        episode.reward_components,
    )
    assert again.to_json() == _writable(again.to_json()).to_json()  # repaired once for all


def test_values_json_cannot_hold_are_written_as_notes() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(900):
        deep = {"a": deep}
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    episode = _episode(
        metadata={"deep": deep, "cyclic": cyclic, "obj": object(), "big": 10**5000, "ok": [1]}
    )
    again = _writable(episode.to_json())
    meta = again.metadata
    assert meta["ok"] == [1] and meta["big"] == "(an integer of 16610 bits)"
    assert meta["obj"].startswith("<object object at")
    assert "nested more than 100 levels deep" in json.dumps(meta["deep"])
    assert "nested more than 100 levels deep" in json.dumps(meta["cyclic"])
    assert meta["sanitized"] == 4
    assert again.steps == episode.steps and again.messages == episode.messages


def test_a_clean_episode_is_written_as_it_is_without_a_note() -> None:
    episode = _episode(metadata={"note": "caf\u00e9 \U0001f600 \u4e2d"})
    line = episode.to_json()
    assert Episode.from_json(line) == episode and "sanitized" not in line
    assert line == json.dumps(episode.to_dict(), ensure_ascii=False, separators=(",", ":"))


def test_episode_properties() -> None:
    episode = _episode()
    assert episode.turns == 2
    assert episode.tool_errors == 1
    assert episode.success
    assert not _episode(evaluation=0.5).success
    assert not _episode(evaluation=None).success


def test_records_of_a_newer_schema_are_refused_and_older_ones_read() -> None:
    record = _episode().to_dict()
    newer = {**record, "schema_version": EPISODE_SCHEMA_VERSION + 1}
    with pytest.raises(ValueError, match=r"schema_version 2, newer .* upgrade simenv"):
        Episode.from_dict(newer)
    with pytest.raises(ValueError, match="newer"):
        Episode.from_json(json.dumps(newer))
    unversioned = {k: v for k, v in record.items() if k != "schema_version"}
    assert Episode.from_dict(unversioned) == _episode()
    assert Episode.from_dict({**record, "schema_version": 0}).schema_version == 0


def test_the_group_is_a_field_and_old_records_get_it_from_the_runners_task_index() -> None:
    grouped = _episode(group=3)
    assert Episode.from_json(grouped.to_json()).group == 3
    assert json.loads(_episode().to_json())["group"] is None  # played on its own
    old = {k: v for k, v in _episode().to_dict().items() if k != "group"}
    job = {"key": "t1#0@7", "task_index": 4, "sample": 0}
    assert Episode.from_dict({**old, "metadata": {"job": job}}).group == 4
    assert Episode.from_dict(old).group is None  # no runner record: no group
    bad = {**job, "task_index": "4"}
    assert Episode.from_dict({**old, "metadata": {"job": bad}}).group is None
    # a record that has the field keeps it, whatever its metadata says
    assert Episode.from_dict({**old, "group": None, "metadata": {"job": job}}).group is None


def test_task_and_episode_are_frozen() -> None:
    task = Task("t", "prompt")
    assert task.split == "train" and task.data == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.prompt = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        _episode().reward = 2.0  # type: ignore[misc]


def test_episodes_from_real_rollouts_round_trip() -> None:
    env = simenv.make(make_scenario())
    try:
        for policy, seed in [(Oracle(), 1), (Random(seed=4, p_junk=0.5), 2), (Random(seed=5), 3)]:
            episode = simenv.rollout(env, policy, seed=seed)
            assert Episode.from_json(episode.to_json()) == episode
    finally:
        env.close()


json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant", "tool"]),
        "content": st.text(max_size=50),
    },
    optional={"tool_call_id": st.text(max_size=8), "extra": json_values},
)


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(messages, max_size=5),
    arguments=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    metadata=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    reward=st.floats(allow_nan=False, allow_infinity=False),
    seed=st.integers(min_value=0, max_value=2**63),
)
def test_any_json_content_round_trips(
    messages: list[dict[str, Any]],
    arguments: dict[str, Any],
    metadata: dict[str, Any],
    reward: float,
    seed: int,
) -> None:
    call = ToolCall("c", "name", arguments)
    step = Step(1, {"role": "assistant", "content": "x"}, (call,), (ToolResult("c", "name", "r"),))
    episode = _episode(
        messages=tuple(messages), steps=(step,), metadata=metadata, reward=reward, seed=seed
    )
    assert Episode.from_json(episode.to_json()) == episode


def test_public_api_is_pinned() -> None:
    assert sorted(simenv.__all__) == sorted(
        [
            "Episode",
            "Example",
            "InfraError",
            "Message",
            "MultiTurnEnv",
            "Outcome",
            "RegistrationError",
            "ResetNeeded",
            "Sandbox",
            "Scenario",
            "ScenarioError",
            "SimenvError",
            "Step",
            "Task",
            "Tool",
            "ToolArgumentError",
            "ToolCall",
            "ToolError",
            "ToolResult",
            "__version__",
            "load_scenario",
            "make",
            "register",
            "registry",
            "rollout",
            "spec",
            "tool",
        ]
    )
    for name in simenv.__all__:
        assert hasattr(simenv, name), name


def test_error_tree() -> None:
    assert issubclass(simenv.ToolArgumentError, simenv.ToolError)
    for error in (
        simenv.ToolError,
        simenv.InfraError,
        simenv.ScenarioError,
        simenv.RegistrationError,
        simenv.ResetNeeded,
    ):
        assert issubclass(error, simenv.SimenvError)
    assert issubclass(simenv.ResetNeeded, RuntimeError)
    assert not issubclass(simenv.InfraError, simenv.ToolError)
