"""A tool backend written against the ToolBackend protocol alone, played through a real env."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simenv
from simenv import InfraError, Outcome, Sandbox, Scenario, Task, ToolCall, ToolError, ToolResult
from simenv.parsing import format_tool_call
from simenv.rollouts.policies import Scripted
from simenv.tools.base import SchemaTool, ToolBackend
from simenv.tools.replay import Cassette


# ----------------------------------------------------------------------------- the test double
class Notes(Sandbox):
    """The episode's notes, which the service below reads and writes."""

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.notes: dict[str, str] = {}


class NotesService:
    """A stand-in for a remote notes API: ``put`` saves a note by key, ``get`` reads it back."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []

    def call(self, call: ToolCall, injected: Mapping[str, Any]) -> ToolResult:
        self.calls.append(call)
        notes: dict[str, str] = injected["notes"].notes
        key = call.arguments.get("key")
        if not isinstance(key, str):
            raise ToolError("'key' must be a string, e.g. \"groceries\"")
        if call.name == "put":
            notes[key] = str(call.arguments.get("text", ""))
            return ToolResult(call.id, call.name, json.dumps({"saved": key}), provenance="live")
        if key not in notes:
            raise ToolError(f"no note {key!r}; save it with put first")
        return ToolResult(call.id, call.name, notes[key], provenance="live")


def _schema(**properties: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": d} for name, d in properties.items()
        },
        "required": list(properties),
    }


SERVICE = NotesService()
PUT = SchemaTool(
    SERVICE,
    name="put",
    description="Save a note under a key.",
    parameters=_schema(key="The note's key.", text="The note."),
    effect="write",
    injected={"notes": Notes},
)
GET = SchemaTool(
    SERVICE,
    name="get",
    description="Read the note saved under a key.",
    parameters=_schema(key="The note's key."),
    injected={"notes": Notes},
)


def _saved(o: Outcome) -> bool:
    return bool(o.final.notes == {"milk": "two litres"})


SCENARIO = Scenario(
    id="test/Notes-v1",
    system_prompt="Keep notes.",
    tools=[PUT, GET],
    tasks=[Task("t0", "Note that we need two litres of milk, under 'milk'.")],
    reward=lambda o: float(_saved(o)),
    evaluate=_saved,
    sandbox=Notes,
    oracle=lambda task, state: [
        format_tool_call("put", {"key": "milk", "text": "two litres"}),
        "Saved.",
    ],
    random_state=False,
)


# ----------------------------------------------------------------------------- behaviour
def test_the_double_is_a_tool_backend_and_plays_through_a_real_env() -> None:
    assert isinstance(SERVICE, ToolBackend)
    SERVICE.calls.clear()
    turns = [
        format_tool_call("get", {"key": "milk"}),  # nothing saved yet: the agent reads why
        format_tool_call("put", {"key": "milk", "text": "two litres"}),
        format_tool_call("get", {"key": "milk"}),
        "Saved.",
    ]
    episode = simenv.rollout(simenv.make(SCENARIO), Scripted(turns), seed=3)
    assert episode.valid and episode.reward == 1.0 and episode.success
    results = [r for s in episode.steps for r in s.tool_results]
    assert [(r.name, r.is_error, r.provenance) for r in results] == [
        ("get", True, "live"),
        ("put", False, "live"),
        ("get", False, "live"),
    ]
    assert results[0].content == "Error: no note 'milk'; save it with put first"
    assert results[2].content == "two litres"
    assert all(r.latency_s > 0 for r in results)  # the env measures every call
    assert [c.name for c in SERVICE.calls] == ["get", "put", "get"]


def test_the_env_hands_the_backend_this_episodes_sandbox() -> None:
    env = simenv.make(SCENARIO)
    env.reset(seed=0)
    env.step(format_tool_call("put", {"key": "milk", "text": "two litres"}))
    first = env.unwrapped.state
    env.reset(seed=0)
    assert env.unwrapped.state is not first and env.unwrapped.state.notes == {}
    observation, _, _, _, _ = env.step(format_tool_call("get", {"key": "milk"}))
    assert observation[1]["content"].startswith("Error: no note 'milk'")  # a fresh sandbox
    assert first.notes == {"milk": "two litres"}


def test_a_direct_call_goes_to_the_backend() -> None:
    notes = Notes()
    notes.setup(np.random.default_rng(0), SCENARIO.tasks[0])
    result = PUT(key="k", text="v", notes=notes)
    assert result == ToolResult("direct", "put", '{"saved": "k"}', provenance="live")
    assert notes.notes == {"k": "v"}


class Faulty:
    """A backend that fails in one of the ways a backend can."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def call(self, call: ToolCall, injected: Mapping[str, Any]) -> ToolResult:
        if self.fault == "infra":
            raise InfraError("the notes service is down (HTTP 503); retry later")
        if self.fault == "bug":
            raise KeyError("shard")
        if self.fault == "wrong id":
            return ToolResult("call_99", call.name, "ok")
        return "ok"  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("infra", "the notes service is down"),
        ("bug", "raised KeyError: 'shard'. This is a bug in the tool"),
        ("wrong id", "a ToolBackend returns a ToolResult with the call's id"),
        ("not a result", "answered call 'call_1_0' with 'ok'"),
    ],
)
def test_a_failing_backend_voids_the_episode(fault: str, message: str) -> None:
    tool = SchemaTool(Faulty(fault), name="ping", parameters={"type": "object"})
    scenario = Scenario(
        id="test/Faulty-v1",
        system_prompt="Ping.",
        tools=[tool],
        tasks=[Task("t0", "Ping.")],
        reward=lambda o: 1.0,
        evaluate=lambda o: True,
    )
    env = simenv.make(scenario)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(format_tool_call("ping", {}))
    assert terminated and not info["valid"] and reward == 0.0
    assert message in info["error"]


def test_an_object_without_call_is_not_a_backend() -> None:
    assert not isinstance(object(), ToolBackend)
    assert not isinstance(Notes(), ToolBackend)


def test_every_kind_of_tool_answers_through_a_backend(tmp_path: Path) -> None:
    from scenarios.code_repair import SCENARIO as REPAIR
    from scenarios.sop_domains import scenarios as sop_scenarios
    from simenv.tools.sqlite import run_sql

    @simenv.tool
    def echo(text: str) -> str:
        """Echo the text."""
        return text

    cassette = Cassette(tmp_path / "echo.json", mode="hybrid")
    replayed = simenv.tool(effect="read", replay=cassette)(echo.fn)
    tools = [echo, replayed, run_sql, *REPAIR.tools, *sop_scenarios()[0].tools]
    assert all(isinstance(t.backend, ToolBackend) for t in tools)
    assert echo.backend is echo and run_sql.backend is run_sql  # a typed function answers itself
    first = replayed.backend.call(ToolCall("c1", "echo", {"text": "hi"}), {})
    again = replayed.backend.call(ToolCall("c2", "echo", {"text": "hi"}), {})
    assert (first.content, first.provenance) == ("hi", "live")  # recorded on the way
    assert (again.content, again.provenance) == ("hi", "replay")


def test_simenv_check_holds_for_a_scenario_of_backed_tools() -> None:
    from simenv.checks import check

    report = check(SCENARIO, fast=True)
    assert report.ok, [f.message for f in report.failures]
