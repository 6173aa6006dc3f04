"""The estimators of evaluation: pass@k, pass^k, and bootstrap intervals of a mean.

Pure functions (math and numpy). ``pass@k = 1 - C(n-c, k) / C(n, k)`` and
``pass^k = C(c, k) / C(n, k)`` are the unbiased estimators over a group's ``n`` samples with
``c`` successes; intervals are percentile bootstraps, seeded, resampling clusters when given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_ci", "pass_at_k", "pass_hat_k"]

_CHUNK = 2_000_000  # bootstrap indices drawn at once (bounds memory on large runs)


def _check_counts(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n:
        raise ValueError(f"c={c} successes must be between 0 and the n={n} samples")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the n={n} samples")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased probability that at least one of ``k`` samples succeeds.

    ``pass@k = 1 - C(n-c, k) / C(n, k)`` for a task with ``n`` samples, ``c`` of them successes.

    Args:
        n: Samples of the task.
        c: Successful samples.
        k: Samples drawn (without replacement), ``1 <= k <= n``.

    Returns:
        A probability in [0, 1]; e.g. ``pass_at_k(10, 3, 5) == 0.91666...``.

    Raises:
        ValueError: ``k`` or ``c`` is out of range.
    """
    _check_counts(n, c, k)
    total = math.comb(n, k)
    return (total - math.comb(n - c, k)) / total  # one rounding: exact integers until here


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased probability that ``k`` samples all succeed (pass^k, a reliability measure).

    ``pass^k = C(c, k) / C(n, k)`` for a task with ``n`` samples, ``c`` of them successes.

    Args:
        n: Samples of the task.
        c: Successful samples.
        k: Samples drawn (without replacement), ``1 <= k <= n``.

    Returns:
        A probability in [0, 1]; ``pass_hat_k(n, c, 1) == pass_at_k(n, c, 1) == c / n``.

    Raises:
        ValueError: ``k`` or ``c`` is out of range.
    """
    _check_counts(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def bootstrap_ci(
    values: Sequence[float],
    *,
    clusters: Sequence[object] | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; the same seed gives the same interval.

    Args:
        values: The observations.
        clusters: One label per value. When given, whole clusters are resampled (values of one
            cluster, e.g. the samples of one task, are not independent) and each resample's
            statistic is the pooled mean of the values it drew.
        confidence: Coverage of the interval, e.g. 0.95.
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when there are no values.

    Raises:
        ValueError: ``confidence`` is not in (0, 1), ``resamples < 1``, or ``clusters`` does
            not have one label per value.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (math.nan, math.nan)
    if clusters is None:
        sums, counts = data, np.ones_like(data)
    else:
        if len(clusters) != data.size:
            raise ValueError(f"{len(clusters)} cluster labels for {data.size} values")
        index: dict[object, int] = {}
        ids = np.array([index.setdefault(c, len(index)) for c in clusters])
        sums = np.bincount(ids, weights=data)
        counts = np.bincount(ids).astype(float)
    rng = np.random.default_rng(seed)
    size = sums.size
    means = np.empty(resamples)
    per_chunk = max(1, _CHUNK // size)
    for start in range(0, resamples, per_chunk):
        stop = min(start + per_chunk, resamples)
        draw = rng.integers(0, size, size=(stop - start, size))
        means[start:stop] = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
