"""The ``simenv eval`` and ``simenv view`` commands: metrics, reports, transcripts, MLflow.

The commands are plain typer functions; :func:`register` adds them to the ``simenv`` app. A file
written by ``simenv run`` with several ``--policy`` holds several runs: each is summarised on
its own (see :func:`simenv.evaluation.metrics.split_runs`). Errors print one line to stderr
and exit with code 2, like the rest of the CLI.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from simenv.cli.common import err, fail, out
from simenv.errors import SimenvError

if TYPE_CHECKING:
    from simenv.evaluation.metrics import Comparison, Summary
    from simenv.types import Episode

__all__ = ["evaluate", "register", "view"]


def _read(path: Path) -> list[Episode]:
    from simenv.rollouts.store import read_episodes

    try:
        episodes = list(read_episodes(path))
    except FileNotFoundError:
        raise fail(f"{path}: no such file; write one with `simenv run ID --out {path}`") from None
    except (OSError, ValueError, SimenvError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    if not episodes:
        raise fail(f"{path} holds no episodes")
    return episodes


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise fail(f"--k must be comma-separated integers like 1,2,4, not {text!r}") from None
    if not ks or min(ks) < 1:
        raise fail(f"--k needs at least one k, each at least 1 (got {text!r})")
    return ks


def evaluate(
    run_file: Annotated[Path, typer.Argument(help="A JSONL file of episodes (simenv run --out).")],
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare", help="A baseline run on the same tasks: paired difference per task."
        ),
    ] = None,
    k: Annotated[str, typer.Option("--k", help="Comma-separated k of pass@k and pass^k.")] = (
        "1,2,4,8"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")
    ] = None,
    per_task: Annotated[
        bool, typer.Option("--per-task", help="Also print the per-task table.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap intervals.")] = 0,
    mlflow: Annotated[
        bool,
        typer.Option("--mlflow", help="Log a run per policy: metrics, files, episode traces."),
    ] = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlruns.db)."
        ),
    ] = None,
    experiment: Annotated[
        str, typer.Option("--experiment", help="MLflow experiment name.")
    ] = "simenv",
    max_traces: Annotated[
        int | None,
        typer.Option(
            "--max-traces", min=0, help="With --mlflow: trace at most N episodes per run."
        ),
    ] = None,
) -> None:
    """Evaluate a run: reward and success with 95% intervals, pass@k, pass^k, tool use."""
    from simenv.evaluation.metrics import compare as paired
    from simenv.evaluation.metrics import split_runs, summarize

    ks = _ks(k)
    runs = split_runs(_read(run_file))
    summaries = {label: summarize(es, ks, seed=seed) for label, es in runs.items()}
    for label, es in runs.items():
        summaries[label].metrics.update(scenario_metrics(es))
    episodes: dict[str, Sequence[Episode]] = dict(runs)
    comparisons: dict[str, Comparison] = {}
    baseline: str | None = None
    if compare is not None:
        other = split_runs(_read(compare))
        if len(other) > 1:
            raise fail(
                f"{compare} holds {len(other)} runs ({', '.join(other)}); --compare needs a "
                "file with one run"
            )
        ((name, base),) = other.items()
        baseline = f"{name} [{compare.name}]"
        summaries[baseline] = summarize(base, ks, seed=seed)
        episodes[baseline] = base
        comparisons = {label: paired(es, base, seed=seed) for label, es in runs.items()}
    if html_path is not None:
        from simenv.evaluation.report import render_report

        notes = [f"run: {run_file}"] + ([f"baseline: {compare}"] if compare else [])
        page = render_report(
            summaries,
            episodes,
            title=f"simenv eval: {run_file.name}",
            comparisons=comparisons,
            baseline=baseline,
            notes=notes,
        )
        _write(html_path, page)
    if mlflow:
        _log_mlflow(
            run_file,
            runs,
            summaries,
            comparisons,
            html_path,
            MLflowTarget(tracking_uri, experiment, max_traces),
        )
    if as_json:
        result: dict[str, Any] = {
            "file": str(run_file),
            "runs": {label: summaries[label].to_dict() for label in runs},
            "baseline": None,
            "comparisons": {label: c.to_dict() for label, c in comparisons.items()},
        }
        if baseline is not None:
            result["baseline"] = {
                "file": str(compare),
                "label": baseline,
                "summary": summaries[baseline].to_dict(),
            }
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    _print_tables(run_file, summaries, comparisons, baseline, per_task)
    if html_path is not None:
        out.print(f"report written to {escape(str(html_path))}")


def scenario_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """The scenarios' own metrics (``Scenario.metrics``) of a run, for each scenario in it.

    A scenario that is not registered here (its file or entry point is not installed) is left
    out with a note on stderr: the standard metrics do not need it.
    """
    from simenv.registration import load_scenario

    by_scenario: dict[str, list[Episode]] = {}
    for episode in episodes:
        by_scenario.setdefault(episode.scenario_id, []).append(episode)
    out: dict[str, float] = {}
    for scenario_id, group in by_scenario.items():
        try:
            scenario = load_scenario(scenario_id)
        except SimenvError:
            err.print(
                f"[dim]{escape(scenario_id)} is not registered: its own metrics are left out[/]"
            )
            continue
        if scenario.metrics is not None:
            prefix = f"{scenario_id}/" if len(by_scenario) > 1 else ""
            out.update({prefix + k: float(v) for k, v in scenario.metrics(scenario, group).items()})
    return out


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc}") from None


def _cell(metrics: Mapping[str, float], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "–"
    text = f"{value:.3f}"
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"{text} [{low:.3f}, {high:.3f}]" if low is not None and high is not None else text


def _print_tables(
    run_file: Path,
    summaries: Mapping[str, Summary],
    comparisons: Mapping[str, Comparison],
    baseline: str | None,
    per_task: bool,
) -> None:
    labels = list(summaries)
    keys: list[str] = []
    for s in summaries.values():
        keys.extend(
            key
            for key in s.metrics
            if key not in keys
            and not key.endswith(("_low", "_high"))
            and not (key.startswith("tools/") and key.count("/") > 1)
        )
    table = Table(title=f"{run_file}: metrics (95% bootstrap intervals)")
    table.add_column("metric")
    for label in labels:
        table.add_column(escape(label), justify="right")
    table.add_row("episodes (valid)", *(f"{s.episodes} ({s.valid})" for s in summaries.values()))
    table.add_row("tasks / groups", *(f"{s.tasks} / {s.groups}" for s in summaries.values()))
    for key in keys:
        table.add_row(key, *(_cell(s.metrics, key) for s in summaries.values()))
    out.print(table)
    tools = Table(title="tool calls")
    for column in ("run", "tool", "calls", "per episode", "error rate", "mean latency (ms)"):
        tools.add_column(column, justify="left" if column in ("run", "tool") else "right")
    for label, s in summaries.items():
        for name, t in s.tools.items():
            tools.add_row(
                escape(label),
                escape(name),
                f"{t['calls']:.0f}",
                f"{t['calls_per_episode']:.3f}",
                f"{t['error_rate']:.3f}",
                f"{t['latency_s'] * 1000:.2f}",
            )
    if tools.row_count:
        out.print(tools)
    for label, s in summaries.items():
        counts = ", ".join(f"{reason} {n}" for reason, n in s.termination.items())
        out.print(f"[bold]{escape(label)}[/] termination: {escape(counts)}")
        reliability = [k for k in s.ks if f"eval/pass^{k}" in s.metrics]
        if s.conversational and reliability:
            line = ", ".join(f"pass^{k} {s.metrics[f'eval/pass^{k}']:.3f}" for k in reliability)
            out.print(f"  reliability over k trials (a conversation): {escape(line)}")
        short = [
            f"pass@{k}: {s.pass_groups[k]} of {s.groups} groups"
            for k in s.ks
            if s.pass_groups[k] < s.groups
        ]
        if short:
            note = "groups with fewer than k valid samples are left out: " + "; ".join(short)
            out.print(f"  [dim]{escape(note)}[/]")
    if comparisons and baseline is not None:
        _print_comparisons(comparisons, baseline)
    if per_task:
        _print_per_task(summaries)


def _print_comparisons(comparisons: Mapping[str, Comparison], baseline: str) -> None:
    table = Table(title=f"paired comparison with {escape(baseline)} (run − baseline, per task)")
    for column in ("run", "metric", "run mean", "baseline mean", "difference", "95% interval"):
        table.add_column(column, justify="left" if column in ("run", "metric") else "right")
    table.add_column("tasks W/L/T", justify="right")
    for label, c in comparisons.items():
        for metric, d in c.differences.items():
            if c.tasks == 0:
                table.add_row(escape(label), metric, "–", "–", "–", "no shared task", "")
                continue
            table.add_row(
                escape(label),
                metric,
                f"{d.run:.3f}",
                f"{d.baseline:.3f}",
                f"{d.difference:+.3f}",
                f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]",
                f"{d.wins}/{d.losses}/{d.ties}",
            )
    out.print(table)
    for label, c in comparisons.items():
        if c.only_run or c.only_baseline:
            out.print(
                f"  [dim]{escape(label)}: {c.tasks} shared tasks; left out "
                f"{len(c.only_run)} only in the run, {len(c.only_baseline)} only in the "
                "baseline[/]"
            )


def _print_per_task(summaries: Mapping[str, Summary]) -> None:
    columns = ("episode/count", "episode/reward", "eval/success", "episode/turns")
    table = Table(title="per task")
    table.add_column("task")
    table.add_column("run")
    for column in columns:
        table.add_column(column, justify="right")
    for label, s in summaries.items():
        for task, row in s.per_task.items():
            table.add_row(
                escape(task), escape(label), *(_cell(row, c).split(" [")[0] for c in columns)
            )
    out.print(table)


@dataclass(frozen=True)
class MLflowTarget:
    """Where ``--mlflow`` logs: store, experiment, and how many episodes to trace per run."""

    tracking_uri: str | None
    experiment: str
    max_traces: int | None


def _log_mlflow(
    run_file: Path,
    runs: Mapping[str, Sequence[Episode]],
    summaries: Mapping[str, Summary],
    comparisons: Mapping[str, Comparison],
    html_path: Path | None,
    target: MLflowTarget,
) -> None:
    """One MLflow run per run in the file: summary, comparison, files and traces."""
    try:
        from simenv.evaluation.tracking import MLflowLogger
        from simenv.evaluation.viewer import render_transcripts

        for label, episodes in runs.items():
            first = episodes[0]
            params = {
                "run_file": str(run_file),
                "run": label,
                "scenario_id": first.scenario_id,
                "policy": first.policy,
            }
            with MLflowLogger(
                target.experiment,
                run_name=f"eval {run_file.name} {label}",
                tracking_uri=target.tracking_uri,
                params=params,
                tags={"simenv.kind": "eval"},
            ) as logger:
                logger.log_summary(summaries[label])
                comparison = comparisons.get(label)
                if comparison is not None:
                    logger.log(
                        {
                            f"compare/{metric}/{field}": getattr(d, field)
                            for metric, d in comparison.differences.items()
                            for field in ("difference", "ci_low", "ci_high")
                        },
                        step=0,
                    )
                logger.artifact(run_file)
                if html_path is not None:
                    logger.artifact(html_path)
                with tempfile.TemporaryDirectory() as tmp:
                    page = Path(tmp) / "transcripts.html"
                    page.write_text(render_transcripts(episodes, f"{run_file.name}: {label}"))
                    logger.artifact(page)
                logger.trace_all(episodes[: target.max_traces], run=label)
            err.print(
                f"MLflow: run {logger.run_id} ({escape(label)}, {logger.traces} traces) in "
                f"{escape(logger.tracking_uri)}"
            )
    except ImportError:
        raise fail("--mlflow needs MLflow: pip install 'simenv[mlflow]'") from None
    except Exception as exc:  # MLflow's own errors (a bad URI, a store it cannot open ...)
        if isinstance(exc, RuntimeError) or type(exc).__module__.startswith("mlflow"):
            raise fail(f"MLflow: {type(exc).__name__}: {exc}") from None
        raise


def view(
    run_file: Annotated[Path, typer.Argument(help="A JSONL file of episodes.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file (default: RUN.html).")
    ] = None,
) -> None:
    """Render a run's transcripts as one static HTML page (filter by task and outcome)."""
    from simenv.evaluation.viewer import render_transcripts

    episodes = _read(run_file)
    target = output or run_file.with_suffix(".html")
    _write(target, render_transcripts(episodes, f"simenv: {run_file.name}"))
    out.print(f"{len(episodes)} episodes -> {escape(str(target))}")


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``view`` to a typer app (the ``simenv`` command)."""
    app.command("eval")(evaluate)
    app.command("view")(view)
