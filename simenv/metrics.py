"""Evaluation metrics over episode records: reward, success, pass@k, pass^k, trajectories.

Pure Python and numpy. Invalid episodes (``valid=False``: the environment failed) are left out
of reward and success and counted separately. Keys are namespaced: ``episode/...`` for per
episode means, ``eval/...`` for success-based metrics, ``tools/...`` for tool use.

pass@k and pass^k use the unbiased estimators over the ``n`` samples of a task with ``c``
successes: ``pass@k = 1 - C(n-c, k) / C(n, k)`` (at least one of k samples succeeds) and
``pass^k = C(c, k) / C(n, k)`` (all k succeed), averaged over tasks that have ``n >= k``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from simenv.types import Episode

__all__ = ["bootstrap_ci", "compare", "pass_at_k", "pass_hat_k", "summarize"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples (of ``n``, ``c`` correct) succeeds."""
    if k > n:
        raise ValueError(f"k={k} is more than the n={n} samples")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Probability that ``k`` samples (of ``n``, ``c`` correct) all succeed (pass^k)."""
    if k > n:
        raise ValueError(f"k={k} is more than the n={n} samples")
    return math.comb(c, k) / math.comb(n, k)


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded, so reports are reproducible)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _by_task(episodes: Sequence[Episode]) -> dict[str, list[Episode]]:
    groups: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        groups[e.task_id].append(e)
    return groups


def summarize(
    episodes: Sequence[Episode], ks: Sequence[int] = (1, 2, 4, 8), seed: int = 0
) -> dict[str, Any]:
    """Overall metrics, and per task, for a set of episodes (several samples per task allowed)."""
    valid = [e for e in episodes if e.valid]
    rewards = [e.reward for e in valid]
    low, high = bootstrap_ci(rewards, seed=seed)
    tool_calls: Counter[str] = Counter()
    tool_errors = 0
    calls = 0
    for e in valid:
        for step in e.steps:
            for call, result in zip(step.tool_calls, step.tool_results, strict=True):
                tool_calls[call.name or "<malformed>"] += 1
                tool_errors += result.is_error
                calls += 1
    tokens = [
        sum(len(t.get("completion_ids", ())) for t in e.metadata.get("turns", ()))
        for e in valid
        if e.metadata.get("turns")
    ]
    n = max(len(valid), 1)
    out: dict[str, Any] = {
        "episodes": len(episodes),
        "episode/invalid_rate": (len(episodes) - len(valid)) / max(len(episodes), 1),
        "episode/reward": sum(rewards) / n,
        "episode/reward_ci95": [low, high],
        "eval/success": sum(e.success for e in valid) / n,
        "episode/turns": sum(e.turns for e in valid) / n,
        "tools/calls_per_episode": calls / n,
        "tools/error_rate": tool_errors / max(calls, 1),
        "tools/calls": dict(tool_calls),
        "episode/termination": dict(Counter(e.termination for e in episodes)),
    }
    if tokens:
        out["episode/tokens"] = sum(tokens) / len(tokens)
    groups = {t: [e for e in es if e.valid] for t, es in _by_task(episodes).items()}
    for k in ks:
        eligible = [g for g in groups.values() if len(g) >= k]
        if eligible:
            c = [sum(e.success for e in g) for g in eligible]
            out[f"eval/pass@{k}"] = sum(
                pass_at_k(len(g), ci, k) for g, ci in zip(eligible, c, strict=True)
            ) / len(eligible)
            out[f"eval/pass^{k}"] = sum(
                pass_hat_k(len(g), ci, k) for g, ci in zip(eligible, c, strict=True)
            ) / len(eligible)
    out["tasks"] = {
        task: {
            "samples": len(g),
            "reward": sum(e.reward for e in g) / max(len(g), 1),
            "success": sum(e.success for e in g) / max(len(g), 1),
        }
        for task, g in sorted(groups.items())
    }
    return out


def compare(
    a: Sequence[Episode], b: Sequence[Episode], *, metric: str = "reward", seed: int = 0
) -> dict[str, Any]:
    """Paired comparison of two runs on the same tasks: mean of (b - a) per task, with a CI.

    Each task's value is the mean over its valid samples; only tasks present in both runs count.
    """

    def per_task(episodes: Sequence[Episode]) -> dict[str, float]:
        out = {}
        for task, g in _by_task(episodes).items():
            ok = [e for e in g if e.valid]
            if ok:
                values = [e.reward if metric == "reward" else float(e.success) for e in ok]
                out[task] = sum(values) / len(values)
        return out

    first, second = per_task(a), per_task(b)
    shared = sorted(set(first) & set(second))
    deltas = [second[t] - first[t] for t in shared]
    low, high = bootstrap_ci(deltas, seed=seed)
    return {
        "metric": metric,
        "tasks": len(shared),
        "a": sum(first[t] for t in shared) / max(len(shared), 1),
        "b": sum(second[t] for t in shared) / max(len(shared), 1),
        "difference": sum(deltas) / max(len(deltas), 1),
        "difference_ci95": [low, high],
    }
