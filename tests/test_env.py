"""The environment contract, wrappers, registration, scenario validation and policies."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import simenv
from simenv import (
    MultiTurnEnv,
    Outcome,
    RegistrationError,
    ResetNeeded,
    Sandbox,
    Scenario,
    ScenarioError,
    Task,
    ToolError,
    tool,
)
from simenv.checks.episodes import comparable
from simenv.parsing import format_tool_call
from simenv.policies import Null, Oracle, Random, Scripted, from_string


class Shelf(Sandbox):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.items = {f"I-{i}": int(rng.integers(0, 9)) for i in range(4)}
        self.submitted: str | None = None


@tool
def count(shelf: Shelf, item: str) -> int:
    """Count an item on the shelf.

    Args:
        item: Item id such as "I-2".
    """
    if item not in shelf.items:
        raise ToolError(f"no item {item!r}; ids look like I-0")
    return shelf.items[item]


@tool(effect="write")
def submit(shelf: Shelf, answer: str) -> str:
    """Submit the final answer.

    Args:
        answer: The answer.
    """
    shelf.submitted = answer
    return "submitted"


@tool(effect="write")
def explode(shelf: Shelf) -> str:
    """Do something that crashes."""
    raise KeyError("boom")


def reward(o: Outcome) -> dict[str, float]:
    right = o.final.submitted == str(o.final.items[o.task.data["item"]])
    return {"correct": float(right), "speed": 0.0 if right else -0.0}


def evaluate(o: Outcome) -> bool:
    return o.final.submitted == str(o.initial.items[o.task.data["item"]])


def oracle(task: Task, shelf: Shelf) -> list[str]:
    item = task.data["item"]
    return [
        format_tool_call("count", {"item": item}),
        format_tool_call("submit", {"answer": str(shelf.items[item])}),
    ]


def scenario(**changes: Any) -> Scenario:
    fields: dict[str, Any] = dict(
        id="test/Shelf-v1",
        system_prompt="Count things.",
        tools=[count, submit, explode],
        tasks=[
            Task(
                f"t{i}",
                f"How many I-{i % 4}?",
                "eval" if i >= 6 else "train",
                {"item": f"I-{i % 4}"},
            )
            for i in range(8)
        ],
        sandbox=Shelf,
        reward=reward,
        evaluate=evaluate,
        oracle=oracle,
        max_turns=3,
        finish_tools=["submit"],
    )
    fields.update(changes)
    return Scenario(**fields)


CALL = format_tool_call("count", {"item": "I-1"})


def test_reset_returns_opening_messages_and_info() -> None:
    env = simenv.make(scenario())
    observation, info = env.reset(seed=5, options={"task_id": "t2"})
    assert [m["role"] for m in observation] == ["system", "user"]
    assert observation[1]["content"] == "How many I-2?"
    assert info["task_id"] == "t2" and info["seed"] == 5 and info["scenario_id"] == "test/Shelf-v1"
    assert [t["function"]["name"] for t in info["tools"]] == ["count", "submit", "explode"]
    assert info["episode_id"]


def test_step_returns_only_new_messages_and_never_merges_done() -> None:
    env = simenv.make(scenario())
    env.reset(seed=1, options={"task_id": "t1"})
    observation, reward_, terminated, truncated, info = env.step(CALL)
    assert [m["role"] for m in observation] == ["assistant", "tool"]
    assert observation[1]["tool_call_id"] == observation[0]["tool_calls"][0]["id"]
    assert (reward_, terminated, truncated, info["turn"]) == (0.0, False, False, 1)
    observation, reward_, terminated, truncated, info = env.step("It is 3.")
    assert terminated and not truncated and info["termination"] == "answer"
    assert info["reward_components"] == {"correct": 0.0, "speed": 0.0}


def test_finish_tool_ends_the_episode_with_its_reward() -> None:
    env = simenv.make(scenario())
    episode = simenv.rollout(env, Oracle(), seed=4, task_id="t3")
    assert episode.termination == "finish_tool" and episode.reward == 1.0 and episode.success
    assert episode.turns == 2


def test_truncation_exactly_at_max_turns_scores_the_state() -> None:
    env = simenv.make(scenario())
    env.reset(seed=0, options={"task_id": "t0"})
    flags = [env.step(CALL)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(ResetNeeded):
        env.step(CALL)
    episode = env.get_wrapper_attr("last_episode")
    assert episode.termination == "max_turns" and episode.steps[-1].truncated


def test_step_before_reset_raises_and_close_is_idempotent() -> None:
    env = simenv.make(scenario())
    with pytest.raises(ResetNeeded):
        env.step(CALL)
    bare = MultiTurnEnv(scenario())
    with pytest.raises(ResetNeeded):
        bare.step(CALL)
    env.close()
    env.close()


def test_tool_error_goes_to_the_agent_and_the_episode_goes_on() -> None:
    env = simenv.make(scenario())
    env.reset(seed=0, options={"task_id": "t0"})
    observation, _, terminated, _, _ = env.step(format_tool_call("count", {"item": "nope"}))
    assert observation[1]["content"] == "Error: no item 'nope'; ids look like I-0"
    assert not terminated
    observation, _, terminated, _, _ = env.step(format_tool_call("fly", {}))
    assert (
        "unknown tool 'fly'" in observation[1]["content"]
        and "count, submit" in observation[1]["content"]
    )
    assert not terminated


def test_a_crashing_tool_invalidates_the_episode_without_raising() -> None:
    env = simenv.make(scenario())
    env.reset(seed=0, options={"task_id": "t0"})
    observation, reward_, terminated, _, info = env.step(format_tool_call("explode", {}))
    assert terminated and not info["valid"] and reward_ == 0.0
    assert "KeyError" in info["error"] and "raise simenv.ToolError" in info["error"]
    assert observation[1]["content"].startswith("Error:")
    assert env.get_wrapper_attr("last_episode").termination == "infra_error"


def _same(a: simenv.Episode, b: simenv.Episode) -> bool:
    return comparable(a) == comparable(b)


def test_same_seed_and_actions_same_episode_and_seedless_resets_are_reproducible() -> None:
    env = simenv.make(scenario())
    a = simenv.rollout(env, Random(seed=3), seed=11)
    b = simenv.rollout(env, Random(seed=3), seed=11)
    assert _same(a, b)
    env.reset(seed=42)
    first = [env.reset()[1]["seed"] for _ in range(3)]
    env.reset(seed=42)
    assert [env.reset()[1]["seed"] for _ in range(3)] == first
    hashes = set()
    for s in range(10):
        env.reset(seed=s, options={"task_id": "t0"})
        hashes.add(env.unwrapped.state.state_hash())
    assert len(hashes) > 1


def test_check_env_passes_bare_and_through_gymnasium_make() -> None:
    simenv.register(scenario(id="test/ShelfGym-v1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check_env(MultiTurnEnv(scenario()))
        check_env(gymnasium.make("test/ShelfGym-v1").unwrapped)


def test_ten_thousand_random_and_malformed_actions_raise_nothing() -> None:
    env = simenv.make(scenario(tools=[count, submit]))
    steps = seed = 0
    while steps < 10_000:
        episode = simenv.rollout(env, Random(seed=seed, p_answer=0.02, p_junk=0.4), seed=seed)
        assert episode.valid
        steps += episode.turns
        seed += 1


def test_sandbox_snapshot_restore_hash_and_diff() -> None:
    env = simenv.make(scenario())
    env.reset(seed=9, options={"task_id": "t0"})
    shelf = env.unwrapped.state
    snap, before = shelf.snapshot(), shelf.state_hash()
    shelf.items["I-0"] += 100
    shelf.submitted = "x"
    assert shelf.state_hash() != before
    diff = shelf.diff(snap)
    assert any(line.startswith("~ items.I-0") for line in diff)
    shelf.restore(snap)
    assert shelf.state_hash() == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "no-version"}, "malformed"),
        ({"tasks": []}, "no tasks"),
        ({"tools": [count, count]}, "unique"),
        ({"finish_tools": ["nope"]}, "finish_tools"),
        ({"max_turns": 0}, "max_turns"),
        ({"sandbox": None}, "sandbox"),
        ({"tasks": [Task("a", "x"), Task("a", "y")]}, "used twice"),
        ({"tasks": [Task("a", "x", split="test")]}, "split"),  # type: ignore[arg-type]
    ],
)
def test_bad_scenarios_fail_when_built(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        scenario(**changes)


def test_registration_by_id_file_and_errors(tmp_path: Path) -> None:
    s = scenario(id="test/Registered-v1")
    simenv.register(s)
    assert simenv.spec("test/Registered-v1").scenario is s
    assert "test/Registered-v1" in simenv.registry()
    with pytest.raises(RegistrationError, match="already registered"):
        simenv.register(scenario(id="test/Registered-v1"))
    with pytest.raises(RegistrationError, match="Did you mean: test/Registered-v1"):
        simenv.make("test/Registered-v2")
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "counter.py"
    env = simenv.make(str(example))
    assert env.unwrapped.scenario.id == "demo/Counter-v1"
    assert gymnasium.make("demo/Counter-v1").unwrapped.scenario.id == "demo/Counter-v1"
    with pytest.raises(RegistrationError, match="no such scenario file"):
        simenv.make(str(tmp_path / "missing.py"))
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    with pytest.raises(RegistrationError, match="neither SCENARIO nor SCENARIOS"):
        simenv.make(str(empty))


def test_policies() -> None:
    env = simenv.make(scenario())
    assert simenv.rollout(env, Oracle(), seed=2, task_id="t2").reward == 1.0
    null = simenv.rollout(env, Null(), seed=2, task_id="t2")
    assert null.reward == 0.0 and null.turns == 1 and not null.steps[0].tool_calls
    scripted = simenv.rollout(env, Scripted([CALL, "done"]), seed=2, task_id="t2")
    assert scripted.turns == 2 and scripted.steps[0].tool_calls[0].name == "count"
    assert _same(
        simenv.rollout(env, Random(seed=1), seed=3), simenv.rollout(env, Random(seed=1), seed=3)
    )
    assert not _same(
        simenv.rollout(env, Random(seed=1), seed=3), simenv.rollout(env, Random(seed=2), seed=3)
    )
    assert isinstance(from_string("oracle"), Oracle)
    with pytest.raises(ValueError, match="unknown policy"):
        from_string("smart")


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
