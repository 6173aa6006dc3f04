"""``simenv check``: validate scenarios (contract, determinism, isolation, fuzzing, rewards ...)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from simenv.cli.common import fail, out, scenario

__all__ = ["register"]


def check(
    scenario_ids: Annotated[list[str], typer.Argument(help="Scenario ids or files.")],
    fast: Annotated[bool, typer.Option(help="Fewer tasks, seeds and fuzzing steps.")] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only these checks; repeatable.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Base seed of every episode.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Validate scenarios: contract, determinism, isolation, fuzzing, reward sanity ..."""
    from simenv.checks import check as run_checks

    reports = []
    styles = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}
    for scenario_id in scenario_ids:
        s = scenario(scenario_id)
        if not as_json:
            out.rule(s.id)

        def show_result(result: Any) -> None:
            if not as_json:
                style = styles[result.status]
                message = escape(f"{result.check}: {result.message}")
                out.print(f"[{style}]{result.status.upper():5}[/] {message}")

        try:
            report = run_checks(s, fast=fast, only=only, seed=seed, on_result=show_result)
        except ValueError as exc:
            raise fail(str(exc)) from None
        reports.append(report)
        if not as_json:
            for failure in report.failures:
                out.print(f"\n[bold red]{escape(failure.check)}[/]: {escape(failure.message)}")
                if failure.task_id is not None:
                    out.print(f"  task={escape(failure.task_id)} seed={failure.seed}")
                for action in failure.reproduction or []:
                    out.print(f"  step: {escape(json.dumps(action, default=str)[:300])}")
            out.print(f"{'ok' if report.ok else 'FAILED'} in {report.seconds:.1f}s")
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in reports], indent=2, default=str) + "\n")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``check`` to ``app``."""
    app.command("check")(check)
