"""Advantage estimators: pure functions from a batch's rewards to advantages.

A group is the episodes sampled for one task from one identical starting state. The input is a
:class:`RewardBatch` (episode rewards, group ids, per-turn rewards, generated lengths); the
output is :class:`Advantages`: one value per episode, the number of flat groups and, for the
per-turn estimators, one advantage per assistant turn. Chosen once at start-up from
:data:`ESTIMATORS`; :data:`PARAMS` says which keyword parameters each one takes and
:func:`bind` fixes them.

Conventions shared by every estimator:

- ``n_g`` is the size of group ``g``, ``mean_g`` the mean of its rewards and ``std_g`` their
  unbiased standard deviation (``n_g - 1`` in the denominator).
- A group is **flat** when its rewards are all equal: ``sum_{i in g} (r_i - mean_g)^2 <= 1e-12``
  (a group of one is flat). Every estimator counts flat groups in
  ``Advantages.flat_groups``. The group-relative ones (all but ``monte_carlo`` and
  ``reinforce_pp``) give every episode (and every turn) of a flat group exactly 0: it carries
  no signal. ``monte_carlo`` and ``reinforce_pp`` do not compare within groups, so they count
  flat groups but do not zero them.
- Group ids may be any integers, in any order; groups need not be contiguous.
- ``values`` has the dtype of ``rewards`` (the default float dtype for integer rewards);
  the arithmetic is float64.

Every estimator is also callable the old way, ``f(rewards, group_ids, **params)``, which is
``f(RewardBatch.from_rewards(rewards, group_ids), **params)``: one turn per episode, every
length 1.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

__all__ = [
    "ESTIMATORS",
    "PARAMS",
    "PER_TURN",
    "Advantages",
    "RewardBatch",
    "bind",
    "dr_grpo",
    "gpg",
    "group_based_per_turn",
    "grpo",
    "grpo_passk",
    "monte_carlo",
    "opo",
    "reinforce_pp",
    "reinforce_pp_baseline",
    "rloo",
]

FLAT = 1e-12
"""A set of values is flat when the sum of its squared deviations from its mean is at most this."""


class Advantages(NamedTuple):
    """What an estimator returns.

    Attributes:
        values: ``[N]``, one advantage per episode. For the per-turn estimators, the advantage
            of the episode's first turn.
        flat_groups: Groups whose rewards are all equal.
        per_turn: ``per_turn[i][t]`` is the advantage of assistant turn ``t`` of episode ``i``
            (per-turn estimators); ``None`` for episode-level estimators, meaning every turn of
            episode ``i`` gets ``values[i]``.
    """

    values: torch.Tensor
    flat_groups: int
    per_turn: list[list[float]] | None = None


@dataclass(frozen=True)
class RewardBatch:
    """The input of every estimator (named so as not to clash with ``trainer.samples.Batch``).

    Attributes:
        rewards: ``[N]``, each episode's total reward.
        group_ids: ``[N]``, the group of each episode (any integers).
        turn_rewards: ``turn_rewards[i][t]``, the reward of assistant turn ``t`` of episode
            ``i`` (``Step.reward``); at least one turn per episode, summing to ``rewards[i]``.
            A scenario without turn rewards has zeros and the total on the last turn.
        lengths: ``[N]``, generated tokens per episode (positive; used by ``opo``).

    Raises:
        ValueError: The fields do not describe the same ``N`` episodes, an episode has no turn,
            its turn rewards do not sum to its reward, a reward is not finite or a length is not
            positive.
    """

    rewards: torch.Tensor
    group_ids: torch.Tensor
    turn_rewards: list[list[float]]
    lengths: torch.Tensor

    def __post_init__(self) -> None:
        if self.rewards.dim() != 1:
            raise ValueError(f"rewards must be 1-D [N], got shape {tuple(self.rewards.shape)}")
        n = self.rewards.numel()
        for name, tensor in (("group_ids", self.group_ids), ("lengths", self.lengths)):
            if tuple(tensor.shape) != (n,):
                raise ValueError(
                    f"{name} must have one entry per episode: shape ({n},) like rewards, "
                    f"got {tuple(tensor.shape)}"
                )
        if len(self.turn_rewards) != n:
            raise ValueError(
                f"turn_rewards must have one list per episode: {n} like rewards, "
                f"got {len(self.turn_rewards)}"
            )
        if n and not bool(torch.isfinite(self.rewards.double()).all()):
            raise ValueError(f"rewards must be finite, got {self.rewards.tolist()}")
        if n and not bool((self.lengths > 0).all()):
            raise ValueError(f"lengths must be positive, got {self.lengths.tolist()}")
        for i, (turns, reward) in enumerate(
            zip(self.turn_rewards, self.rewards.double().tolist(), strict=True)
        ):
            if not turns:
                raise ValueError(f"episode {i} has no turn in turn_rewards (at least one needed)")
            total = math.fsum(turns)
            if not abs(total - reward) <= 1e-6 * max(1.0, abs(reward)):
                raise ValueError(
                    f"the turn rewards of episode {i} sum to {total}, but its reward is {reward}"
                )

    @classmethod
    def from_rewards(
        cls,
        rewards: torch.Tensor | Sequence[float],
        group_ids: torch.Tensor | Sequence[int],
        *,
        turn_rewards: Sequence[Sequence[float]] | None = None,
        lengths: torch.Tensor | Sequence[int] | None = None,
    ) -> RewardBatch:
        """A batch from episode rewards; by default one turn per episode and every length 1."""
        r = torch.as_tensor(rewards)
        if turn_rewards is None:
            turns = [[float(x)] for x in r.double().reshape(-1).tolist()]
        else:
            turns = [[float(x) for x in episode] for episode in turn_rewards]
        return cls(
            rewards=r,
            group_ids=torch.as_tensor(group_ids),
            turn_rewards=turns,
            lengths=torch.ones(r.numel()) if lengths is None else torch.as_tensor(lengths),
        )


class _Groups(NamedTuple):
    index: torch.Tensor  # [N] long: the group of each episode, 0..n_groups-1
    n_groups: int  # groups in the batch
    size: torch.Tensor  # [N] float64: n_g of the episode's group
    total: torch.Tensor  # [N] float64: sum of the group's rewards
    std: torch.Tensor  # [N] float64: unbiased std of the group's rewards
    flat: torch.Tensor  # [N] bool: the episode's group is flat
    flat_groups: int


def _groups(batch: RewardBatch) -> _Groups:
    _, index = torch.unique(batch.group_ids, return_inverse=True)
    index = index.reshape(-1)
    count = int(index.max()) + 1 if index.numel() else 0
    r = batch.rewards.double()
    zeros = torch.zeros(count, dtype=torch.float64)
    size = zeros.clone().index_add_(0, index, torch.ones_like(r))
    total = zeros.clone().index_add_(0, index, r)
    mean = total / size
    sq = zeros.clone().index_add_(0, index, (r - mean[index]) ** 2)
    std = torch.sqrt(sq / (size - 1).clamp(min=1))
    flat = sq <= FLAT
    return _Groups(
        index, count, size[index], total[index], std[index], flat[index], int(flat.sum())
    )


def _as_batch(batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None) -> RewardBatch:
    if isinstance(batch, RewardBatch):
        if group_ids is not None:
            raise TypeError("pass either a RewardBatch or (rewards, group_ids), not both")
        return batch
    if group_ids is None:
        raise TypeError("group_ids is required when the first argument is a rewards tensor")
    return RewardBatch.from_rewards(batch, group_ids)


def _out(values: torch.Tensor, batch: RewardBatch) -> torch.Tensor:
    dtype = batch.rewards.dtype
    return values.to(dtype if dtype.is_floating_point else torch.get_default_dtype())


def _zero_where(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, torch.zeros_like(values), values)


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def _returns(batch: RewardBatch, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return-to-go ``G[i, t]`` and the turn mask, both ``[N, T]`` (right-padded with 0)."""
    n = len(batch.turn_rewards)
    width = max((len(turns) for turns in batch.turn_rewards), default=0)
    rewards = torch.zeros(n, width, dtype=torch.float64)
    mask = torch.zeros(n, width, dtype=torch.bool)
    for i, turns in enumerate(batch.turn_rewards):
        rewards[i, : len(turns)] = torch.tensor(turns, dtype=torch.float64)
        mask[i, : len(turns)] = True
    returns = torch.zeros_like(rewards)
    after = torch.zeros(n, dtype=torch.float64)  # G[:, t + 1]; 0 past the last turn
    for t in range(width - 1, -1, -1):
        after = rewards[:, t] + gamma * after
        returns[:, t] = after
    return returns, mask


