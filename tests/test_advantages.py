"""Every advantage estimator: by hand, and against a plain-Python reference on random batches."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
import torch

from trainer.advantages import (
    ESTIMATORS,
    PARAMS,
    PER_TURN,
    Advantages,
    RewardBatch,
    bind,
    dr_grpo,
    gpg,
    group_based_per_turn,
    grpo,
    grpo_passk,
    monte_carlo,
    opo,
    reinforce_pp,
    reinforce_pp_baseline,
    rloo,
)

ALL = (
    "grpo",
    "group_based",
    "dr_grpo",
    "rloo",
    "monte_carlo",
    "group_based_per_turn",
    "reinforce_pp",
    "reinforce_pp_baseline",
    "opo",
    "grpo_passk",
    "gpg",
)
NOT_GROUP_RELATIVE = {"monte_carlo", "reinforce_pp"}


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def ids(*values: int) -> torch.Tensor:
    return torch.tensor(values)


def batch(
    rewards: list[float],
    groups: list[int],
    turns: list[list[float]] | None = None,
    lengths: list[int] | None = None,
) -> RewardBatch:
    return RewardBatch.from_rewards(
        torch.tensor(rewards, dtype=torch.float64), groups, turn_rewards=turns, lengths=lengths
    )


def approx(values: list[float]) -> Any:
    return pytest.approx(values, abs=1e-6)


# ----------------------------------------------------------------------------- the table


def test_table() -> None:
    assert set(ESTIMATORS) == set(ALL) == set(PARAMS)
    assert {"monte_carlo", "group_based_per_turn"} == PER_TURN
    assert ESTIMATORS["group_based"] is ESTIMATORS["grpo"] is grpo
    assert "nope" not in ESTIMATORS
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'nope'; known: \["):
        bind("nope")
    with pytest.raises(ValueError, match=r"'grpo' takes \['eps'\], not \['gamma'\]"):
        bind("grpo", gamma=0.9)
    with pytest.raises(ValueError, match="'rloo' takes no parameters"):
        bind("rloo", eps=0.1)
    b = batch([1, 0, 0, 0], [0, 0, 1, 1], [[0, 1], [0], [0], [0, 0]])
    assert bind("monte_carlo", gamma=0.5)(b).per_turn == [[0.5, 1.0], [0.0], [0.0], [0.0, 0.0]]


# ----------------------------------------------------------------------------- by hand

HAND = batch([3, 1, 2, 5, 5], [4, 4, 4, 9, 9])  # group 4: mean 2; group 9 is flat


def test_grpo_by_hand() -> None:
    # group 4: deviations 1, -1, 0; unbiased std sqrt(2 / 2) = 1
    a = grpo(HAND, eps=0.0)
    assert a.values.tolist() == approx([1.0, -1.0, 0.0, 0.0, 0.0])
    assert (a.flat_groups, a.per_turn) == (1, None)
    assert ESTIMATORS["group_based"](HAND, eps=0.0).values.tolist() == a.values.tolist()


def test_dr_grpo_by_hand() -> None:
    a = dr_grpo(HAND)
    assert a.values.tolist() == approx([1.0, -1.0, 0.0, 0.0, 0.0])
    assert a.flat_groups == 1


def test_rloo_by_hand() -> None:
    # 3 - (1 + 2) / 2 = 1.5; 1 - (3 + 2) / 2 = -1.5; 2 - (3 + 1) / 2 = 0
    a = rloo(HAND)
    assert a.values.tolist() == approx([1.5, -1.5, 0.0, 0.0, 0.0])
    assert a.flat_groups == 1


def test_monte_carlo_by_hand() -> None:
    b = batch([3, 1, 1, 1], [0, 0, 1, 1], [[0, 1, 2], [0, 0, 1], [1], [0.5, 0.5]])
    # gamma 0.5: [0, 1, 2] -> G = [0 + 0.5 * 2, 1 + 0.5 * 2, 2] = [1, 2, 2];
    # [0, 0, 1] -> [0.25, 0.5, 1]; [1] -> [1]; [0.5, 0.5] -> [0.5 + 0.25, 0.5] = [0.75, 0.5]
    a = monte_carlo(b, gamma=0.5)
    assert a.per_turn == [[1.0, 2.0, 2.0], [0.25, 0.5, 1.0], [1.0], [0.75, 0.5]]
    assert a.values.tolist() == [1.0, 0.25, 1.0, 0.75]
    assert a.flat_groups == 1  # group 1 (rewards 1, 1) is counted, not zeroed
    assert monte_carlo(b).per_turn == [[3.0, 3.0, 2.0], [1.0, 1.0, 1.0], [1.0], [1.0, 0.5]]


def test_group_based_per_turn_by_hand() -> None:
    turns = [[1, 0, 2], [0, 1], [0, 0, 0], [1, 1], [2], [0, 0, 1], [0]]
    b = batch([3, 1, 0, 2, 2, 1, 0], [0, 0, 0, 1, 1, 2, 2], turns)
    a = group_based_per_turn(b, eps=0.0)
    # group 0, returns [3, 2, 2], [1, 1], [0, 0, 0]:
    #   t=0: 3, 1, 0: mean 4/3, deviations 5/3, -1/3, -4/3, std sqrt((42/9) / 2) = sqrt(7/3),
    #        so 5/sqrt(21), -1/sqrt(21), -4/sqrt(21)
    #   t=1: 2, 1, 0: mean 1, std 1 -> 1, 0, -1
    #   t=2: 2, 0 (episode 1 has no turn 2): mean 1, std sqrt(2) -> 1/sqrt(2), -1/sqrt(2)
    # group 1: rewards 2, 2 are flat -> zeros everywhere
    # group 2, returns [1, 1, 1], [0]: t=0: +-1/sqrt(2); t=1, t=2: one member -> 0
    r21, r2 = math.sqrt(21), math.sqrt(2)
    expected = [
        [5 / r21, 1, 1 / r2],
        [-1 / r21, 0],
        [-4 / r21, -1, -1 / r2],
        [0, 0],
        [0],
        [1 / r2, 0, 0],
        [-1 / r2],
    ]
    assert a.per_turn is not None
    assert [len(row) for row in a.per_turn] == [len(row) for row in expected]
    for got, want in zip(a.per_turn, expected, strict=True):
        assert got == approx(want)
    assert a.values.tolist() == approx([row[0] for row in expected])
    assert a.flat_groups == 1
    assert a.per_turn[3] == [0.0, 0.0] and a.per_turn[5][1:] == [0.0, 0.0]


def test_reinforce_pp_by_hand() -> None:
    # batch mean 2.5; deviations -1.5, -1.5, 0.5, 2.5; unbiased std sqrt(11 / 3)
    a = reinforce_pp(batch([1, 1, 3, 5], [0, 0, 1, 1]), eps=0.0)
    s = math.sqrt(11 / 3)
    assert a.values.tolist() == approx([-1.5 / s, -1.5 / s, 0.5 / s, 2.5 / s])
    assert a.flat_groups == 1  # group 0 (1, 1) is counted but not zeroed
    assert reinforce_pp(batch([2, 2, 2], [0, 1, 1])).values.tolist() == [0.0, 0.0, 0.0]


def test_reinforce_pp_baseline_by_hand() -> None:
    # group-centred: -1, 1, -2, 2, 0, 0 (group 2 flat); batch mean 0; std sqrt(10 / 5)
    a = reinforce_pp_baseline(batch([1, 3, 0, 4, 5, 5], [0, 0, 1, 1, 2, 2]), eps=0.0)
    s = math.sqrt(2)
    assert a.values.tolist() == approx([-1 / s, 1 / s, -2 / s, 2 / s, 0, 0])
    assert a.flat_groups == 1


def test_opo_by_hand() -> None:
    # group 0: baseline (10 * 1 + 30 * 0 + 60 * 0) / 100 = 0.1; group 1 flat
    a = opo(batch([1, 0, 0, 1, 1], [0, 0, 0, 1, 1], lengths=[10, 30, 60, 5, 7]))
    assert a.values.tolist() == approx([0.9, -0.1, -0.1, 0.0, 0.0])
    assert a.flat_groups == 1
    # equal lengths: the plain group mean 1/3, as dr_grpo
    assert opo(batch([1, 0, 0], [0, 0, 0])).values.tolist() == approx([2 / 3, -1 / 3, -1 / 3])


def test_grpo_passk_by_hand() -> None:
    rewards = [*(1, 0, 0, 0), *(1, 1, 0, 0), *(1, 1, 1, 0), *(0.2, 0.2), *(0.7, 0.9)]
    groups = [0] * 4 + [1] * 4 + [2] * 4 + [3] * 2 + [4] * 2
    a = grpo_passk(batch(rewards, groups), k=2)
    # group 0, n=4, c=1: p = 1 - C(3,2)/C(4,2) = 1/2, s = 1/2; success (1 - 1/2) / (1/2) = 1;
    #   failure (1 - 1/2 - C(2,1)/C(3,1)) / (1/2) = (1/2 - 2/3) * 2 = -1/3
    # group 1, c=2: p = 1 - C(2,2)/C(4,2) = 5/6, s = sqrt(5)/6; success (1/6) / s = 1/sqrt(5);
    #   failure (1/6 - C(1,1)/C(3,1)) / s = -1/sqrt(5)
    # group 2, c=3: C(1,2) = 0 so p = 1, s = 0 -> zeros (not flat: rewards differ)
    # group 3: flat; group 4: rewards differ, both successes -> p = 1 -> zeros
    r5 = 1 / math.sqrt(5)
    assert a.values.tolist() == approx(
        [1, -1 / 3, -1 / 3, -1 / 3] + [r5, r5, -r5, -r5] + [0] * 4 + [0, 0] + [0, 0]
    )
    assert a.flat_groups == 1
    # the default k is 2; k = 1 is GRPO on the successes with the population std
    assert grpo_passk(batch(rewards, groups)).values.tolist() == a.values.tolist()
    one = grpo_passk(batch([1, 0, 0, 0], [0, 0, 0, 0]), k=1)  # p = 1/4, s = sqrt(3)/4
    s = math.sqrt(3) / 4
    assert one.values.tolist() == approx([0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s])
    # a group smaller than k uses k' = n: n=2, c=1, k'=2: p = 1 -> zeros
    assert grpo_passk(batch([1, 0], [0, 0]), k=4).values.tolist() == [0.0, 0.0]


def test_gpg_by_hand() -> None:
    # 3 groups, 1 flat: alpha = 3/2. group 0: +-0.5 -> +-0.75; group 2: mean 2 -> 1.5, -1.5, 0
    a = gpg(batch([1, 0, 1, 1, 3, 1, 2], [0, 0, 1, 1, 2, 2, 2]))
    assert a.values.tolist() == approx([0.75, -0.75, 0, 0, 1.5, -1.5, 0])
    assert a.flat_groups == 1
    assert gpg(batch([1, 1, 0, 0], [0, 0, 1, 1])).values.tolist() == [0.0] * 4


# ----------------------------------------------------------------------------- reference

FLAT = 1e-12


def ref_groups(groups: list[int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return members


def ref_mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def ref_sq(xs: list[float]) -> float:
    m = ref_mean(xs)
    return sum((x - m) ** 2 for x in xs)


def ref_std(xs: list[float]) -> float:
    return math.sqrt(ref_sq(xs) / max(len(xs) - 1, 1))


def ref_flat(rewards: list[float], members: list[int]) -> bool:
    return ref_sq([rewards[j] for j in members]) <= FLAT


def ref_return(turns: list[float], t: int, gamma: float) -> float:
    return sum(gamma ** (u - t) * turns[u] for u in range(t, len(turns)))


def ref_episode(case: dict[str, Any], name: str, params: dict[str, Any]) -> list[float]:
    """One advantage per episode, loop by loop."""
    rewards, groups, lengths = case["rewards"], case["groups"], case["lengths"]
    members = ref_groups(groups)
    eps = params.get("eps", 1e-6)
    out = [0.0] * len(rewards)
    if name == "reinforce_pp":
        if ref_sq(rewards) > FLAT:
            m, s = ref_mean(rewards), ref_std(rewards)
            out = [(r - m) / (s + eps) for r in rewards]
        return out
    if name == "reinforce_pp_baseline":
        centred = [0.0] * len(rewards)
        for ms in members.values():
            if not ref_flat(rewards, ms):
                m = ref_mean([rewards[j] for j in ms])
                for j in ms:
                    centred[j] = rewards[j] - m
        if ref_sq(centred) > FLAT:
            m, s = ref_mean(centred), ref_std(centred)
            out = [(c - m) / (s + eps) for c in centred]
        for ms in members.values():
            if ref_flat(rewards, ms):
                for j in ms:
                    out[j] = 0.0
        return out
    valid = sum(not ref_flat(rewards, ms) for ms in members.values())
    for ms in members.values():
        if ref_flat(rewards, ms):
            continue
        rs = [rewards[j] for j in ms]
        n, m = len(rs), ref_mean(rs)
        for j in ms:
            r = rewards[j]
            if name in ("grpo", "group_based"):
                out[j] = (r - m) / (ref_std(rs) + eps)
            elif name == "dr_grpo":
                out[j] = r - m
            elif name == "rloo":
                out[j] = r - (sum(rs) - r) / (n - 1)
            elif name == "opo":
                base = sum(lengths[i] * rewards[i] for i in ms) / sum(lengths[i] for i in ms)
                out[j] = r - base
            elif name == "gpg":
                out[j] = len(members) / valid * (r - m)
            elif name == "grpo_passk":
                out[j] = ref_passk(rewards, ms, j, params.get("k", 2))
    return out


def ref_passk(rewards: list[float], ms: list[int], j: int, k: int) -> float:
    """By enumerating every k-subset of the group (no binomial formula)."""
    k = min(k, len(ms))
    ok = {i: rewards[i] > 0.5 for i in ms}
    subsets = list(itertools.combinations(ms, k))
    p = sum(any(ok[i] for i in s) for s in subsets) / len(subsets)
    s = math.sqrt(p * (1 - p))
    if s <= FLAT:
        return 0.0
    if ok[j]:
        return (1 - p) / s
    mine = [x for x in subsets if j in x]
    all_fail = sum(not any(ok[i] for i in x) for x in mine) / len(mine)
    return (1 - p - all_fail) / s


def ref_per_turn(case: dict[str, Any], name: str, params: dict[str, Any]) -> list[list[float]]:
    rewards, groups, turns = case["rewards"], case["groups"], case["turns"]
    gamma, eps = params.get("gamma", 1.0), params.get("eps", 1e-6)
    returns = [[ref_return(ts, t, gamma) for t in range(len(ts))] for ts in turns]
    if name == "monte_carlo":
        return returns
    out = [[0.0] * len(ts) for ts in turns]
    for ms in ref_groups(groups).values():
        if ref_flat(rewards, ms):
            continue
        for t in range(max(len(turns[j]) for j in ms)):
            here = [j for j in ms if t < len(turns[j])]
            gs = [returns[j][t] for j in here]
            if len(here) < 2 or ref_sq(gs) <= FLAT:
                continue
            m, s = ref_mean(gs), ref_std(gs)
            for j in here:
                out[j][t] = (returns[j][t] - m) / (s + eps)
    return out


def random_case(rng: random.Random) -> dict[str, Any]:
    rewards: list[float] = []
    groups: list[int] = []
    turns: list[list[float]] = []
    ids = rng.sample(range(-50, 50), rng.randint(1, 5))
    for g in ids:
        kind = rng.choice(["binary", "real", "flat", "turns"])
        flat_value = rng.choice([0.0, 1.0, 0.1, 0.7])
        for _ in range(rng.randint(2, 6)):
            n_turns = rng.randint(1, 4)
            if kind == "turns":
                ts = [rng.choice([0.0, 0.5, -0.25, rng.uniform(-1, 1)]) for _ in range(n_turns)]
            else:
                r = {
                    "binary": float(rng.random() < 0.5),
                    "real": rng.uniform(-2, 2),
                    "flat": flat_value,
                }[kind]
                ts = [0.0] * (n_turns - 1) + [r]
            turns.append(ts)
            rewards.append(math.fsum(ts))
            groups.append(g)
    order = list(range(len(rewards)))
    rng.shuffle(order)  # groups need not be contiguous
    return {
        "rewards": [rewards[i] for i in order],
        "groups": [groups[i] for i in order],
        "turns": [turns[i] for i in order],
        "lengths": [rng.randint(1, 50) for _ in order],
    }


def params_for(name: str, rng: random.Random, gamma: float) -> dict[str, Any]:
    choices = {"eps": rng.choice([1e-6, 0.0, 0.1]), "gamma": gamma, "k": rng.randint(1, 5)}
    return {p: choices[p] for p in PARAMS[name]}


@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("name", ALL)
def test_against_reference(name: str, gamma: float) -> None:
    rng = random.Random(f"{name}-{gamma}")
    for _ in range(40):
        case = random_case(rng)
        params = params_for(name, rng, gamma)
        b = RewardBatch.from_rewards(
            torch.tensor(case["rewards"], dtype=torch.float64),
            case["groups"],
            turn_rewards=case["turns"],
            lengths=case["lengths"],
        )
        a = ESTIMATORS[name](b, **params)
        assert a.values.dtype == torch.float64
        members = ref_groups(case["groups"])
        assert a.flat_groups == sum(ref_flat(case["rewards"], ms) for ms in members.values())
        if name in PER_TURN:
            want = ref_per_turn(case, name, params)
            assert a.per_turn is not None
            assert [len(row) for row in a.per_turn] == [len(row) for row in want]
            got_flat = torch.tensor([x for row in a.per_turn for x in row], dtype=torch.float64)
            want_flat = torch.tensor([x for row in want for x in row], dtype=torch.float64)
            assert torch.allclose(got_flat, want_flat, rtol=1e-9, atol=1e-9), (case, params)
            first = [row[0] for row in want]
        else:
            assert a.per_turn is None
            first = ref_episode(case, name, params)
        expected = torch.tensor(first, dtype=torch.float64)
        assert torch.allclose(a.values, expected, rtol=1e-9, atol=1e-9), (case, params)


def test_passk_sums_to_zero_per_group() -> None:
    rng = random.Random(3)
    for _ in range(50):
        n = rng.randint(2, 8)
        rewards = [float(rng.random() < 0.5) for _ in range(n)]
        a = grpo_passk(batch(rewards, [0] * n), k=rng.randint(1, n))
        assert abs(float(a.values.sum())) < 1e-9


# ----------------------------------------------------------------------------- edges


@pytest.mark.parametrize("name", ALL)
def test_flat_groups_are_zero_and_counted(name: str) -> None:
    # 0.1 * 3 does not average back to exactly 0.1 in floating point: still exactly 0
    turns = [[0, 0.1], [0.1], [0.05, 0.05], [1], [0], [0, 0, 1]]
    b = batch([0.1, 0.1, 0.1, 1, 0, 1], [2, 2, 2, 5, 5, 8], turns)  # group 8 is a group of one
    a = ESTIMATORS[name](b)
    assert a.flat_groups == 2
    if name in NOT_GROUP_RELATIVE:
        assert a.values[:3].abs().sum() > 0  # counted, not zeroed
    else:
        assert a.values[[0, 1, 2, 5]].tolist() == [0.0] * 4
        if a.per_turn is not None:
            assert [a.per_turn[i] for i in (0, 1, 2, 5)] == [
                [0.0, 0.0],
                [0.0],
                [0.0, 0.0],
                [0.0] * 3,
            ]
    everything_flat = ESTIMATORS[name](batch([0.3, 0.3, 0.0, 0.0], [0, 0, 1, 1]))
    assert everything_flat.flat_groups == 2
    if name not in NOT_GROUP_RELATIVE:
        assert everything_flat.values.tolist() == [0.0] * 4


@pytest.mark.parametrize("name", ALL)
def test_backward_compatible_call_and_dtypes(name: str) -> None:
    rewards, groups = torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([0, 0, 1, 1])
    old = ESTIMATORS[name](rewards, groups)
    new = ESTIMATORS[name](RewardBatch.from_rewards(rewards, groups))
    assert isinstance(old, Advantages) and old.values.dtype == torch.float32
    assert old.values.tolist() == new.values.tolist()
    assert ESTIMATORS[name](torch.tensor([1, 0]), torch.tensor([0, 0])).values.is_floating_point()
    empty = ESTIMATORS[name](torch.tensor([]), torch.tensor([]))  # every episode was invalid
    assert empty.values.numel() == 0 and empty.flat_groups == 0
    with pytest.raises(TypeError, match="not both"):
        ESTIMATORS[name](RewardBatch.from_rewards(rewards, groups), groups)
    with pytest.raises(TypeError, match="group_ids is required"):
        ESTIMATORS[name](rewards)


def test_mismatched_inputs_raise() -> None:
    with pytest.raises(
        ValueError, match=r"group_ids must have one entry per episode: shape \(3,\)"
    ):
        RewardBatch.from_rewards(t(1, 2, 3), ids(0, 0))
    with pytest.raises(ValueError, match="group_ids must have one entry per episode"):
        grpo(t(1, 2, 3), ids(0, 0))
    with pytest.raises(ValueError, match=r"lengths must have one entry per episode"):
        RewardBatch.from_rewards(t(1, 2), ids(0, 0), lengths=[3])
    with pytest.raises(ValueError, match="turn_rewards must have one list per episode: 2"):
        RewardBatch.from_rewards(t(1, 2), ids(0, 0), turn_rewards=[[1]])
    with pytest.raises(ValueError, match="episode 1 has no turn"):
        RewardBatch.from_rewards(t(1, 0), ids(0, 0), turn_rewards=[[1], []])
    with pytest.raises(ValueError, match=r"turn rewards of episode 1 sum to 0\.5, but its reward"):
        RewardBatch.from_rewards(t(1, 1), ids(0, 0), turn_rewards=[[1], [0.25, 0.25]])
    with pytest.raises(ValueError, match="rewards must be 1-D"):
        RewardBatch.from_rewards(torch.ones(2, 2), ids(0, 0))
    with pytest.raises(ValueError, match="lengths must be positive"):
        RewardBatch.from_rewards(t(1, 0), ids(0, 0), lengths=[3, 0])
    with pytest.raises(ValueError, match="rewards must be finite"):
        RewardBatch.from_rewards(t(1, math.nan), ids(0, 0))
    with pytest.raises(ValueError, match="gamma must be in"):
        monte_carlo(HAND, gamma=1.5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        grpo_passk(HAND, k=0)


def test_float32_rewards_accept_float64_turn_sums() -> None:
    rewards = torch.tensor([0.1, 0.7])  # float32, as the trainer builds them
    b = RewardBatch.from_rewards(rewards, [0, 0], turn_rewards=[[0.05, 0.05], [0.7]])
    a = group_based_per_turn(b)
    assert a.values.dtype == torch.float32 and a.per_turn is not None
