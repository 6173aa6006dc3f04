"""``simenv record ID`` and ``simenv coverage ID``: re-record cassettes and check what they cover.

Two plain commands for the main app (``app.command("record")(cli_replay.record)``,
``app.command("coverage")(cli_replay.coverage_command)``), also grouped in :data:`app` (a sub-app
``simenv replay record|coverage``) and runnable alone: ``python -m simenv.cli_replay record ID``.
Errors print one line to stderr and exit with code 2; oracle calls missing from a cassette exit
with code 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from simenv.errors import SimenvError
from simenv.registration import load_scenario
from simenv.rollouts.recording import coverage, record_scenario

__all__ = ["app", "coverage_command", "record"]

app = typer.Typer(
    help="Recorded replay: re-record a scenario's cassettes, report what they cover.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ScenarioId = Annotated[str, typer.Argument(help="Scenario id or file.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command("record")
def record(
    scenario_id: ScenarioId,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep recorded entries the oracle no longer uses.")
    ] = False,
    seeds: Annotated[int, typer.Option(help="Episode seeds per task (0 .. N-1).", min=1)] = 1,
) -> None:
    """Re-record the scenario's cassettes from the live tools by playing its oracle on every task.

    Each distinct call goes live once; each cassette is written once at the end, and only if
    every episode ran. Then the new cassettes are checked in strict replay (as `coverage`).
    """
    try:
        scenario = load_scenario(scenario_id)
        report = record_scenario(scenario, seeds=range(seeds), fresh=not keep)
        typer.echo(report.summary())
        checked = coverage(scenario, seeds=range(seeds))
    except SimenvError as exc:
        raise _fail(str(exc)) from None
    typer.echo(checked.summary())
    if not checked.complete:
        raise typer.Exit(1)


@app.command("coverage")
def coverage_command(
    scenario_id: ScenarioId,
    limit: Annotated[int, typer.Option(help="List at most this many entries of each kind.")] = 20,
    seeds: Annotated[int, typer.Option(help="Episode seeds per task (0 .. N-1).", min=1)] = 1,
) -> None:
    """List oracle calls missing from the scenario's cassettes, and entries nothing uses.

    Plays the oracle on every task in strict replay (never live). Exits 1 when calls are missing.
    """
    try:
        report = coverage(load_scenario(scenario_id), seeds=range(seeds))
    except SimenvError as exc:
        raise _fail(str(exc)) from None
    typer.echo(report.summary(limit=limit))
    if not report.complete:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
