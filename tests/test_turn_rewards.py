"""Per-turn rewards: a scenario's ``turn_reward``, paid by ``step`` after every turn.

``test/Lookup-v1`` (defined here): a ledger of five records with seeded values. The agent looks
records up and answers with the value the task asks for. Each turn earns 0.2 on the first
successful lookup of the right record and -0.1 per tool error; the outcome reward pays 0.7 for
the right answer. The oracle looks the record up, then answers: 0.2, then 0.7.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import call

import simenv
from simenv import (
    Episode,
    InfraError,
    Outcome,
    ResetNeeded,
    Sandbox,
    Scenario,
    ScenarioError,
    Task,
    ToolError,
    tool,
)
from simenv.rollouts.policies import Null, Oracle

RIGHT_LOOKUP = 0.2
TOOL_ERROR = -0.1
ANSWER = 0.7


class Ledger(Sandbox):
    """Five records with values drawn from the seed."""

    open_tokens: ClassVar[set[int]] = set()
    _tokens: ClassVar[itertools.count[int]] = itertools.count()

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.records = {f"R-{i}": int(v) for i, v in enumerate(rng.integers(100, 1000, 5))}
        self._token = next(Ledger._tokens)
        Ledger.open_tokens.add(self._token)

    def close(self) -> None:
        Ledger.open_tokens.discard(self._token)


@tool
def lookup(ledger: Ledger, record: str) -> int:
    """Look a record up.

    Args:
        record: A record id such as "R-2".
    """
    if record not in ledger.records:
        raise ToolError(f"no record {record!r}; ids look like R-0")
    return ledger.records[record]


def right_lookups(o: Outcome, steps: Any) -> int:
    record = o.task.data["record"]
    return sum(
        c.name == "lookup" and c.arguments.get("record") == record and not r.is_error
        for s in steps
        for c, r in zip(s.tool_calls, s.tool_results, strict=True)
    )


def turn_reward(o: Outcome) -> float:
    """0.2 for the episode's first right lookup, on its turn; -0.1 per tool error this turn."""
    turn = o.steps[-1]
    first_right = right_lookups(o, [turn]) > 0 and right_lookups(o, o.steps[:-1]) == 0
    errors = sum(r.is_error for r in turn.tool_results)
    return RIGHT_LOOKUP * first_right + TOOL_ERROR * errors


def reward(o: Outcome) -> dict[str, float]:
    return {"answer": ANSWER * (o.answer.strip() == str(o.final.records[o.task.data["record"]]))}


def evaluate(o: Outcome) -> bool:
    return o.answer.strip() == str(o.initial.records[o.task.data["record"]])


def oracle(task: Task, ledger: Ledger) -> list[str]:
    record = task.data["record"]
    return [call("lookup", record=record), str(ledger.records[record])]


TASKS = [
    Task(f"t{i}", f"What is the value of record R-{i}?", data={"record": f"R-{i}"})
    for i in range(5)
]

SCENARIO = Scenario(
    id="test/Lookup-v1",
    system_prompt="Look the record up with `lookup`, then answer with its value alone.",
    tools=[lookup],
    tasks=TASKS,
    sandbox=Ledger,
    reward=reward,
    turn_reward=turn_reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=6,
    reward_ceiling=RIGHT_LOOKUP + ANSWER,
)


def _value(env: Any) -> str:
    """The right answer of the running episode."""
    return str(env.unwrapped.state.records[env.unwrapped.task.data["record"]])


# ----------------------------------------------------------------------------- the oracle
def test_the_oracle_earns_the_hand_computed_turn_rewards() -> None:
    env = simenv.make(SCENARIO)
    for i, task in enumerate(SCENARIO.tasks):
        episode = simenv.rollout(env, Oracle(), seed=i, task_id=task.id)
        assert episode.valid and episode.success
        assert [s.reward for s in episode.steps] == [0.2, 0.7]
        assert episode.turn_rewards == (0.2, 0.7)
        assert episode.reward == math.fsum([0.2, 0.7]) == pytest.approx(0.9)
        assert episode.reward_components == {"answer": 0.7, "turns": 0.2}
        assert episode.reward >= SCENARIO.reward_ceiling
        null = simenv.rollout(env, Null(), seed=i, task_id=task.id)
        assert null.turn_rewards == (0.0,) and null.reward == 0.0 and not null.success


