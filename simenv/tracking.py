"""MLflow tracking (optional: ``pip install 'simenv[mlflow]'``; imported only when used).

One :class:`MLflowLogger` is one MLflow run: parameters, metrics per step (``log``, the one
method every logger has), artifacts, and every episode as an MLflow trace, with a span per turn
and per tool call, so a trajectory can be read in the MLflow UI. With no tracking URI given (and
no ``MLFLOW_TRACKING_URI``), runs go to ``mlruns.db``, a SQLite store in the current directory:
nothing to start; ``mlflow ui --backend-store-uri sqlite:///mlruns.db`` shows them.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simenv.types import Episode

__all__ = ["MLflowLogger", "metric_name"]

_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")


def metric_name(key: str) -> str:
    """An MLflow-safe metric name: ``eval/pass@4`` -> ``eval/pass_at_4``, ``^`` -> ``_all_``."""
    return _BAD.sub("_", key.replace("@", "_at_").replace("^", "_all_"))


class MLflowLogger:
    """An MLflow run.

    Args:
        experiment: Experiment name (created if missing).
        run_name: Name of the run.
        tracking_uri: Any MLflow tracking URI; default ``MLFLOW_TRACKING_URI`` or
            ``sqlite:///mlruns.db`` in the current directory.
        params: Logged once, at the start.
    """

    def __init__(
        self,
        experiment: str = "simenv",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.mlflow: Any = importlib.import_module("mlflow")
        uri = (
            tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{Path.cwd() / 'mlruns.db'}"
        )
        self.mlflow.set_tracking_uri(uri)
        self.experiment_id = self.mlflow.set_experiment(experiment).experiment_id
        self.run = self.mlflow.start_run(run_name=run_name)
        self.run_id: str = self.run.info.run_id
        if params:
            self.mlflow.log_params({k: _short(v) for k, v in params.items()})

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log the numeric entries of ``metrics`` at ``step``."""
        numeric = {
            metric_name(k): float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if numeric:
            self.mlflow.log_metrics(numeric, step=step)

    def artifact(self, path: str | Path) -> None:
        """Attach a file (the JSONL of episodes, an HTML report ...) to the run."""
        self.mlflow.log_artifact(str(path))

    def trace(self, episode: Episode) -> None:
        """Log one episode as a trace: a root span, a span per turn, a span per tool call."""
        mlflow = self.mlflow
        with mlflow.start_span(name=f"episode {episode.task_id}", span_type="AGENT") as root:
            root.set_inputs({"messages": list(episode.messages[:2]), "seed": episode.seed})
            root.set_attributes(
                {"scenario_id": episode.scenario_id, "task_id": episode.task_id,
                 "episode_id": episode.episode_id, "run_id": self.run_id}
            )  # fmt: skip
            for step in episode.steps:
                with mlflow.start_span(name=f"turn {step.turn}", span_type="LLM") as turn:
                    turn.set_inputs({"turn": step.turn})
                    turn.set_outputs(step.action)
                    for call, result in zip(step.tool_calls, step.tool_results, strict=True):
                        with mlflow.start_span(
                            name=call.name or "malformed", span_type="TOOL"
                        ) as span:
                            span.set_inputs(call.arguments)
                            span.set_outputs(
                                {"content": result.content, "is_error": result.is_error}
                            )
                            span.set_attributes(
                                {"provenance": result.provenance, "latency_s": result.latency_s}
                            )
            root.set_outputs(
                {"reward": episode.reward, "evaluation": episode.evaluation,
                 "termination": episode.termination, "valid": episode.valid,
                 "reward_components": episode.reward_components}
            )  # fmt: skip

    def close(self) -> None:
        """Wait for traces still being exported, then end the run."""
        flush = getattr(self.mlflow, "flush_trace_async_logging", None)
        if callable(flush):
            flush()
        self.mlflow.end_run()


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:500]
