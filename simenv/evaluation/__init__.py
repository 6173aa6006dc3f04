"""Evaluation and observation of episode records: metrics, reports, charts, transcripts, MLflow.

Everything here reads :class:`~simenv.types.Episode` records, wherever they came from (a local
run, a Ray cluster, a JSONL file, a rollout server), and never plays an episode itself:

- ``metrics``: reward, success, pass@k, pass^k, tool use, paired comparisons (``estimators``
  holds the pure estimators and bootstrap intervals);
- ``report``: the self-contained HTML report of ``simenv eval --html``, with ``charts`` (SVG);
- ``viewer``: every transcript on one static HTML page (``simenv view``);
- ``tracking``: MLflow runs, metrics and episode traces (MLflow imported only when used).

The metrics API is re-exported here: ``from simenv.evaluation import summarize, pass_at_k``.
"""

from simenv.evaluation.estimators import bootstrap_ci, pass_at_k, pass_hat_k
from simenv.evaluation.metrics import (
    DEFAULT_KS,
    Comparison,
    Difference,
    Summary,
    compare,
    group_key,
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
    "group_key",
    "pass_at_k",
    "pass_hat_k",
    "split_runs",
    "summarize",
]