def test_step_returns_each_turns_reward_and_records_it() -> None:
    env = simenv.make(SCENARIO)
    env.reset(seed=3, options={"task_id": "t1"})
    answer = _value(env)
    script = [
        (call("lookup", record="R-9"), TOOL_ERROR),  # an unknown record: a tool error
        (call("lookup", record="R-2"), 0.0),  # the wrong record
        (call("lookup", record="R-1") + call("lookup", record="R-1"), RIGHT_LOOKUP),  # once
        (call("lookup", record="R-1") + call("lookup", record="R-7"), TOOL_ERROR),  # paid
        (answer, ANSWER),  # the answer: no turn reward, then the outcome reward
    ]
    returned = []
    for action, expected in script:
        _, reward_, terminated, truncated, info = env.step(action)
        assert reward_ == expected, (action, reward_)
        assert type(reward_) is float
        returned.append(reward_)
    assert terminated and not truncated and info["termination"] == "answer"
    assert info["reward_components"] == {
        "answer": ANSWER,
        "turns": math.fsum([TOOL_ERROR, 0.0, RIGHT_LOOKUP, TOOL_ERROR, 0.0]),
    }
    episode = env.get_wrapper_attr("last_episode")
    assert list(episode.turn_rewards) == [s.reward for s in episode.steps] == returned
    assert episode.reward == math.fsum(returned)
    assert episode.reward == math.fsum(episode.reward_components.values())


def test_an_episode_round_trips_through_json_with_its_step_rewards() -> None:
    env = simenv.make(SCENARIO)
    env.reset(seed=5, options={"task_id": "t2"})
    for action in (call("lookup", record="nope"), call("lookup", record="R-2"), _value(env)):
        env.step(action)
    episode = env.get_wrapper_attr("last_episode")
    assert episode.turn_rewards == (TOOL_ERROR, RIGHT_LOOKUP, ANSWER)
    back = Episode.from_json(episode.to_json())
    assert back == episode
    assert back.turn_rewards == episode.turn_rewards and back.reward == episode.reward
    assert [s["reward"] for s in json.loads(episode.to_json())["steps"]] == [-0.1, 0.2, 0.7]


def test_the_turn_reward_sees_the_episode_so_far() -> None:
    seen: list[dict[str, Any]] = []

    def spy(o: Outcome) -> float:
        seen.append(
            {
                "steps": [s.turn for s in o.steps],
                "messages": len(o.messages),
                "termination": o.termination,
                "final": o.final,
                "initial": o.initial.records,
                "last_reward": o.steps[-1].reward,
            }
        )
        return turn_reward(o)

    before = set(Ledger.open_tokens)
    env = simenv.make(replace(SCENARIO, turn_reward=spy))
    env.reset(seed=0, options={"task_id": "t0"})
    live, start = env.unwrapped.state, dict(env.unwrapped.state.records)
    env.step(call("lookup", record="R-0"))
    env.step(_value(env))
    assert [s["steps"] for s in seen] == [[1], [1, 2]]
    assert [s["messages"] for s in seen] == [4, 5]  # system, user, then the turns so far
    assert {s["termination"] for s in seen} == {"unfinished"}  # even on the last turn
    assert all(s["final"] is live and s["initial"] == start for s in seen)
    assert [s["last_reward"] for s in seen] == [0.0, 0.0]  # not set while it is computed
    env.close()
    assert Ledger.open_tokens == before  # every starting state rebuilt for it was closed


def test_the_episode_reward_is_the_exact_sum_of_the_step_rewards() -> None:
    # ten turns of 0.1: a running float sum gives 0.9999999999999999, math.fsum gives 1.0
    scenario = replace(SCENARIO, turn_reward=lambda o: 0.1, reward=lambda o: 0.0, max_turns=10)
    env = simenv.make(scenario)
    env.reset(seed=0, options={"task_id": "t0"})
    for _ in range(10):
        env.step(call("lookup", record="R-0"))
    episode = env.get_wrapper_attr("last_episode")
    assert episode.turn_rewards == (0.1,) * 10 and episode.termination == "max_turns"
    assert episode.reward == math.fsum(episode.turn_rewards) == 1.0
    assert episode.reward_components == {"outcome": 0.0, "turns": 1.0}


