"""MLflow tracking: a run per evaluation or training job, every episode as a trace.

MLflow is optional (``pip install 'simenv[mlflow]'``) and imported only when a
:class:`MLflowLogger` is built; importing this module costs nothing.

One :class:`MLflowLogger` is one MLflow run. It logs parameters, metrics per step
(:meth:`~MLflowLogger.log`, the one method every logger has, so a training loop can take any
``log(metrics, step)`` callable), files as artifacts, an evaluation summary, and episodes as
MLflow traces, so a trajectory can be read in the MLflow UI:

- the trace's root span (type ``AGENT``) holds the task's opening messages as inputs and the
  reward, its components, the evaluation and the termination as outputs; invalid episodes are
  marked ``ERROR``;
- one ``CHAT_MODEL`` span per turn: the conversation the policy saw as inputs (OpenAI
  ``messages``), its reply as outputs (an OpenAI chat completion with one choice);
- under it one ``TOOL`` span per tool call: the arguments as inputs, the result as outputs, its
  provenance and latency as attributes; a failed call is marked ``ERROR``.

Episode records keep each tool call's latency but not the model's, so in the trace a tool span
lasts its recorded latency, a turn span covers its tool calls, and the trace starts when it was
logged. Traces carry tags (``simenv.task_id``, ``simenv.outcome``, ``simenv.run``,
``simenv.scenario_id``) to filter on in the UI, and belong to the run they were logged in.

With no tracking URI given and no ``MLFLOW_TRACKING_URI``, everything goes to ``mlruns.db``, a
SQLite store in the current directory: nothing to start. In any SQLite store, experiments that
simenv creates keep their artifacts in ``mlruns/`` beside the database file.
``mlflow ui --backend-store-uri sqlite:///mlruns.db`` shows it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from simenv.evaluation.metrics import Summary, jsonable, outcome
from simenv.types import Episode, Message

__all__ = ["MLflowLogger", "default_tracking_uri", "metric_name"]

_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")
_PARAM_CHARS = 500
_NO_OP = "MLFLOW_NO_OP_SPAN_TRACE_ID"  # what MLflow's spans carry when tracing failed to start


def metric_name(key: str) -> str:
    """An MLflow-safe metric name: ``eval/pass@4`` -> ``eval/pass_at_4``, ``^`` -> ``_all_``.

    MLflow names allow letters, digits, ``_ - . /`` and spaces; anything else becomes ``_``.
    """
    return _BAD.sub("_", key.replace("@", "_at_").replace("^", "_all_"))


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<current dir>/mlruns.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlruns.db'}"


class MLflowLogger:
    """One MLflow run: parameters, metrics per step, artifacts, summaries and episode traces.

    Use it as a context manager (the run ends ``FAILED`` if the block raises) or call
    :meth:`close`::

        with MLflowLogger(run_name="eval oracle", params={"k": "1,4"}) as logger:
            logger.log(summary.metrics, step=0)
            logger.artifact("runs/oracle.jsonl")
            for episode in episodes:
                logger.trace(episode)

    Args:
        experiment: Experiment name, created if missing.
        run_name: Name of the run.
        tracking_uri: Any MLflow tracking URI (``sqlite:///...``, ``http://host:5000``, a
            directory ...); default :func:`default_tracking_uri`.
        params: Logged once at the start (values are JSON-encoded and cut to 500 characters).
        tags: Run tags.
        run_id: Continue this existing run instead of starting one (``params`` and ``tags``
            are then not logged again).

    Raises:
        ImportError: MLflow is not installed (``pip install 'simenv[mlflow]'``).
    """

    def __init__(
        self,
        experiment: str = "simenv",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.mlflow: Any = importlib.import_module("mlflow")
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.mlflow.set_tracking_uri(self.tracking_uri)
        self.experiment_id: str = self._experiment(experiment)
        if run_id:  # continue that run (a resumed job); its params are already set
            self.run = self.mlflow.start_run(run_id=run_id)
        else:
            self.run = self.mlflow.start_run(
                run_name=run_name, experiment_id=self.experiment_id, tags=dict(tags or {})
            )
        self.run_id: str = self.run.info.run_id
        self.traces = 0
        if params and not run_id:
            self.log_params(params)

    def _experiment(self, name: str) -> str:
        """The id of experiment ``name``, created if missing.

        In a SQLite store, a new experiment keeps its artifacts in ``mlruns/`` beside the
        database file (MLflow's default is ``./mlruns`` under whatever directory is current).
        """
        found = self.mlflow.get_experiment_by_name(name)
        if found is not None:
            experiment_id = str(found.experiment_id)
        else:
            location = None
            if self.tracking_uri.startswith("sqlite:///"):
                database = Path(self.tracking_uri.removeprefix("sqlite:///"))
                location = (database.parent / "mlruns").resolve().as_uri()
            experiment_id = str(self.mlflow.create_experiment(name, artifact_location=location))
        self.mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    # -- the logger protocol ------------------------------------------------------------
    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log the numeric entries of ``metrics`` at ``step`` (names made MLflow-safe)."""
        numeric = {
            metric_name(k): float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if numeric:
            self.mlflow.log_metrics(numeric, step=step)

    def logged_steps(self, key: str) -> set[int]:
        """The steps at which this run already holds metric ``key`` (a resumed job's record)."""
        client = self.mlflow.tracking.MlflowClient(tracking_uri=self.tracking_uri)
        return {int(m.step) for m in client.get_metric_history(self.run_id, metric_name(key))}

    # -- the rest of a run --------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters (strings as they are, other values JSON-encoded; 500 characters max)."""
        self.mlflow.log_params({k: _short(v) for k, v in params.items()})

    def artifact(self, path: str | Path, folder: str | None = None) -> None:
        """Attach a file (the JSONL of episodes, an HTML report ...) to the run.

        Args:
            path: The file.
            folder: Folder inside the run's artifacts (default: the top).
        """
        self.mlflow.log_artifact(str(path), artifact_path=folder)

    def log_summary(self, summary: Summary, step: int = 0) -> None:
        """Log an evaluation summary at ``step`` (a training job may log one every few steps).

        Its metrics, and its counts as the metrics ``eval/episodes``, ``eval/valid_episodes``,
        ``eval/tasks`` and ``eval/groups``; the whole summary (per task, per tool) as the
        artifact ``summary.json`` (``summary-STEP.json`` after step 0).
        """
        counts = {
            "eval/episodes": summary.episodes,
            "eval/valid_episodes": summary.valid,
            "eval/tasks": summary.tasks,
            "eval/groups": summary.groups,
        }
        self.log({**summary.metrics, **counts}, step)
        name = "summary.json" if step == 0 else f"summary-{step}.json"
        self.mlflow.log_dict(summary.to_dict(), name)

    def trace(self, episode: Episode, run: str | None = None) -> str:
        """Log one episode as a trace (root span, a span per turn, a span per tool call).

        Args:
            episode: The episode.
            run: A run label stored in the ``simenv.run`` tag (e.g. the policy).

        Returns:
            The trace id.

        Raises:
            RuntimeError: MLflow could not start the trace (it logs why).
        """
        mlflow = self.mlflow
        start = time.time_ns()
        opening = _opening(episode.messages)
        root = mlflow.start_span_no_context(
            name=f"episode {episode.task_id}",
            span_type="AGENT",
            inputs={"task_id": episode.task_id, "seed": episode.seed, "messages": opening},
            attributes={
                "scenario_id": episode.scenario_id,
                "episode_id": episode.episode_id,
                "policy": json.dumps(episode.policy, default=str),
                "termination": episode.termination,
                "valid": episode.valid,
            },
            tags={
                "simenv.scenario_id": episode.scenario_id,
                "simenv.task_id": episode.task_id,
                "simenv.outcome": outcome(episode),
                "simenv.run": run or str(episode.policy.get("name", "")),
            },
            experiment_id=self.experiment_id,
            start_time_ns=start,
        )
        if root.trace_id == _NO_OP:
            name = episode.episode_id or episode.task_id
            raise RuntimeError(
                f"MLflow did not record the trace of episode {name} (its warning above says "
                "why); check the tracking URI and MLflow's logs"
            )
        now = start
        history = list(opening)
        rest = list(episode.messages[len(opening) :])
        for step in episode.steps:
            # The conversation the policy saw: everything before this turn's assistant message.
            while rest and rest[0].get("role") != "assistant":
                history.append(rest.pop(0))
            turn = mlflow.start_span_no_context(
                name=f"turn {step.turn}",
                span_type="CHAT_MODEL",
                parent_span=root,
                inputs={"messages": list(history)},
                attributes={"turn": step.turn, "reward": step.reward},
                start_time_ns=now,
            )
            results = {r.tool_call_id: r for r in step.tool_results}
            for call in step.tool_calls:
                result = results.get(call.id)
                latency_ns = int((result.latency_s if result else 0.0) * 1e9)
                span = mlflow.start_span_no_context(
                    name=call.name or "malformed tool call",
                    span_type="TOOL",
                    parent_span=turn,
                    inputs=call.arguments,
                    attributes={
                        "tool_call_id": call.id,
                        "provenance": result.provenance if result else "none",
                        "latency_s": result.latency_s if result else 0.0,
                        "is_error": bool(result is None or result.is_error),
                        **({"parse_error": call.error} if call.error else {}),
                    },
                    start_time_ns=now,
                )
                now += latency_ns
                if result is None or result.is_error or call.error:
                    span.set_status("ERROR")
                span.end(outputs={"content": result.content if result else None}, end_time_ns=now)
            turn.end(outputs={"choices": [{"index": 0, "message": step.action}]}, end_time_ns=now)
            if rest:
                history.append(rest.pop(0))
        if not episode.valid:
            root.set_status("ERROR")
        root.end(
            outputs={
                "reward": episode.reward,
                "reward_components": episode.reward_components,
                "evaluation": episode.evaluation,
                "termination": episode.termination,
                "valid": episode.valid,
                **({"error": episode.error} if episode.error else {}),
                "answer": _answer(episode.messages),
            },
            end_time_ns=max(now, start + 1),
        )
        self.traces += 1
        return str(root.trace_id)

    def trace_all(self, episodes: Sequence[Episode], run: str | None = None) -> None:
        """Log every episode as a trace (see :meth:`trace`)."""
        for episode in episodes:
            self.trace(episode, run)

    def close(self, status: str = "FINISHED") -> None:
        """Wait for traces still being exported, then end the run with ``status``."""
        flush = getattr(self.mlflow, "flush_trace_async_logging", None)
        if callable(flush):
            flush()
        self.mlflow.end_run(status=status)

    def __enter__(self) -> MLflowLogger:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close("FAILED" if kind is not None else "FINISHED")


def _opening(messages: Sequence[Message]) -> list[Message]:
    """The messages before the first assistant turn (system prompt, task)."""
    out = []
    for m in messages:
        if m.get("role") == "assistant":
            break
        out.append(m)
    return out


def _answer(messages: Sequence[Message]) -> str | None:
    """The content of the last assistant message, if any."""
    for m in reversed(messages):
        if m.get("role") == "assistant":
            return str(m.get("content") or "")
    return None


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(jsonable(value), default=str)
    return text[:_PARAM_CHARS]
