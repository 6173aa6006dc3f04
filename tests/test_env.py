"""``MultiTurnEnv``: Gymnasium's contract, tool and infrastructure errors, determinism, fuzzing."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from helpers import (
    TASKS,
    Shelf,
    call,
    comparable,
    count,
    make_scenario,
    outage,
    restock,
    roll,
    submit,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import simenv
from simenv import Episode, MultiTurnEnv, Outcome, ResetNeeded, ScenarioError
from simenv.parsing import format_tool_call
from simenv.rollouts.policies import Oracle, Random
from simenv.rollouts.store import EpisodeStore, read_episodes
from simenv.wrappers import TimeLimit

ENV_CHECKER_NOTES = (
    r".*render fps",  # chat environments have no frame rate
    r".*is different from the unwrapped version",  # check_env on a wrapped env, on purpose
    r".*not having a spec",  # a bare MultiTurnEnv is not built by gymnasium.make
)


@pytest.fixture
def registered(isolated_registry: None) -> Iterator[str]:
    scenario = make_scenario(id="test/ShelfGym-v1")
    simenv.register(scenario)
    yield scenario.id


def _check_env_quietly(env: gymnasium.Env[Any, Any]) -> None:
    with warnings.catch_warnings():
        for note in ENV_CHECKER_NOTES:
            warnings.filterwarnings("ignore", message=note, category=UserWarning)
        check_env(env)


def _run(env: gymnasium.Env[Any, Any], actions: list[Any], seed: int, task_id: str) -> Episode:
    env.reset(seed=seed, options={"task_id": task_id})
    for action in actions:
        *_, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    episode = env.unwrapped.episode()
    assert isinstance(episode, Episode)
    return episode


# ----------------------------------------------------------------------------- reset
def test_reset_returns_opening_messages_and_info(env: gymnasium.Env[Any, Any]) -> None:
    observation, info = env.reset(seed=5, options={"task_id": "t2"})
    assert observation == [
        {"role": "system", "content": make_scenario().system_prompt},
        {"role": "user", "content": "How many I-2 are on the shelf?"},
    ]
    assert env.observation_space.contains(observation)
    assert set(info) >= {"scenario_id", "task_id", "seed", "episode_id", "tools", "max_turns"}
    assert info["scenario_id"] == "test/Shelf-v1" and info["task_id"] == "t2"
    assert info["seed"] == 5 and type(info["seed"]) is int and info["max_turns"] == 4
    assert info["tools"] == make_scenario().tool_schemas()
    assert [t["function"]["name"] for t in info["tools"]] == [
        "count",
        "restock",
        "roll",
        "submit",
        "explode",
    ]
    assert re.fullmatch(r"[0-9a-f]{16}", info["episode_id"])
    assert env.reset(seed=5, options={"task_id": "t2"})[1]["episode_id"] == info["episode_id"]
    assert env.reset(seed=6, options={"task_id": "t2"})[1]["episode_id"] != info["episode_id"]


def test_the_seed_picks_the_task_unless_options_name_one(scenario: simenv.Scenario) -> None:
    env = simenv.make(scenario)
    picked = [env.reset(seed=s)[1]["task_id"] for s in range(40)]
    assert picked == [env.reset(seed=s)[1]["task_id"] for s in range(40)]
    assert len(set(picked)) >= 5
    assert env.reset(seed=3, options={"task_id": "t7"})[1]["task_id"] == "t7"
    with pytest.raises(ScenarioError, match="has no task 'nope'; known ids include: t0, t1"):
        env.reset(seed=3, options={"task_id": "nope"})
    held_out = simenv.make(scenario, split="eval")
    assert {held_out.reset(seed=s)[1]["task_id"] for s in range(30)} == {"t6", "t7"}
    with pytest.raises(ScenarioError, match="no tasks in split 'eval'"):
        MultiTurnEnv(make_scenario(tasks=TASKS[:2]), split="eval")


@pytest.mark.parametrize("seed", [-1, True, 1.5, "3"])
def test_bad_seeds_are_refused(env: gymnasium.Env[Any, Any], seed: Any) -> None:
    with pytest.raises(ScenarioError, match="seed must be a non-negative int or None"):
        env.reset(seed=seed)


def test_numpy_and_large_seeds_are_accepted(env: gymnasium.Env[Any, Any]) -> None:
    info = env.reset(seed=np.int64(3))[1]
    assert info["seed"] == 3 and type(info["seed"]) is int
    assert env.reset(seed=2**64 + 1)[1]["seed"] == 2**64 + 1


def test_seedless_resets_are_reproducible_after_a_seeded_one(env: gymnasium.Env[Any, Any]) -> None:
    env.reset(seed=42)
    first = [env.reset()[1]["seed"] for _ in range(5)]
    env.reset(seed=42)
    assert [env.reset()[1]["seed"] for _ in range(5)] == first
    assert len(set(first)) == 5


def test_the_seed_reported_by_a_seedless_reset_reproduces_the_episode() -> None:
    env = simenv.make(make_scenario())  # a fresh env: the very first reset has no seed to follow
    policy = Random(seed=1, p_answer=0.05)
    first = simenv.rollout(env, policy)
    again = simenv.rollout(env, policy, seed=first.seed, task_id=first.task_id)
    assert comparable(first) == comparable(again)


# ----------------------------------------------------------------------------- step
def test_step_returns_only_new_messages_and_never_merges_done(
    env: gymnasium.Env[Any, Any],
) -> None:
    opening, _ = env.reset(seed=1, options={"task_id": "t1"})
    result = env.step(call("count", item="I-1"))
    assert len(result) == 5
    observation, reward, terminated, truncated, info = result
    assert [m["role"] for m in observation] == ["assistant", "tool"]
    assert observation[0]["content"] == ""
    assert observation[0]["tool_calls"][0]["function"] == {
        "name": "count",
        "arguments": '{"item": "I-1"}',
    }
    assert observation[1]["tool_call_id"] == observation[0]["tool_calls"][0]["id"]
    n = env.unwrapped.state.items["I-1"]
    assert observation[1]["content"] == str(n) and observation[1]["name"] == "count"
    assert (reward, terminated, truncated, info) == (0.0, False, False, {"turn": 1})
    assert env.observation_space.contains(observation)
    second, reward, terminated, truncated, info = env.step(f"There are {n}.")
    assert second == [{"role": "assistant", "content": f"There are {n}."}]
    assert terminated is True and truncated is False and info["termination"] == "answer"
    assert info["valid"] is True and info["error"] is None
    assert info["reward_components"] == {"correct": 0.0, "restocks": 0.0}  # never submitted
    assert reward == 0.0 and info["evaluation"] == 0.0
    episode = env.get_wrapper_attr("last_episode")
    assert list(episode.messages) == opening + observation + second
    assert [s.turn for s in episode.steps] == [1, 2]
    assert [(s.terminated, s.truncated) for s in episode.steps] == [(False, False), (True, False)]


def test_an_openai_dict_action_is_recorded_in_openai_form(env: gymnasium.Env[Any, Any]) -> None:
    env.reset(seed=1, options={"task_id": "t0"})
    action = {
        "role": "assistant",
        "content": "Counting.",
        "tool_calls": [
            {
                "id": "x1",
                "type": "function",
                "function": {"name": "count", "arguments": '{"item": "I-0"}'},
            }
        ],
    }
    observation, *_ = env.step(action)
    assert (
        observation[0]["content"] == "Counting." and observation[0]["tool_calls"][0]["id"] == "x1"
    )
    assert observation[1]["tool_call_id"] == "x1" and observation[1]["content"].isdigit()


def test_several_calls_in_one_turn_run_in_order_and_errors_do_not_stop_the_rest(
    env: gymnasium.Env[Any, Any],
) -> None:
    env.reset(seed=3, options={"task_id": "t0"})
    before = env.unwrapped.state.items["I-0"]
    text = (
        call("restock", item="I-0", amount=2)
        + call("count", item="nope")
        + call("restock", item="I-0", amount="many")
        + call("count", item="I-0")
    )
    observation, _, terminated, _, _ = env.step(text)
    contents = [m["content"] for m in observation[1:]]
    assert contents[0] == str(before + 2)
    assert contents[1] == "Error: no item 'nope'; ids look like I-0"
    assert contents[2].startswith("Error: invalid arguments for 'restock': argument 'amount'")
    assert contents[3] == str(before + 2)
    assert [m["tool_call_id"] for m in observation[1:]] == [f"call_1_{i}" for i in range(4)]
    assert not terminated
    results = env.unwrapped.episode().steps[0].tool_results
    assert [r.is_error for r in results] == [False, True, True, False]
    assert [r.provenance for r in results] == ["sandbox"] * 4


def test_tool_error_goes_to_the_agent_and_the_episode_goes_on(
    env: gymnasium.Env[Any, Any],
) -> None:
    env.reset(seed=0, options={"task_id": "t0"})
    flags = []
    for action, expected in [
        (call("count", item="nope"), "Error: no item 'nope'; ids look like I-0"),
        (call("count"), "Error: invalid arguments for 'count': missing required argument 'item'"),
        (
            call("fly", to="moon"),
            "Error: unknown tool 'fly'. Available tools: count, restock, roll, submit, explode.",
        ),
        ("<tool_call>{oops}</tool_call>", "Error: the tool call is not valid JSON"),
    ]:
        observation, reward, terminated, truncated, _ = env.step(action)
        assert observation[-1]["role"] == "tool" and observation[-1]["content"].startswith(expected)
        flags.append((reward, terminated, truncated))
    assert flags == [(0.0, False, False)] * 3 + [(0.0, False, True)]  # the 4th turn is the last
    episode = env.get_wrapper_attr("last_episode")
    assert episode.valid and episode.tool_errors == 4


def test_finish_tool_ends_the_episode_with_its_reward(env: gymnasium.Env[Any, Any]) -> None:
    env.reset(seed=4, options={"task_id": "t3"})
    n = env.unwrapped.state.items["I-3"]
    *_, terminated, _, _ = env.step(call("submit", answer=""))  # a failed finish goes on
    assert not terminated
    *_, terminated, _, _ = env.step(call("submit"))
    assert not terminated
    observation, reward, terminated, truncated, info = env.step(call("submit", answer=str(n)))
    assert observation[1]["content"] == "submitted"
    assert terminated and not truncated and reward == 1.0
    assert info["termination"] == "finish_tool" and info["evaluation"] == 1.0
    with pytest.raises(ResetNeeded):
        env.step("more")


def test_without_finish_tools_submitting_does_not_end_the_episode() -> None:
    env = simenv.make(make_scenario(finish_tools=()))
    env.reset(seed=4, options={"task_id": "t3"})
    n = env.unwrapped.state.items["I-3"]
    *_, terminated, _, _ = env.step(call("submit", answer=str(n)))
    assert not terminated
    _, reward, terminated, _, info = env.step("Submitted.")
    assert terminated and reward == 1.0 and info["termination"] == "answer"


def test_truncation_exactly_at_max_turns_scores_the_state_reached() -> None:
    env = simenv.make(make_scenario(finish_tools=()))
    env.reset(seed=0, options={"task_id": "t0"})
    n = env.unwrapped.state.items["I-0"]
    flags = []
    for action in [call("submit", answer=str(n))] + [call("count", item="I-0")] * 3:
        _, reward, terminated, truncated, info = env.step(action)
        flags.append((reward, terminated, truncated))
    assert flags == [(0.0, False, False)] * 3 + [(1.0, False, True)]
    assert info["termination"] == "max_turns" and info["reward_components"]["correct"] == 1.0
    with pytest.raises(ResetNeeded):
        env.step(call("count", item="I-0"))
    episode = env.get_wrapper_attr("last_episode")
    assert episode.termination == "max_turns" and episode.reward == 1.0 and episode.turns == 4
    assert [(s.terminated, s.truncated) for s in episode.steps][-2:] == [
        (False, False),
        (False, True),
    ]
    assert episode.steps[-1].reward == 1.0 and episode.steps[0].reward == 0.0


def test_ending_on_the_last_turn_is_termination_not_truncation() -> None:
    env = simenv.make(make_scenario(), max_turns=2)
    env.reset(seed=0, options={"task_id": "t0"})
    assert env.step(call("count", item="I-0"))[2:4] == (False, False)
    _, _, terminated, truncated, info = env.step("Done.")
    assert (terminated, truncated, info["termination"]) == (True, False, "answer")


def test_max_turns_can_be_overridden() -> None:
    env = simenv.make(make_scenario(), max_turns=1)
    assert env.reset(seed=0)[1]["max_turns"] == 1
    assert env.step(call("count", item="I-0"))[2:4] == (False, True)
    with pytest.raises(ValueError, match="max_turns must be at least 1"):
        simenv.make(make_scenario(), max_turns=0)


def test_step_before_reset_and_after_the_end_raises_reset_needed(
    scenario: simenv.Scenario,
) -> None:
    bare = MultiTurnEnv(scenario)
    limited = TimeLimit(MultiTurnEnv(scenario))
    for env in (simenv.make(scenario), bare, limited):
        with pytest.raises(ResetNeeded, match=r"call reset\(\) first"):
            env.step(call("count", item="I-0"))
        env.reset(seed=0)
        env.step("I give up.")
        with pytest.raises(ResetNeeded):
            env.step("again")
        env.reset(seed=0)
        env.step(call("count", item="I-0"))  # a new episode steps again
        env.close()
        env.close()  # idempotent
        with pytest.raises(ResetNeeded):
            env.step("after close")
    assert bare.episode().turns == 1  # the record of the last episode survives close


def test_the_bare_env_never_truncates(scenario: simenv.Scenario) -> None:
    env = MultiTurnEnv(scenario)
    env.reset(seed=0, options={"task_id": "t0"})
    for _ in range(scenario.max_turns + 3):
        assert env.step(call("count", item="I-0"))[2:4] == (False, False)


# ----------------------------------------------------------------------------- errors
def test_a_crashing_tool_invalidates_the_episode_without_raising() -> None:
    scored: list[str] = []

    def reward(o: Outcome) -> float:
        scored.append(o.termination)
        return 1.0

    sink: list[Episode] = []
    env = simenv.make(make_scenario(reward=reward), sink=sink.append)
    env.reset(seed=0, options={"task_id": "t0"})
    text = call("count", item="I-0") + call("explode") + call("count", item="I-1")
    observation, reward_, terminated, truncated, info = env.step(text)
    assert terminated and not truncated and reward_ == 0.0
    assert info["valid"] is False and info["termination"] == "infra_error"
    assert info["evaluation"] is None and scored == []  # an invalid episode is not scored
    assert "tool 'explode' raised KeyError: 'boom'" in info["error"]
    assert "raise simenv.ToolError for agent mistakes" in info["error"]
    assert [m["role"] for m in observation] == ["assistant", "tool", "tool", "tool"]
    assert observation[1]["content"].isdigit()
    assert (
        observation[2]["content"] == observation[3]["content"] == "Error: the environment failed."
    )
    (episode,) = sink
    assert not episode.valid and episode.termination == "infra_error" and episode.reward == 0.0
    assert episode.error == info["error"]
    assert [r.provenance for r in episode.steps[0].tool_results] == ["sandbox", "error", "error"]
    with pytest.raises(ResetNeeded):
        env.step("go on")


def test_an_infra_error_from_a_tool_invalidates_the_episode() -> None:
    env = simenv.make(make_scenario(tools=[count, submit, outage]))
    env.reset(seed=0, options={"task_id": "t0"})
    _, _, terminated, _, info = env.step(call("outage"))
    assert terminated and info["valid"] is False
    assert info["error"] == "the inventory service is down; retry later"


# ----------------------------------------------------------------------------- determinism
SCRIPT = [
    call("roll", sides=1000) + call("roll", sides=1000),
    call("restock", item="I-2", amount=3) + call("count", item="I-2"),
    call("roll") + "<tool_call>{bad}</tool_call>",
    call("submit", answer="7"),
]


def test_same_seed_same_actions_same_episode(env: gymnasium.Env[Any, Any]) -> None:
    a = _run(env, SCRIPT, seed=11, task_id="t2")
    hash_a = env.unwrapped.state.state_hash()
    b = _run(env, SCRIPT, seed=11, task_id="t2")
    assert comparable(a) == comparable(b)
    assert env.unwrapped.state.state_hash() == hash_a
    assert a.termination == "finish_tool" and a.turns == 4
    c = _run(env, SCRIPT, seed=12, task_id="t2")
    rolls = [r.content for s in (a, c) for r in s.steps[0].tool_results]
    assert rolls[:2] != rolls[2:]  # the injected generator follows the seed


def test_same_seed_same_random_policy_episode_across_environments(
    scenario: simenv.Scenario,
) -> None:
    one, two = simenv.make(scenario), simenv.make(scenario)
    for seed in range(5):
        a = simenv.rollout(one, Random(seed=3), seed=seed)
        simenv.rollout(one, Random(seed=99), seed=seed + 100)  # history must not matter
        b = simenv.rollout(two, Random(seed=3), seed=seed)
        assert comparable(a) == comparable(b)


def test_different_seeds_give_different_starting_states(env: gymnasium.Env[Any, Any]) -> None:
    hashes = set()
    for seed in range(10):
        env.reset(seed=seed, options={"task_id": "t0"})
        hashes.add(env.unwrapped.state.state_hash())
    assert len(hashes) >= 8


def test_environments_are_isolated_and_resets_start_fresh(scenario: simenv.Scenario) -> None:
    a, b = simenv.make(scenario), simenv.make(scenario)
    a.reset(seed=1, options={"task_id": "t0"})
    b.reset(seed=1, options={"task_id": "t0"})
    start = b.unwrapped.state.state_hash()
    a.step(call("restock", item="I-0", amount=5))
    assert a.unwrapped.state.state_hash() != start and b.unwrapped.state.state_hash() == start
    a.reset(seed=1, options={"task_id": "t0"})
    assert a.unwrapped.state.state_hash() == start
    assert a.unwrapped.state is not b.unwrapped.state


def test_reward_and_evaluation_see_the_final_and_the_rebuilt_initial_state() -> None:
    seen: dict[str, Any] = {}

    def reward(o: Outcome) -> dict[str, float]:
        seen["initial"] = o.initial.state_hash()
        seen["final"] = o.final.state_hash()
        seen["answer"] = o.answer
        seen["restocks"] = o.called("restock")
        seen["all"] = o.called("restock", ok=False)
        return make_scenario().reward(o)

    env = simenv.make(make_scenario(reward=reward, finish_tools=()))
    env.reset(seed=8, options={"task_id": "t1"})
    start = env.unwrapped.state.state_hash()
    n = env.unwrapped.state.items["I-1"]
    env.step(call("restock", item="I-1", amount=2) + call("restock", item="I-1", amount=0))
    env.step(call("submit", answer=str(n)))  # the count before restocking
    _, total, terminated, _, info = env.step("Done")
    assert terminated and seen["answer"] == "Done"
    assert seen["initial"] == start and seen["final"] != start
    assert seen["restocks"] == [{"item": "I-1", "amount": 2}] and len(seen["all"]) == 2
    # the reward pays the final count only; the evaluation judges against the start
    assert info["reward_components"] == {"correct": 0.0, "restocks": -0.25}
    assert total == -0.25 and info["evaluation"] == 1.0


def test_no_sandbox_is_left_open(scenario: simenv.Scenario) -> None:
    before = set(Shelf.open_tokens)
    env = simenv.make(scenario)
    for seed in range(5):
        simenv.rollout(env, Oracle(), seed=seed)
        simenv.rollout(env, Random(seed=seed), seed=seed)
    env.close()
    assert Shelf.open_tokens <= before


# ----------------------------------------------------------------------------- gymnasium
def test_check_env_passes_on_the_bare_env(scenario: simenv.Scenario) -> None:
    _check_env_quietly(MultiTurnEnv(scenario))
    _check_env_quietly(simenv.make(scenario).unwrapped)


def test_check_env_passes_through_gymnasium_make(registered: str) -> None:
    env = gymnasium.make(registered)
    assert isinstance(env.unwrapped, MultiTurnEnv)
    assert env.unwrapped.scenario.id == registered
    _check_env_quietly(env)
    _check_env_quietly(gymnasium.make(registered).unwrapped)


def test_gymnasium_make_passes_keyword_arguments(registered: str) -> None:
    env = gymnasium.make(registered, max_turns=1, split="eval")
    _, info = env.reset(seed=0)
    assert info["max_turns"] == 1 and info["task_id"] in {"t6", "t7"}
    assert env.step(call("count", item="I-0"))[2:4] == (False, True)


def test_spaces_contain_what_the_env_produces_and_accepts(env: gymnasium.Env[Any, Any]) -> None:
    actions = env.action_space
    assert actions.contains("any text") and actions.contains({"role": "assistant", "content": ""})
    assert not actions.contains({"role": "user", "content": "hi"}) and not actions.contains(3)
    observations = env.observation_space
    assert not observations.contains([{"role": "tool", "content": "x"}])  # no tool_call_id
    assert not observations.contains([{"role": "robot", "content": "x"}])
    actions.seed(5)
    first = [actions.sample() for _ in range(20)]
    actions.seed(5)
    assert [actions.sample() for _ in range(20)] == first
    assert any("<tool_call>" in a for a in first) and any("<tool_call>" not in a for a in first)
    observations.seed(1)
    assert all(observations.contains(observations.sample()) for _ in range(20))
    env.reset(seed=0)
    for action in first:
        observation, *_, terminated, truncated, _ = env.step(action)
        assert observations.contains(observation)
        if terminated or truncated:
            env.reset()


def test_render_ansi_shows_the_transcript(scenario: simenv.Scenario) -> None:
    env = simenv.make(scenario, render_mode="ansi")
    env.reset(seed=0, options={"task_id": "t0"})
    env.step(call("count", item="I-0"))
    text = env.render()
    assert text is not None
    assert text.splitlines()[:4] == [
        f"[system] {scenario.system_prompt}",
        "[user] How many I-0 are on the shelf?",
        "[assistant] ",
        '  -> count({"item": "I-0"})',
    ]
    assert simenv.make(scenario).render() is None
    with pytest.raises(ScenarioError, match="render_mode"):
        MultiTurnEnv(scenario, render_mode="human")


# ----------------------------------------------------------------------------- fuzzing
def test_ten_thousand_random_and_malformed_actions_raise_nothing() -> None:
    env = simenv.make(make_scenario(tools=[count, restock, submit]))
    steps = seed = 0
    while steps < 10_000:
        episode = simenv.rollout(env, Random(seed=seed, p_answer=0.02, p_junk=0.4), seed=seed)
        assert episode.valid
        for step in episode.steps:
            assert len(step.tool_results) == len(step.tool_calls)
            for result in step.tool_results:
                assert result.content.startswith("Error: ") == result.is_error
        steps += episode.turns
        seed += 1
    assert seed > 100  # many episodes, not one long one


junk_text = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "<tool_call>",
                "</tool_call>",
                '{"name": "count", "arguments": {"item": "I-1"}}',
                '{"name": "restock", "arguments": {"item": "I-1", "amount": -3}}',
                '{"name": "submit", "arguments": {"answer": 5}}',
                '{"name": "roll", "arguments": {"sides": 1e400}}',
                '{"name": "count", "arguments": "{\\"item\\": 1}"}',
                "{",
                "}",
                "null",
                '"',
            ]
        )
        | st.text(max_size=10),
        max_size=12,
    ).map("".join),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
junk_dict = st.fixed_dictionaries(
    {"role": st.just("assistant")},
    optional={
        "content": json_values | junk_text,
        "tool_calls": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": st.text(max_size=4) | st.integers(),
                    "function": st.fixed_dictionaries(
                        {},
                        optional={
                            "name": st.sampled_from(["count", "restock", "roll", "submit", ""])
                            | json_values,
                            "arguments": json_values
                            | st.dictionaries(
                                st.sampled_from(["item", "amount", "sides", "answer", "x"]),
                                json_values,
                                max_size=3,
                            )
                            | junk_text,
                        },
                    )
                    | json_values,
                },
            )
            | json_values,
            max_size=4,
        )
        | json_values,
    },
)


@pytest.fixture(scope="module")
def fuzz_env() -> Iterator[gymnasium.Env[Any, Any]]:
    env = simenv.make(make_scenario(tools=[count, restock, roll, submit]))
    yield env
    env.close()


@settings(max_examples=150, deadline=None)
@given(
    actions=st.lists(junk_text | junk_dict | json_values, min_size=1, max_size=6),
    seed=st.integers(0, 50),
)
def test_junk_actions_never_raise_out_of_step(
    fuzz_env: gymnasium.Env[Any, Any], actions: list[Any], seed: int
) -> None:
    fuzz_env.reset(seed=seed)
    for action in actions:
        observation, reward, terminated, truncated, info = fuzz_env.step(action)
        assert fuzz_env.observation_space.contains(observation)
        calls = observation[0].get("tool_calls", [])
        tool_messages = observation[1:]
        assert [m["tool_call_id"] for m in tool_messages] == [c["id"] for c in calls]
        assert isinstance(reward, float) and isinstance(terminated, bool)
        if terminated or truncated:
            assert info["valid"], info["error"]
            fuzz_env.reset(seed=seed)


# ----------------------------------------------------------------------------- unwritable actions
SURROGATE_CALL = (
    '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "\\ud83d"}}</tool_call>'
)
DEEP_CALL = (
    '<tool_call>{"name": "lookup_order", "arguments": '
    + '{"a":' * 900
    + "1"
    + "}" * 900
    + "}</tool_call>"
)


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.parametrize(
    ("action", "answer", "sanitized"),
    [
        (SURROGATE_CALL, "Error: No order '\ufffd'", 1),
        (DEEP_CALL, "Error: the arguments nest objects or arrays more than 64 levels deep", 0),
        (_Unprintable(), "Error: the action is a _Unprintable whose str() raised", 0),
    ],
    ids=["lone-surrogate", "900-deep", "str-raises"],
)
def test_an_unwritable_action_gets_an_answer_and_its_episode_is_stored(
    tmp_path: Any, action: Any, answer: str, sanitized: int
) -> None:
    env = simenv.make("support/Refunds-v1")
    env.reset(seed=0)
    observation, reward, terminated, truncated, _ = env.step(action)
    assert observation[1]["role"] == "tool" and observation[1]["content"].startswith(answer)
    assert (reward, terminated, truncated) == (0.0, False, False)
    env.step("I could not find it.")
    base = env.unwrapped
    assert isinstance(base, MultiTurnEnv)
    episode = base.episode()
    env.close()
    assert episode.valid and episode.termination == "answer"
    assert episode.metadata == ({"sanitized": sanitized} if sanitized else {})
    path = tmp_path / "episodes.jsonl"
    with EpisodeStore(path) as store:
        store.write(episode)
    (stored,) = list(read_episodes(path))
    assert stored == episode  # repaired when the action came in: nothing left to repair
    assert json.loads(path.read_bytes().decode("utf-8"))["episode_id"] == episode.episode_id


def test_a_valid_unicode_action_is_kept_as_sent() -> None:
    env = simenv.make("support/Refunds-v1")
    env.reset(seed=0)
    action = format_tool_call("lookup_order", {"order_id": "\U0001f600"}).replace(
        "\U0001f600", "\\ud83d\\ude00"
    )  # the emoji as the JSON escape of its surrogate pair
    observation, *_ = env.step(action)
    assert "\U0001f600" in observation[1]["content"]
    base = env.unwrapped
    assert isinstance(base, MultiTurnEnv) and "sanitized" not in base.episode().metadata
    env.close()
