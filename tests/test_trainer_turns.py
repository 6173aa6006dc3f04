"""Per-turn rewards end to end: a scenario's turn rewards -> estimator -> each turn's tokens.

The episodes are real plays of ``support/TriageSteps-v1`` (its turn rewards: +0.2 for looking
up the plan first, 0.8 for the right route at the end). A scripted policy writes no tokens, so
each episode is given a token record of the shape the HF sampler writes (turn ``k``'s prompt
is the previous prompt + completion + a tool reply), with turn ``k``'s completion made of the
token id ``100 + k``: where each advantage lands is then read straight off the ids.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from helpers import call

import simenv
from simenv.rollouts.policies.scripted import Scripted
from trainer.config import TrainConfig
from trainer.train import estimator, reward_batch, training_samples

PLAN, RIGHT = call("get_plan"), call("route", team="billing", priority="high")


def _played(actions: list[str], group: int, completion: int = 3) -> simenv.Episode:
    env = simenv.make(simenv.load_scenario("support/TriageSteps-v1"))
    episode = simenv.rollout(env, Scripted(actions), seed=1, task_id="billing-0-0")
    turns: list[dict[str, Any]] = []
    prompt = [1, 2, 3]  # system + user
    for k in range(len(episode.steps)):
        ids = [100 + k] * completion
        turns.append({"prompt_ids": list(prompt), "completion_ids": ids, "logprobs": [-1.0] * 3})
        prompt = prompt + ids + [7, 7]  # the tool's reply
    return replace(episode, metadata={**episode.metadata, "turns": turns}, group=group)


@pytest.fixture(scope="module")
def group() -> list[simenv.Episode]:
    right = _played([PLAN, RIGHT], 0)  # turn rewards (0.2, 0.8)
    gives_up = _played([PLAN, "I cannot route it."], 0)  # (0.2, 0.0)
    assert right.turn_rewards == (0.2, 0.8) and gives_up.turn_rewards == (0.2, 0.0)
    return [right, gives_up]


def _by_turn(episodes: list[simenv.Episode], advantage: str, **fields: Any) -> dict[int, Any]:
    """Episode index -> {completion token id: the advantages its tokens got}."""
    cfg = TrainConfig(advantage=advantage, **fields)
    samples, _ = training_samples(episodes, estimator(cfg))
    found: dict[int, Any] = {}
    for s in samples:
        for token, a, m in zip(s.input_ids, s.token_advantages(), s.loss_mask, strict=True):
            if m:
                found.setdefault(s.episode, {}).setdefault(token, set()).add(round(a, 6))
            else:
                assert a == 0.0  # prompt and tool tokens never carry an advantage
    return found


def test_the_batch_carries_each_turns_reward(group: list[simenv.Episode]) -> None:
    batch = reward_batch(group)
    assert batch.turn_rewards == [[0.2, 0.8], [0.2, 0.0]]
    assert batch.group_ids.tolist() == [0, 0] and batch.lengths.tolist() == [6, 6]


def test_monte_carlo_puts_each_turns_return_to_go_on_its_tokens(
    group: list[simenv.Episode],
) -> None:
    # gamma 0.5: right G = (0.2 + 0.5 * 0.8, 0.8) = (0.6, 0.8); gives_up G = (0.2, 0.0)
    found = _by_turn(group, "monte_carlo", gamma=0.5)
    assert found == {0: {100: {0.6}, 101: {0.8}}, 1: {100: {0.2}, 101: {0.0}}}


def test_group_based_per_turn_compares_the_same_turn_across_the_group(
    group: list[simenv.Episode],
) -> None:
    # gamma 1: G = (1.0, 0.8) and (0.2, 0.0); each turn's pair is mean +- 0.4, std 0.4 * sqrt 2
    a = round(0.4 / (0.4 * 2**0.5 + 1e-6), 6)
    found = _by_turn(group, "group_based_per_turn")
    assert found == {0: {100: {a}, 101: {a}}, 1: {100: {-a}, 101: {-a}}}
    # gamma 0: a turn's own reward only; turn 0 pays both 0.2, so it carries nothing
    found = _by_turn(group, "group_based_per_turn", gamma=0.0)
    assert found == {0: {100: {0.0}, 101: {a}}, 1: {100: {0.0}, 101: {-a}}}


def test_an_episode_level_estimator_gives_every_turn_the_episodes_advantage(
    group: list[simenv.Episode],
) -> None:
    a = round(0.4 / (0.4 * 2**0.5 + 1e-6), 6)  # rewards 1.0 and 0.2
    assert _by_turn(group, "grpo") == {0: {100: {a}, 101: {a}}, 1: {100: {-a}, 101: {-a}}}


def test_a_group_whose_every_advantage_is_zero_is_left_out(group: list[simenv.Episode]) -> None:
    twins = [group[0], replace(group[0], episode_id="twin")]  # equal rewards: a flat group
    for advantage in ("grpo", "group_based_per_turn"):
        samples, adv = training_samples(twins, estimator(TrainConfig(advantage=advantage)))
        assert samples == [] and adv.flat_groups == 1
    # monte_carlo has no baseline: the same pair still carries its returns
    samples, _ = training_samples(twins, estimator(TrainConfig(advantage="monte_carlo")))
    assert {s.episode for s in samples} == {0, 1}


def test_the_discount_and_k_are_bound_from_the_config() -> None:
    with pytest.raises(ValueError, match="gamma"):
        TrainConfig(gamma=1.5)
    with pytest.raises(ValueError, match="pass_k"):
        TrainConfig(pass_k=0)
    bound = estimator(TrainConfig(advantage="grpo_passk", pass_k=3))
    assert bound.keywords == {"k": 3}  # type: ignore[attr-defined]
    assert estimator(TrainConfig(advantage="rloo")).keywords == {}  # type: ignore[attr-defined]
