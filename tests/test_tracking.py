"""MLflow tracking against a real local SQLite-backed store: runs, metrics, artifacts, traces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
import typer
from typer.testing import CliRunner

from simenv import Episode, Step, ToolCall, ToolResult
from simenv.cli import app as simenv_app
from simenv.cli.evaluate import register
from simenv.evaluation.metrics import summarize
from simenv.evaluation.tracking import MLflowLogger, metric_name

# MLflow warns about its own type hints when it sets up tracing; under `-W error` it would
# swallow the error and hand out no-op spans (the logger then raises, see test below).
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")
app = typer.Typer()
register(app)


def test_metric_names_are_mlflow_safe() -> None:
    assert metric_name("eval/pass@4") == "eval/pass_at_4"
    assert metric_name("eval/pass^2") == "eval/pass_all_2"
    assert metric_name("tools/<malformed>/error_rate") == "tools/_malformed_/error_rate"


def test_importing_simenv_evaluation_modules_imports_no_mlflow() -> None:
    code = (
        "import sys, simenv.evaluation.tracking, simenv.cli.evaluate, simenv.evaluation.metrics, "
        "simenv.evaluation.viewer, simenv.evaluation.report; "
        "heavy = {'mlflow', 'torch', 'transformers', 'matplotlib'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)  # fmt: skip
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for one SQLite store shared by the tests (creating one takes seconds)."""
    return tmp_path_factory.mktemp("mlflow")


def episode(task: str, *, failed_call: bool = False, valid: bool = True) -> Episode:
    calls = (ToolCall("c1", "lookup", {"id": "O-1"}), ToolCall("c2", "refund", {"id": "O-1"}))
    results = (
        ToolResult("c1", "lookup", '{"total": 5}', False, "replay", 0.25),
        ToolResult("c2", "refund", "Error: no", failed_call, "sandbox", 0.5),
    )
    messages: tuple[dict[str, Any], ...] = (
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": f"please {task}"},
        {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in calls]},
        *(r.to_message() for r in results),
        {"role": "assistant", "content": "Refunded."},
    )
    steps = (
        Step(1, messages[2], calls, results),
        Step(2, messages[-1], reward=1.0, terminated=True),
    )
    return Episode("test/Desk-v1", task, 3, messages, steps, 1.0 if valid else 0.0,
                   reward_components={"refund": 1.0}, evaluation=1.0 if valid else None,
                   termination="answer" if valid else "infra_error", valid=valid,
                   error=None if valid else "sandbox down", episode_id=f"id-{task}",
                   policy={"name": "scripted"})  # fmt: skip


def test_logger_writes_run_metrics_artifacts_and_traces(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(store)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    notes = store / "notes.txt"
    notes.write_text("hello")
    episodes = [episode("t1"), episode("t2", failed_call=True), episode("t3", valid=False)]
    with MLflowLogger("unit", run_name="job", params={"lr": 0.1, "ks": [1, 2]}) as logger:
        assert logger.tracking_uri == f"sqlite:///{store / 'mlruns.db'}"  # the default store
        logger.log({"loss/policy": 2.0, "eval/pass@4": 0.5, "flag": True, "name": "x"}, step=0)
        logger.log({"loss/policy": 1.5}, step=1)
        logger.artifact(notes)
        logger.log_summary(summarize(episodes, ks=(1,)))
        ids = [logger.trace(e, run="scripted") for e in episodes]
    assert (store / "mlruns.db").exists()

    client = mlflow.MlflowClient(tracking_uri=logger.tracking_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "job"
    assert run.data.params["lr"] == "0.1" and run.data.params["ks"] == "[1, 2]"
    assert run.data.metrics["eval/episodes"] == 3 and run.data.metrics["eval/valid_episodes"] == 2
    history = client.get_metric_history(logger.run_id, "loss/policy")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.5)]
    assert run.data.metrics["eval/pass_at_4"] == 0.5 and "flag" not in run.data.metrics
    assert run.data.metrics["eval/success"] == 1.0  # the invalid episode is left out
    assert run.data.metrics["episode/invalid_rate"] == pytest.approx(1 / 3)
    artifacts = {a.path for a in client.list_artifacts(logger.run_id)}
    assert artifacts == {"notes.txt", "summary.json"}
    summary = json.loads(Path(client.download_artifacts(logger.run_id, "summary.json",
                                                        str(store))).read_text())  # fmt: skip
    assert summary["tools"]["refund"]["errors"] == 1

    traces = mlflow.search_traces(run_id=logger.run_id, return_type="list")
    assert sorted(t.info.trace_id for t in traces) == sorted(ids)
    by_task = {t.info.tags["simenv.task_id"]: t for t in traces}
    assert {t: x.info.tags["simenv.outcome"] for t, x in by_task.items()} == {
        "t1": "success", "t2": "success", "t3": "invalid"
    }  # fmt: skip
    spans = by_task["t2"].data.spans
    root = spans[0]
    assert (root.name, root.span_type, root.parent_id) == ("episode t2", "AGENT", None)
    assert root.outputs["reward"] == 1.0 and root.outputs["answer"] == "Refunded."
    turns = [s for s in spans if s.span_type == "CHAT_MODEL"]
    assert [t.name for t in turns] == ["turn 1", "turn 2"]
    assert all(t.parent_id == root.span_id for t in turns)
    assert [m["role"] for m in turns[1].inputs["messages"]] == [
        "system", "user", "assistant", "tool", "tool"
    ]  # fmt: skip
    assert turns[1].outputs["choices"][0]["message"]["content"] == "Refunded."
    tools = {s.name: s for s in spans if s.span_type == "TOOL"}
    assert set(tools) == {"lookup", "refund"}
    assert all(s.parent_id == turns[0].span_id for s in tools.values())
    lookup, refund = tools["lookup"], tools["refund"]
    assert lookup.inputs == {"id": "O-1"} and lookup.outputs == {"content": '{"total": 5}'}
    assert lookup.attributes["provenance"] == "replay"
    assert lookup.end_time_ns - lookup.start_time_ns == pytest.approx(0.25e9, abs=1e3)
    assert refund.status.status_code == "ERROR" and lookup.status.status_code == "OK"
    assert by_task["t3"].data.spans[0].status.status_code == "ERROR"


