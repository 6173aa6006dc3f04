"""Policy losses: pure functions over per-token tensors, chosen once from :data:`LOSSES`.

Inputs, all ``[B, L]`` (B sequences of L tokens, padded):

- ``logp``: log-probability of each taken token under the policy being trained (has grad);
- ``old_logp``: the same under the policy that produced the data (no grad): the sampler's
  logprobs, or the trainer's recomputation at the start of the batch when a truncated
  importance-sampling correction is used;
- ``advantages``: the advantage of each token (its episode's advantage, broadcast);
- ``mask``: 1 on tokens the policy generated, 0 on prompt, tool, user and padding tokens;
- ``num_tokens``: the number of masked tokens in the WHOLE batch.

Aggregation is ``sum(loss * mask) / num_tokens``: a token mean over the whole batch, so the
loss and its gradient are the same whether the batch is processed at once or in micro-batches
(each micro-batch divides by the same global count and the parts add up). The trainer's
``aggregation="sequence"`` (its default) keeps this form and puts :func:`sequence_weights` into
the mask, so each episode counts once however many tokens it has.

Every function returns ``(loss, stats)``; stats are detached floats for logging.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "LOSSES",
    "bind_loss",
    "cispo",
    "importance_sampling",
    "kl_k3",
    "masked_sum",
    "ppo",
    "sequence_weights",
    "truncated_is_weight",
]


def sequence_weights(episodes: Sequence[int], tokens: Sequence[float]) -> list[float]:
    """Per-sample weights that make every episode count once: ``mean_len / len(episode)``.

    ``episodes[i]`` is sample ``i``'s episode and ``tokens[i]`` its number of generated (masked)
    tokens; an episode's length is the sum over its samples. Multiplying each sample's mask by
    its weight turns the token mean into a mean over episodes of each episode's token mean,
    scaled so that the weighted mask still sums to ``num_tokens``: the aggregation stays global,
    so the loss is still the same for any micro-batch split.

    Example: episodes of 2 and 6 tokens (mean 4) get weights 2 and 2/3; 2*2 + 6*2/3 = 8.
    """
    lengths: dict[int, float] = {}
    for episode, n in zip(episodes, tokens, strict=True):
        lengths[episode] = lengths.get(episode, 0.0) + float(n)
    mean = sum(lengths.values()) / max(len(lengths), 1)
    return [mean / lengths[e] if lengths[e] > 0 else 0.0 for e in episodes]


def masked_sum(values: torch.Tensor, mask: torch.Tensor, num_tokens: float) -> torch.Tensor:
    """``sum(values * mask) / num_tokens``: the batch-wide token mean's share of this chunk."""
    return (values * mask).sum() / max(float(num_tokens), 1.0)


def ppo(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    num_tokens: float,
    *,
    clip_low: float = 0.8,
    clip_high: float = 1.2,
    **_: Any,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate.

    ``ratio = exp(logp - old_logp)``;
    ``loss_t = -min(ratio * A, clip(ratio, clip_low, clip_high) * A)``.
    The bounds are absolute ratio limits (0.8 / 1.2 = epsilon 0.2). A clipped token whose
    clipped term is the minimum gets no gradient.
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = ratio.clamp(clip_low, clip_high) * advantages
    loss = masked_sum(-torch.minimum(unclipped, clipped), mask, num_tokens)
    with torch.no_grad():
        was_clipped = ((clipped < unclipped) & (mask > 0)).float().sum()
        stats = {
            "loss/clip_fraction": float(was_clipped / mask.sum().clamp(min=1)),
            "loss/ratio_mean": float((ratio * mask).sum() / mask.sum().clamp(min=1)),
        }
    return loss, stats


def cispo(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    num_tokens: float,
    *,
    clip_low: float | None = None,
    clip_high: float = 5.0,
    **_: Any,
) -> tuple[torch.Tensor, dict[str, float]]:
    """CISPO: a clipped, detached importance weight times the log-probability.

    ``w = sg(clip(exp(logp - old_logp), clip_low, clip_high))``; ``loss_t = -w * A * logp``.
    The clipping bounds the weight, not the gradient path: every token keeps the gradient of
    its log-probability (PPO zeroes the gradient of clipped tokens).
    """
    ratio = torch.exp(logp - old_logp)
    weight = ratio.detach().clamp(min=clip_low, max=clip_high)
    loss = masked_sum(-weight * advantages * logp, mask, num_tokens)
    with torch.no_grad():
        clipped = ((ratio > clip_high) & (mask > 0)).float().sum()
        if clip_low is not None:
            clipped += ((ratio < clip_low) & (mask > 0)).float().sum()
        stats = {
            "loss/clip_fraction": float(clipped / mask.sum().clamp(min=1)),
            "loss/ratio_mean": float((ratio * mask).sum() / mask.sum().clamp(min=1)),
        }
    return loss, stats


def importance_sampling(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    num_tokens: float,
    **_: Any,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Plain importance sampling: ``loss_t = -exp(logp - old_logp) * A`` (no clipping)."""
    ratio = torch.exp(logp - old_logp)
    loss = masked_sum(-ratio * advantages, mask, num_tokens)
    with torch.no_grad():
        stats = {"loss/ratio_mean": float((ratio * mask).sum() / mask.sum().clamp(min=1))}
    return loss, stats


def truncated_is_weight(
    old_logp: torch.Tensor, sampler_logp: torch.Tensor, cap: float = 2.0
) -> torch.Tensor:
    """Truncated importance weight for a sampler that is not exactly the trainer's policy.

    ``w_t = min(exp(old_logp - sampler_logp), cap)``, detached: it re-weights each token's
    loss by how much more likely the trainer's policy found it than the sampler did, capped so
    a rare token cannot blow the update up.
    """
    return torch.exp(old_logp - sampler_logp).clamp(max=cap).detach()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference) estimate k3: ``exp(ref - logp) - (ref - logp) - 1``.

    Non-negative, unbiased for the KL under samples from the policy, low variance.
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


LossFn = Callable[..., tuple[torch.Tensor, dict[str, float]]]

LOSSES: dict[str, LossFn] = {
    "ppo": ppo,
    "cispo": cispo,
    "importance_sampling": importance_sampling,
}
"""Policy loss by name (``--loss``)."""


def bind_loss(name: str, *, clip_low: float, clip_high: float, cispo_high: float) -> LossFn:
    """The loss ``name`` with its parameters bound, once, at start-up.

    ``ppo`` clips the ratio to ``[clip_low, clip_high]``; ``cispo`` clips its detached weight
    to ``[clip_low, cispo_high]`` (no lower bound when ``clip_low`` is 1 or more);
    ``importance_sampling`` takes none.
    """
    params: dict[str, dict[str, Any]] = {
        "ppo": {"clip_low": clip_low, "clip_high": clip_high},
        "cispo": {"clip_low": clip_low if clip_low < 1 else None, "clip_high": cispo_high},
        "importance_sampling": {},
    }
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, not {name!r}")
    return functools.partial(LOSSES[name], **params[name])