# ----------------------------------------------------------------------------- the ending
def test_truncation_adds_the_outcome_reward_to_the_last_turns_reward() -> None:
    env = simenv.make(replace(SCENARIO, reward=lambda o: 0.5), max_turns=2)
    env.reset(seed=1, options={"task_id": "t0"})
    assert env.step(call("lookup", record="R-4"))[1:4] == (0.0, False, False)
    _, reward_, terminated, truncated, info = env.step(call("lookup", record="R-0"))
    assert (reward_, terminated, truncated) == (RIGHT_LOOKUP + 0.5, False, True)
    assert info["termination"] == "max_turns"
    assert info["reward_components"] == {"outcome": 0.5, "turns": RIGHT_LOOKUP}
    episode = env.get_wrapper_attr("last_episode")
    assert episode.turn_rewards == (0.0, RIGHT_LOOKUP + 0.5) and episode.steps[-1].truncated


def test_ending_between_turns_adds_the_outcome_reward_once() -> None:
    # What the runner does when the wall-clock limit cuts an episode between turns.
    env = simenv.MultiTurnEnv(replace(SCENARIO, reward=lambda o: 0.5))
    env.reset(seed=1, options={"task_id": "t0"})
    assert env.step(call("lookup", record="R-0"))[1] == RIGHT_LOOKUP
    assert env.end_episode("time_limit")[0] == 0.5
    assert env.end_episode("time_limit")[0] == 0.5  # ending again does not add it twice
    episode = env.episode()
    assert episode.turn_rewards == (RIGHT_LOOKUP + 0.5,) and episode.termination == "time_limit"
    assert episode.reward == RIGHT_LOOKUP + 0.5


# ----------------------------------------------------------------------------- unchanged without
def test_without_a_turn_reward_only_the_last_step_is_rewarded() -> None:
    env = simenv.make(replace(SCENARIO, turn_reward=None))
    env.reset(seed=3, options={"task_id": "t1"})
    answer = _value(env)
    returned = [
        env.step(action)[1]
        for action in (call("lookup", record="R-9"), call("lookup", record="R-1"), answer)
    ]
    assert returned == [0.0, 0.0, ANSWER]
    episode = env.get_wrapper_attr("last_episode")
    assert episode.turn_rewards == (0.0, 0.0, ANSWER)
    assert episode.reward == ANSWER and episode.reward_components == {"answer": ANSWER}


def test_triage_v1_rewards_are_unchanged() -> None:
    scenario = simenv.load_scenario("support/Triage-v1")
    assert scenario.turn_reward is None
    episode = simenv.rollout(simenv.make(scenario), Oracle(), seed=1, task_id="billing-0-0")
    assert episode.turn_rewards == (0.0, 1.0) and episode.reward == 1.0
    assert episode.reward_components == {"team": 0.5, "priority": 0.5}


# ----------------------------------------------------------------------------- failures
def test_an_infra_error_from_the_turn_reward_invalidates_the_episode() -> None:
    scored: list[str] = []

    def flaky(o: Outcome) -> float:
        if len(o.steps) == 2:
            raise InfraError("the grader is down; retry later")
        return turn_reward(o)

    def reward_(o: Outcome) -> float:
        scored.append(o.termination)
        return 1.0

    sink: list[Episode] = []
    env = simenv.make(replace(SCENARIO, turn_reward=flaky, reward=reward_), sink=sink.append)
    env.reset(seed=0, options={"task_id": "t0"})
    assert env.step(call("lookup", record="R-0"))[1] == RIGHT_LOOKUP
    observation, reward2, terminated, truncated, info = env.step(call("lookup", record="R-1"))
    assert terminated and not truncated and reward2 == 0.0
    assert observation[1]["content"].isdigit()  # the turn itself was played
    assert info["valid"] is False and info["termination"] == "infra_error"
    assert info["error"] == "the grader is down; retry later"
    assert info["evaluation"] is None and info["reward_components"] == {}
    assert scored == []  # an invalid episode is not scored
    (episode,) = sink
    assert not episode.valid and episode.error == info["error"]
    assert episode.turn_rewards == (RIGHT_LOOKUP, 0.0)  # what step returned, kept
    assert episode.reward == math.fsum(episode.turn_rewards)
    with pytest.raises(ResetNeeded):
        env.step("go on")


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -math.inf, np.float64("nan"), "0.5", None, {"lookup": 0.2}]
)
def test_a_turn_reward_that_is_not_a_finite_number_invalidates_the_episode(bad: Any) -> None:
    env = simenv.make(replace(SCENARIO, turn_reward=lambda o: bad))
    env.reset(seed=0, options={"task_id": "t0"})
    _, reward_, terminated, _, info = env.step(call("lookup", record="R-0"))
    assert terminated and reward_ == 0.0
    assert info["valid"] is False and info["termination"] == "infra_error"
    assert info["error"].startswith(
        f"scenario 'test/Lookup-v1': turn_reward returned {bad!r} on turn 1; a turn reward "
        "must be a finite number"
    )
    episode = env.get_wrapper_attr("last_episode")
    assert not episode.valid and episode.turn_rewards == (0.0,) and episode.reward == 0.0


