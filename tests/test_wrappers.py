"""Wrappers, one job each: TimeLimit, OrderEnforcing, RecordEpisode, and the stack make() builds."""

from __future__ import annotations

from typing import Any

import gymnasium
import pytest
from helpers import call, make_scenario

import simenv
from simenv import Episode, MultiTurnEnv, ResetNeeded
from simenv.wrappers import OrderEnforcing, RecordEpisode, TimeLimit


def test_make_stacks_the_standard_wrappers_in_order() -> None:
    env = simenv.make(make_scenario())
    layers = []
    layer: Any = env
    while isinstance(layer, gymnasium.Wrapper):
        layers.append(type(layer))
        layer = layer.env
    assert layers == [RecordEpisode, OrderEnforcing, TimeLimit]
    assert isinstance(layer, MultiTurnEnv) and layer is env.unwrapped


def test_time_limit_counts_turns_and_resets_the_count() -> None:
    env = TimeLimit(MultiTurnEnv(make_scenario()), max_turns=2)
    for _ in range(2):  # the budget is per episode
        _, info = env.reset(seed=0, options={"task_id": "t0"})
        assert info["max_turns"] == 2
        assert env.step(call("count", item="I-0"))[2:4] == (False, False)
        _, reward, terminated, truncated, info = env.step(call("count", item="I-0"))
        assert (terminated, truncated, info["termination"]) == (False, True, "max_turns")
        assert reward == 0.0 and info["reward_components"] == {"correct": 0.0, "restocks": 0.0}
        assert env.unwrapped.episode().termination == "max_turns"


def test_time_limit_defaults_to_the_scenario_and_refuses_nonsense() -> None:
    assert TimeLimit(MultiTurnEnv(make_scenario(max_turns=7))).max_turns == 7
    with pytest.raises(ValueError, match="max_turns must be at least 1, got 0"):
        TimeLimit(MultiTurnEnv(make_scenario()), max_turns=0)


class _Other(gymnasium.Env[Any, Any]):
    observation_space = gymnasium.spaces.Discrete(2)
    action_space = gymnasium.spaces.Discrete(2)


@pytest.mark.parametrize("wrapper", [TimeLimit, RecordEpisode])
def test_wrappers_that_need_a_multi_turn_env_say_so(wrapper: Any) -> None:
    with pytest.raises(TypeError, match="need a MultiTurnEnv inside, got _Other"):
        wrapper(_Other())


def test_order_enforcing_refuses_steps_outside_an_episode() -> None:
    env = OrderEnforcing(MultiTurnEnv(make_scenario()))
    assert not env.has_reset
    with pytest.raises(ResetNeeded, match=r"before reset\(\) or after the episode ended"):
        env.step("hello")
    env.reset(seed=0)
    assert env.has_reset
    env.step(call("count", item="I-0"))
    assert env.has_reset
    env.step("Bye.")
    assert not env.has_reset
    with pytest.raises(ResetNeeded):
        env.step("hello again")
    env.reset(seed=1)
    assert env.has_reset


def test_record_episode_hands_each_finished_episode_to_the_sink() -> None:
    sink: list[Episode] = []
    env = simenv.make(make_scenario(), sink=sink.append, policy={"name": "by hand"})
    recorder = env
    assert isinstance(recorder, RecordEpisode) and recorder.last_episode is None
    env.reset(seed=0, options={"task_id": "t0"})
    env.step(call("count", item="I-0"))
    assert sink == [] and recorder.last_episode is None  # nothing until the episode ends
    env.step("Done.")
    env.reset(seed=1, options={"task_id": "t1"})
    for _ in range(4):
        env.step(call("count", item="I-1"))  # truncated on the 4th turn
    env.reset(seed=2)
    env.step("Nothing to do.")  # ends at once
    env.reset(seed=3)
    env.step(call("count", item="I-0"))
    env.reset(seed=4)  # this one was abandoned mid-way: not recorded
    assert [(e.seed, e.termination, e.turns) for e in sink] == [
        (0, "answer", 2),
        (1, "max_turns", 4),
        (2, "answer", 1),
    ]
    assert recorder.last_episode is sink[-1]
    assert all(e.policy == {"name": "by hand"} for e in sink)
    assert all(e.scenario_id == "test/Shelf-v1" and e.scenario_version == 1 for e in sink)


def test_recorded_episodes_match_what_the_steps_returned() -> None:
    env = simenv.make(make_scenario())
    observation, info = env.reset(seed=6, options={"task_id": "t2"})
    transcript = list(observation)
    rewards = []
    for action in [call("count", item="I-2"), call("submit", answer="999")]:
        observation, reward, *_ = env.step(action)
        transcript += observation
        rewards.append(reward)
    episode = env.get_wrapper_attr("last_episode")
    assert list(episode.messages) == transcript
    assert episode.episode_id == info["episode_id"] and episode.seed == info["seed"]
    assert [s.reward for s in episode.steps] == rewards and episode.reward == sum(rewards)