def _rows(values: torch.Tensor, batch: RewardBatch) -> list[list[float]]:
    return [values[i, : len(turns)].tolist() for i, turns in enumerate(batch.turn_rewards)]


def grpo(
    batch: RewardBatch | torch.Tensor,
    group_ids: torch.Tensor | None = None,
    *,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> Advantages:
    """Group-relative advantage (GRPO; ``group_based`` is the same function).

    ``A_i = (r_i - mean_g) / (std_g + eps)``; without ``scale_by_std``, ``A_i = r_i - mean_g``.
    Flat groups get 0.
    """
    b = _as_batch(batch, group_ids)
    g = _groups(b)
    advantage = b.rewards.double() - g.total / g.size
    if scale_by_std:
        advantage = advantage / (g.std + eps)
    return Advantages(_out(_zero_where(g.flat, advantage), b), g.flat_groups)


def dr_grpo(batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None = None) -> Advantages:
    """Dr. GRPO: ``A_i = r_i - mean_g``, no division by the group std. Flat groups get 0.

    Dividing by the std up-weights groups that are almost solved or almost failed (tiny std);
    Dr. GRPO drops it. Its other half, no per-sequence length normalisation, is the trainer's
    ``aggregation="token"`` (a token mean over the whole batch); the default ``sequence``
    weights each episode equally instead (see ``trainer.losses.sequence_weights``).
    """
    return grpo(_as_batch(batch, group_ids), scale_by_std=False)


def rloo(batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None = None) -> Advantages:
    """REINFORCE leave-one-out: ``A_i = r_i - (sum_g - r_i) / (n_g - 1)``.

    The baseline of each episode is the mean of the OTHER episodes of its group, so it is
    independent of the episode itself. Flat groups (a group of one included) get 0.
    """
    b = _as_batch(batch, group_ids)
    g = _groups(b)
    r = b.rewards.double()
    advantage = r - (g.total - r) / (g.size - 1).clamp(min=1)
    return Advantages(_out(_zero_where(g.flat, advantage), b), g.flat_groups)


def monte_carlo(
    batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None = None, *, gamma: float = 1.0
) -> Advantages:
    """Monte Carlo return, no baseline (REINFORCE).

    Per turn, the discounted return-to-go ``A_{i,t} = G_{i,t} = sum_{t' >= t} gamma^(t'-t)
    r_{i,t'}`` over the episode's turn rewards; ``values[i] = G_{i,0}``. Not group-relative:
    flat groups are counted but keep their returns.
    """
    b = _as_batch(batch, group_ids)
    _check_gamma(gamma)
    g = _groups(b)
    returns, _ = _returns(b, gamma)
    first = returns[:, 0] if returns.shape[1] else torch.zeros(0, dtype=torch.float64)
    return Advantages(_out(first, b), g.flat_groups, _rows(returns, b))


def group_based_per_turn(
    batch: RewardBatch | torch.Tensor,
    group_ids: torch.Tensor | None = None,
    *,
    gamma: float = 1.0,
    eps: float = 1e-6,
) -> Advantages:
    """Per-turn group-relative advantage: each turn's return-to-go against the same turn index.

    With ``G_{i,t}`` the discounted return-to-go of turn ``t`` of episode ``i`` (as in
    :func:`monte_carlo`) and ``S_{g,t}`` the episodes of group ``g`` that have a turn ``t``:
    ``A_{i,t} = (G_{i,t} - mean_{S_{g,t}} G_{.,t}) / (std_{S_{g,t}} G_{.,t} + eps)``, mean and
    unbiased std over ``S_{g,t}``. ``A_{i,t} = 0`` where ``S_{g,t}`` is flat (one member, or
    returns all equal), and everywhere in a flat group (equal episode rewards).
    ``values[i] = A_{i,0}``.
    """
    b = _as_batch(batch, group_ids)
    _check_gamma(gamma)
    g = _groups(b)
    returns, mask = _returns(b, gamma)
    weight = mask.double()
    grid = torch.zeros(g.n_groups, returns.shape[1], dtype=torch.float64)
    count = grid.clone().index_add_(0, g.index, weight)
    mean = grid.clone().index_add_(0, g.index, returns * weight) / count.clamp(min=1)
    deviation = (returns - mean[g.index]) * weight
    sq = grid.clone().index_add_(0, g.index, deviation**2)
    std = torch.sqrt(sq / (count - 1).clamp(min=1))
    advantage = deviation / (std[g.index] + eps)
    keep = mask & (count[g.index] >= 2) & (sq[g.index] > FLAT) & ~g.flat[:, None]
    advantage = torch.where(keep, advantage, torch.zeros_like(advantage))
    first = advantage[:, 0] if advantage.shape[1] else torch.zeros(0, dtype=torch.float64)
    return Advantages(_out(first, b), g.flat_groups, _rows(advantage, b))


def reinforce_pp(
    batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None = None, *, eps: float = 1e-6
) -> Advantages:
    """REINFORCE++: the reward, normalised over the whole batch; no per-group baseline.

    ``A_i = (r_i - mean_B) / (std_B + eps)`` with the mean and unbiased std over all ``N``
    episodes of the batch; 0 everywhere when the batch's rewards are all equal. Not
    group-relative: flat groups are counted but not zeroed.
    """
    b = _as_batch(batch, group_ids)
    g = _groups(b)
    r = b.rewards.double()
    return Advantages(_out(_batch_normalised(r, eps), b), g.flat_groups)


def _batch_normalised(a: torch.Tensor, eps: float) -> torch.Tensor:
    if a.numel() == 0:
        return a
    centred = a - a.mean()
    sq = (centred**2).sum()
    std = torch.sqrt(sq / max(a.numel() - 1, 1))
    return centred / (std + eps) if float(sq) > FLAT else torch.zeros_like(a)


def reinforce_pp_baseline(
    batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None = None, *, eps: float = 1e-6
) -> Advantages:
    """REINFORCE++-baseline: group mean subtracted, then normalised over the whole batch.

    ``a_i = r_i - mean_g`` (0 in a flat group), then ``A_i = (a_i - mean_B(a)) / (std_B(a) +
    eps)`` with the mean and unbiased std of ``a`` over all ``N`` episodes (flat groups'
    zeros included); flat groups get exactly 0.
    """
    b = _as_batch(batch, group_ids)
    g = _groups(b)
    centred = _zero_where(g.flat, b.rewards.double() - g.total / g.size)
    advantage = _zero_where(g.flat, _batch_normalised(centred, eps))
    return Advantages(_out(advantage, b), g.flat_groups)


def opo(batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None = None) -> Advantages:
    """OPO (on-policy RL with the optimal reward baseline): a length-weighted group baseline.

    ``b_g = sum_{j in g} L_j r_j / sum_{j in g} L_j`` with ``L_j`` the generated tokens of
    episode ``j``; ``A_i = r_i - b_g``. Flat groups get 0. With equal lengths it is
    :func:`dr_grpo`.
    """
    b = _as_batch(batch, group_ids)
    g = _groups(b)
    r, length = b.rewards.double(), b.lengths.double()
    zeros = torch.zeros(g.n_groups, dtype=torch.float64)
    weighted = zeros.clone().index_add_(0, g.index, length * r)
    baseline = weighted / zeros.clone().index_add_(0, g.index, length)
    advantage = r - baseline[g.index]
    return Advantages(_out(_zero_where(g.flat, advantage), b), g.flat_groups)


def grpo_passk(
    batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None = None, *, k: int = 2
) -> Advantages:
    """Pass@k training: the analytical group advantage of the pass@k reward, binary rewards.

    An episode succeeds when ``r_i > 0.5``. In a group of ``n`` episodes with ``c`` successes,
    with ``k' = min(k, n)`` (a group may be smaller than ``k`` once invalid episodes are
    dropped): ``p = 1 - C(n-c, k') / C(n, k')`` (the group's pass@k), ``s = sqrt(p (1 - p))``;
    a success gets ``(1 - p) / s``, a failure
    ``(1 - p - C(n-c-1, k'-1) / C(n-1, k'-1)) / s``. The advantages of a group sum to 0;
    ``k = 1`` is GRPO on the 0/1 successes with the population std. 0 where ``s = 0`` (no
    success, or every k'-subset holds one) and in flat groups; only the flat ones are counted.
    The default ``k = 2`` is the smallest that differs from GRPO and fits every group size the
    trainer allows (at least 2).
    """
    b = _as_batch(batch, group_ids)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    g = _groups(b)
    success = b.rewards.double() > 0.5
    index = g.index.tolist()
    sizes = [0] * g.n_groups
    hits = [0] * g.n_groups
    for group, s in zip(index, success.tolist(), strict=True):
        sizes[group] += 1
        hits[group] += int(s)
    positive, negative = [0.0] * g.n_groups, [0.0] * g.n_groups
    for group, (n, c) in enumerate(zip(sizes, hits, strict=True)):
        kk = min(k, n)
        p = 1.0 - math.comb(n - c, kk) / math.comb(n, kk)
        s = math.sqrt(p * (1.0 - p))
        if s <= FLAT:
            continue
        positive[group] = (1.0 - p) / s
        negative[group] = (1.0 - p - math.comb(n - c - 1, kk - 1) / math.comb(n - 1, kk - 1)) / s
    pos = torch.tensor(positive, dtype=torch.float64)[g.index]
    neg = torch.tensor(negative, dtype=torch.float64)[g.index]
    advantage = torch.where(success, pos, neg)
    return Advantages(_out(_zero_where(g.flat, advantage), b), g.flat_groups)


def gpg(batch: RewardBatch | torch.Tensor, group_ids: torch.Tensor | None = None) -> Advantages:
    """GPG (Group Policy Gradient): mean-centred, scaled up for the batch's flat groups.

    ``A_i = alpha (r_i - mean_g)``, ``alpha = B / B_valid`` with ``B`` the groups in the batch
    and ``B_valid`` the non-flat ones, so flat groups (which get 0) do not dilute the gradient
    of a mean over episodes; no std division.
    """
    b = _as_batch(batch, group_ids)
    g = _groups(b)
    valid = g.n_groups - g.flat_groups
    alpha = g.n_groups / valid if valid else 0.0
    advantage = alpha * (b.rewards.double() - g.total / g.size)
    return Advantages(_out(_zero_where(g.flat, advantage), b), g.flat_groups)


ESTIMATORS: dict[str, Callable[..., Advantages]] = {
    "grpo": grpo,
    "group_based": grpo,
    "dr_grpo": dr_grpo,
    "rloo": rloo,
    "monte_carlo": monte_carlo,
    "group_based_per_turn": group_based_per_turn,
    "reinforce_pp": reinforce_pp,
    "reinforce_pp_baseline": reinforce_pp_baseline,
    "opo": opo,
    "grpo_passk": grpo_passk,
    "gpg": gpg,
}
"""Advantage estimator by name (``--advantage``): ``f(batch, **params) -> Advantages``."""

PARAMS: dict[str, tuple[str, ...]] = {
    "grpo": ("eps",),
    "group_based": ("eps",),
    "dr_grpo": (),
    "rloo": (),
    "monte_carlo": ("gamma",),
    "group_based_per_turn": ("gamma", "eps"),
    "reinforce_pp": ("eps",),
    "reinforce_pp_baseline": ("eps",),
    "opo": (),
    "grpo_passk": ("k",),
    "gpg": (),
}
"""The keyword parameters each estimator takes: ``gamma`` (discount, default 1.0), ``eps``
(added to a std, default 1e-6), ``k`` (pass@k, default 2)."""

PER_TURN: frozenset[str] = frozenset({"monte_carlo", "group_based_per_turn"})
"""Estimators that return ``Advantages.per_turn`` (and read ``RewardBatch.turn_rewards``)."""


def bind(name: str, **params: Any) -> Callable[[RewardBatch], Advantages]:
    """The estimator ``name`` with its parameters fixed, e.g. ``bind("monte_carlo", gamma=0.9)``.

    Raises:
        ValueError: ``name`` is not in :data:`ESTIMATORS`, or a parameter is not one it takes.
    """
    if name not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; known: {sorted(ESTIMATORS)}")
    unknown = sorted(set(params) - set(PARAMS[name]))
    if unknown:
        raise ValueError(
            f"advantage estimator {name!r} takes {list(PARAMS[name]) or 'no parameters'}, "
            f"not {unknown}"
        )
    return functools.partial(ESTIMATORS[name], **params)
