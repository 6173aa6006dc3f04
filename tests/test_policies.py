"""Scripted policies: oracle, null, scripted, random (seeded), and policy names from the CLI."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
from helpers import TASKS, Shelf, call, make_scenario

import simenv
from simenv import ScenarioError
from simenv.rollouts.policies import Null, OpenAI, Oracle, Policy, Random, Scripted, from_string
from simenv.rollouts.policies.base import Conversation
from simenv.rollouts.policies.scripted import FINAL_ANSWER, random_value


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_oracle_scores_full_marks_on_every_task(
    env: gymnasium.Env[Any, Any], task: simenv.Task
) -> None:
    for seed in range(3):
        episode = simenv.rollout(env, Oracle(), seed=seed, task_id=task.id)
        assert episode.reward == 1.0 and episode.evaluation == 1.0 and episode.success
        assert episode.termination == "finish_tool" and episode.turns == 2
        assert episode.policy == {"name": "oracle"} and episode.tool_errors == 0


def test_oracle_ends_with_a_final_answer_when_no_tool_finishes() -> None:
    env = simenv.make(make_scenario(finish_tools=()))
    episode = simenv.rollout(env, Oracle(), seed=1, task_id="t1")
    assert episode.reward == 1.0 and episode.termination == "answer"
    assert episode.messages[-1] == {"role": "assistant", "content": FINAL_ANSWER}


def test_null_scores_nothing(env: gymnasium.Env[Any, Any]) -> None:
    for task in TASKS:
        episode = simenv.rollout(env, Null(), seed=2, task_id=task.id)
        assert episode.reward == 0.0 and episode.evaluation == 0.0 and not episode.success
        assert episode.turns == 1 and not episode.steps[0].tool_calls
        assert episode.termination == "answer" and episode.policy == {"name": "null"}
    assert Null("No.").act([Conversation([], {})] * 2) == ["No.", "No."]


def test_scripted_plays_its_turns_then_a_final_answer(env: gymnasium.Env[Any, Any]) -> None:
    script = [call("count", item="I-2"), call("restock", item="I-2", amount=1)]
    episode = simenv.rollout(env, Scripted(script), seed=2, task_id="t2")
    assert episode.turns == 3
    assert [c.name for s in episode.steps for c in s.tool_calls] == ["count", "restock"]
    assert episode.steps[-1].action == {"role": "assistant", "content": FINAL_ANSWER}
    assert episode.policy == {"name": "scripted", "turns": 2}
    assert episode.reward_components == {"correct": 0.0, "restocks": -0.25}


def test_random_is_seeded_by_its_seed_and_the_episode_seed(env: gymnasium.Env[Any, Any]) -> None:
    def actions(policy_seed: int, episode_seed: int) -> list[Any]:
        episode = simenv.rollout(env, Random(seed=policy_seed), seed=episode_seed)
        return [s.action for s in episode.steps]

    runs = {(p, e): actions(p, e) for p in (1, 2) for e in (3, 4)}
    for (p, e), played in runs.items():
        assert actions(p, e) == played  # same seeds, same actions
    assert len({str(a) for a in runs.values()}) == 4  # either seed changes them
    assert Random(seed=7).describe() == {"name": "random", "seed": 7}


def test_random_does_not_depend_on_the_rest_of_the_batch(env: gymnasium.Env[Any, Any]) -> None:
    observation, info = env.reset(seed=5)

    def conversation() -> Conversation:
        return Conversation(list(observation), dict(info))

    alone = Random(seed=1).act([conversation()])
    other = Conversation(list(observation), {**info, "seed": 99})
    batched = Random(seed=1).act([other, conversation()])
    assert batched[1] == alone[0]


def test_random_mixes_valid_calls_junk_and_answers(env: gymnasium.Env[Any, Any]) -> None:
    kinds = {"answer": 0, "tool": 0, "error": 0}
    for seed in range(30):
        episode = simenv.rollout(env, Random(seed=seed), seed=seed)
        for step in episode.steps:
            if not step.tool_calls:
                kinds["answer"] += 1
            for result in step.tool_results:
                kinds["error" if result.is_error else "tool"] += 1
    assert all(n > 5 for n in kinds.values()), kinds


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        ({"enum": ["a", "b"]}, lambda v: v in ("a", "b")),
        ({"type": "integer"}, lambda v: type(v) is int),
        ({"type": "number"}, lambda v: type(v) is float),
        ({"type": "boolean"}, lambda v: type(v) is bool),
        ({"type": "array", "items": {"type": "integer"}}, lambda v: all(type(x) is int for x in v)),
        ({"type": "object"}, lambda v: v == {}),
        ({"type": "null"}, lambda v: v is None),
        ({"type": "string"}, lambda v: type(v) is str),
        ({"anyOf": [{"type": "null"}, {"enum": [3]}]}, lambda v: v in (None, 3)),
    ],
)
def test_random_values_follow_the_schema(schema: dict[str, Any], check: Any) -> None:
    rng = np.random.default_rng(0)
    assert all(check(random_value(schema, rng)) for _ in range(30))


def test_oracle_needs_an_environment_and_a_scenario_oracle(env: gymnasium.Env[Any, Any]) -> None:
    with pytest.raises(ScenarioError, match=r"needs Conversation.env after reset\(\)"):
        Oracle().act([Conversation([], {})])
    bare = simenv.make(make_scenario(oracle=None))
    with pytest.raises(ScenarioError, match=r"has no oracle; give Scenario\(oracle=...\)"):
        simenv.rollout(bare, Oracle(), seed=0)


def test_oracle_uses_a_remote_plan_when_given() -> None:
    conv = Conversation([], {}, oracle=lambda: ["first", "second"])
    policy = Oracle()
    assert policy.act([conv]) == ["first"]
    conv.messages.append({"role": "assistant", "content": "first"})
    assert policy.act([conv]) == ["second"]
    conv.messages.append({"role": "assistant", "content": "second"})
    assert policy.act([conv]) == [FINAL_ANSWER]


def test_oracle_replans_from_the_starting_state_mid_episode(env: gymnasium.Env[Any, Any]) -> None:
    env.reset(seed=3, options={"task_id": "t1"})
    base = env.unwrapped
    n = base.state.items["I-1"]
    env.step(call("restock", item="I-1", amount=4))  # the live state no longer is the start
    conv = Conversation(
        [{"role": "assistant", "content": "x"}], {}, env=base
    )  # one turn already taken
    assert Oracle().act([conv]) == [call("submit", answer=str(n))]


def test_replanning_oracle_closes_the_state_it_rebuilt(env: gymnasium.Env[Any, Any]) -> None:
    env.reset(seed=3, options={"task_id": "t1"})
    before = set(Shelf.open_tokens)
    conv = Conversation([{"role": "assistant", "content": "x"}], {}, env=env.unwrapped)
    Oracle().act([conv])
    assert Shelf.open_tokens == before


def test_policies_satisfy_the_protocol() -> None:
    for policy in (Oracle(), Null(), Scripted([]), Random()):
        assert isinstance(policy, Policy)
        assert isinstance(policy.describe(), dict) and policy.describe()["name"]


def test_from_string() -> None:
    assert isinstance(from_string("oracle"), Oracle)
    assert isinstance(from_string("  NULL "), Null)
    random = from_string("random", seed=9)
    assert isinstance(random, Random) and random.seed == 9
    openai = from_string("openai:my-model@http://localhost:8000/v1")
    assert isinstance(openai, OpenAI) and openai.model == "my-model"
    assert openai.url == "http://localhost:8000/v1/chat/completions"
    for bad in ("openai:", "openai:model", "openai:@http://x"):
        with pytest.raises(ValueError, match="openai:MODEL@BASE_URL"):
            from_string(bad)
    for bad in ("smart", "", "oracle2"):
        with pytest.raises(ValueError, match=r"unknown policy .*use one of: oracle, null, random"):
            from_string(bad)