@pytest.mark.parametrize(("given", "expected"), [(np.float32(0.25), 0.25), (True, 1.0), (2, 2.0)])
def test_numpy_numbers_bools_and_ints_are_turn_rewards(given: Any, expected: float) -> None:
    env = simenv.make(replace(SCENARIO, turn_reward=lambda o: given))
    env.reset(seed=0, options={"task_id": "t0"})
    _, reward_, terminated, _, _ = env.step(call("lookup", record="R-0"))
    assert not terminated and reward_ == expected and type(reward_) is float


def test_any_other_exception_from_the_turn_reward_propagates_and_needs_a_reset() -> None:
    def buggy(o: Outcome) -> float:
        raise KeyError("record")

    env = simenv.MultiTurnEnv(replace(SCENARIO, turn_reward=buggy))
    env.reset(seed=0, options={"task_id": "t0"})
    with pytest.raises(KeyError, match="record"):
        env.step(call("lookup", record="R-0"))
    assert not env.running
    with pytest.raises(ResetNeeded):
        env.step("again")
    env.reset(seed=0, options={"task_id": "t0"})
    assert env.running


def test_a_turn_reward_that_is_not_callable_is_refused_at_load() -> None:
    with pytest.raises(ScenarioError, match="turn_reward must be None or a function"):
        replace(SCENARIO, turn_reward=0.2)


def test_an_outcome_component_named_turns_is_refused_beside_a_turn_reward() -> None:
    env = simenv.make(replace(SCENARIO, reward=lambda o: {"turns": 1.0}))
    env.reset(seed=0, options={"task_id": "t0"})
    with pytest.raises(ScenarioError, match="component named 'turns'"):
        env.step("123")
    # without a turn reward the name is the scenario's to use
    env = simenv.make(replace(SCENARIO, reward=lambda o: {"turns": 1.0}, turn_reward=None))
    env.reset(seed=0, options={"task_id": "t0"})
    assert env.step("123")[1] == 1.0


# ----------------------------------------------------------------------------- TriageSteps-v1
def test_triage_steps_pays_the_lookup_turn_and_totals_one_on_every_task() -> None:
    scenario = simenv.load_scenario("support/TriageSteps-v1")
    env = simenv.make(scenario)
    for i, task in enumerate(scenario.tasks):
        gold = simenv.rollout(env, Oracle(), seed=i, task_id=task.id)
        assert gold.valid and gold.success, task.id
        assert gold.turn_rewards == (0.2, 0.8) and gold.reward == 1.0, (task.id, gold.reward)
        assert gold.reward_components == {"team": 0.4, "priority": 0.4, "turns": 0.2}


def test_triage_steps_pays_get_plan_only_as_the_episodes_first_call() -> None:
    env = simenv.make(simenv.load_scenario("support/TriageSteps-v1"))

    def play(*actions: str) -> tuple[float, ...]:
        env.reset(seed=1, options={"task_id": "billing-0-0"})  # an enterprise customer
        return tuple(env.step(a)[1] for a in actions)

    plan, right = call("get_plan"), call("route", team="billing", priority="high")
    bad = call("route", team="nowhere", priority="high")  # refused: the first call anyway
    assert play(plan, right) == (0.2, 0.8)
    assert play(plan + plan, plan, right) == (0.2, 0.0, 0.8)  # once per episode
    assert play(bad, plan, right) == (0.0, 0.0, 0.8)
    assert play(right) == (0.8,)
    assert play(plan, "I cannot route it.") == (0.2, 0.0)
    assert env.get_wrapper_attr("last_episode").reward == 0.2


def test_triage_steps_reuses_triage_and_is_registered_like_it() -> None:
    steps = simenv.load_scenario("support/TriageSteps-v1")
    triage = simenv.load_scenario("support/Triage-v1")
    assert steps.tasks == triage.tasks and steps.tools == triage.tools
    assert steps.sandbox is triage.sandbox and steps.evaluate is triage.evaluate
    assert simenv.spec("support/TriageSteps-v1").source.startswith("entry point")