def test_a_failing_job_marks_its_run_failed(store: Path) -> None:
    uri = f"sqlite:///{store / 'mlruns.db'}"
    with pytest.raises(RuntimeError), MLflowLogger("unit", tracking_uri=uri) as logger:
        raise RuntimeError("boom")
    assert mlflow.MlflowClient(tracking_uri=uri).get_run(logger.run_id).info.status == "FAILED"


def test_a_continued_run_reports_the_steps_it_already_holds(store: Path) -> None:
    """A resumed job asks MLflow (not its own files) which steps were sent before the kill."""
    uri = f"sqlite:///{store / 'mlruns.db'}"
    with MLflowLogger("unit", tracking_uri=uri) as first:
        assert first.logged_steps("eval/pass@4") == set()
        first.log({"eval/pass@4": 0.5, "loss/policy": 1.0}, step=0)
        first.log({"loss/policy": 0.5}, step=2)
    with MLflowLogger("unit", tracking_uri=uri, run_id=first.run_id) as again:
        assert again.logged_steps("loss/policy") == {0, 2}
        assert again.logged_steps("eval/pass@4") == {0}  # the name is made MLflow-safe
        assert again.logged_steps("episode/reward") == set()


def test_eval_mlflow_logs_a_run_per_policy(store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    run_file = tmp_path / "run.jsonl"
    args = ["run", "support/Triage-v1", "-p", "oracle", "-p", "null", "-n", "3",
            "--out", str(run_file)]  # fmt: skip
    assert runner.invoke(simenv_app, args).exit_code == 0
    uri = f"sqlite:///{store / 'mlruns.db'}"
    report = tmp_path / "report.html"
    result = runner.invoke(app, ["eval", str(run_file), "--html", str(report), "--mlflow",
                                 "--tracking-uri", uri, "--experiment", "cli"])  # fmt: skip
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cli")
    runs: dict[str, Any] = {
        r.data.params["run"]: r for r in client.search_runs([experiment.experiment_id])
    }
    assert set(runs) == {"oracle", "null"}
    oracle, null = runs["oracle"], runs["null"]
    assert oracle.info.run_name == "eval run.jsonl oracle"
    assert oracle.data.metrics["eval/success"] == 1.0 and null.data.metrics["eval/success"] == 0
    assert oracle.data.metrics["eval/pass_at_1"] == 1.0
    assert oracle.data.tags["simenv.kind"] == "eval"
    artifacts = {a.path for a in client.list_artifacts(oracle.info.run_id)}
    assert artifacts == {"run.jsonl", "report.html", "transcripts.html", "summary.json"}
    stored = store / "mlruns" / oracle.info.run_id / "artifacts"
    assert (stored / "transcripts.html").exists()  # beside the database, whatever the cwd
    mlflow.set_tracking_uri(uri)
    traces = mlflow.search_traces(run_id=oracle.info.run_id, return_type="list")
    assert len(traces) == 3
    names = [s.name for s in traces[0].data.spans]
    assert names[0].startswith("episode ") and "get_plan" in names and "route" in names
    assert {t.info.tags["simenv.run"] for t in traces} == {"oracle"}


def test_eval_mlflow_compare_logs_the_paired_difference_and_max_traces_caps_traces(
    store: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    runs = {}
    for policy in ("oracle", "null"):
        runs[policy] = tmp_path / f"{policy}.jsonl"
        args = ["run", "support/Triage-v1", "-p", policy, "-n", "3", "--out", str(runs[policy])]
        assert runner.invoke(simenv_app, args).exit_code == 0
    uri = f"sqlite:///{store / 'mlruns.db'}"
    args = ["eval", str(runs["oracle"]), "--compare", str(runs["null"]), "--mlflow",
            "--tracking-uri", uri, "--experiment", "compare", "--max-traces", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("compare")
    (run,) = client.search_runs([experiment.experiment_id])
    metrics = run.data.metrics
    assert metrics["compare/episode/reward/difference"] == 1.0  # oracle 1.0 - null 0.0, per task
    assert (
        metrics["compare/episode/reward/ci_low"] <= 1.0 <= metrics["compare/episode/reward/ci_high"]
    )
    assert metrics["compare/eval/success/difference"] == 1.0
    mlflow.set_tracking_uri(uri)
    traces = mlflow.search_traces(run_id=run.info.run_id, return_type="list")
    assert len(traces) == 1  # of 3 episodes: --max-traces 1
