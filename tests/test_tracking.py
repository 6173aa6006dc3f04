"""MLflow tracking against a real local SQLite-backed store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simenv.tracking import metric_name

mlflow = pytest.importorskip("mlflow")


def test_metric_names_are_mlflow_safe() -> None:
    assert metric_name("eval/pass@4") == "eval/pass_at_4"
    assert metric_name("eval/pass^2") == "eval/pass_all_2"


def test_eval_logs_run_metrics_artifacts_and_traces(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    simenv_cli = str(Path(sys.executable).with_name("simenv"))
    for args in (["run", "support/Triage-v1", "-n", "3", "--out", "run.jsonl"],
                 ["eval", "run.jsonl", "--html", "report.html", "--mlflow"]):  # fmt: skip
        subprocess.run([simenv_cli, *args], cwd=tmp_path, env=env, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("simenv")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["eval/success"] == 1.0
    assert run.data.metrics["eval/pass_at_1"] == 1.0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"run.jsonl", "report.html"}
    mlflow.set_tracking_uri(store)
    traces = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    assert len(traces) == 3
    names = [s.name for s in traces[0].data.spans]
    assert names[0].startswith("episode ") and "get_plan" in names and "route" in names
