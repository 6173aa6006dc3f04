"""Advantage estimators: pure functions from episode rewards and group ids to advantages.

A group is the G episodes sampled for one task from one identical starting state. Every
estimator compares an episode with the others of its group, so a group whose rewards are all
equal carries no signal: its advantages are exactly 0 and it is counted in
``Advantages.flat_groups``. Chosen once at start-up from :data:`ESTIMATORS`.

Shapes: ``rewards`` and ``group_ids`` are ``[N]`` (one entry per episode); the result is ``[N]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["ESTIMATORS", "Advantages", "dr_grpo", "grpo", "rloo"]


class Advantages(NamedTuple):
    """Per-episode advantages and how many groups carried no signal."""

    values: torch.Tensor
    flat_groups: int


def _group_stats(
    rewards: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per-episode group sum, group size and group unbiased std; number of flat groups."""
    _, index = torch.unique(group_ids, return_inverse=True)
    groups = int(index.max()) + 1 if index.numel() else 0
    r = rewards.double()
    size = torch.zeros(groups, dtype=torch.float64).index_add_(0, index, torch.ones_like(r))
    total = torch.zeros(groups, dtype=torch.float64).index_add_(0, index, r)
    mean = total / size
    sq = torch.zeros(groups, dtype=torch.float64).index_add_(0, index, (r - mean[index]) ** 2)
    std = torch.sqrt(sq / (size - 1).clamp(min=1))
    flat = int((sq <= 1e-12).sum())
    return total[index], size[index], std[index], flat


def grpo(
    rewards: torch.Tensor, group_ids: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-6
) -> Advantages:
    """Group-relative advantage (GRPO).

    ``A_i = (r_i - mean_g) / (std_g + eps)`` with the group's mean and unbiased standard
    deviation; without ``scale_by_std``, ``A_i = r_i - mean_g``.
    """
    total, size, std, flat = _group_stats(rewards, group_ids)
    advantage = rewards.double() - total / size
    if scale_by_std:
        scaled = advantage / (std + eps)
        advantage = torch.where(std > 1e-12, scaled, torch.zeros_like(advantage))
    return Advantages(advantage.to(rewards.dtype), flat)


def dr_grpo(rewards: torch.Tensor, group_ids: torch.Tensor) -> Advantages:
    """Dr. GRPO: ``A_i = r_i - mean_g``, no division by the group std.

    Dividing by the std up-weights groups that are almost solved or almost failed (tiny std);
    Dr. GRPO drops it. Its other half, no per-sequence length normalisation, is the trainer's
    ``aggregation="token"`` (a token mean over the whole batch); the default ``sequence``
    weights each episode equally instead (see ``trainer.losses.sequence_weights``).
    """
    return grpo(rewards, group_ids, scale_by_std=False)


def rloo(rewards: torch.Tensor, group_ids: torch.Tensor) -> Advantages:
    """REINFORCE leave-one-out: ``A_i = r_i - (sum_g - r_i) / (n_g - 1)``.

    The baseline of each episode is the mean of the OTHER episodes of its group, so it is
    independent of the episode itself. A group of one gets advantage 0.
    """
    total, size, _, flat = _group_stats(rewards, group_ids)
    r = rewards.double()
    others = (total - r) / (size - 1).clamp(min=1)
    advantage = torch.where(size > 1, r - others, torch.zeros_like(r))
    return Advantages(advantage.to(rewards.dtype), flat)


ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], Advantages]] = {
    "grpo": grpo,
    "dr_grpo": dr_grpo,
    "rloo": rloo,
}
"""Advantage estimator by name (``--advantage``)."""
