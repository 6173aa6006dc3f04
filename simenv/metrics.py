"""Deprecated: moved to :mod:`simenv.evaluation.metrics`; this alias is kept for one release."""

import warnings

from simenv.evaluation.estimators import bootstrap_ci, pass_at_k, pass_hat_k
from simenv.evaluation.metrics import (
    DEFAULT_KS,
    Comparison,
    Difference,
    Summary,
    compare,
    episode_tokens,
    group_key,
    jsonable,
    outcome,
    run_label,
    split_runs,
    summarize,
)

__all__ = [
    "DEFAULT_KS",
    "Comparison",
    "Difference",
    "Summary",
    "bootstrap_ci",
    "compare",
    "episode_tokens",
    "group_key",
    "jsonable",
    "outcome",
    "pass_at_k",
    "pass_hat_k",
    "run_label",
    "split_runs",
    "summarize",
]

warnings.warn(
    "simenv.metrics moved to simenv.evaluation.metrics; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
