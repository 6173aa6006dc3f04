"""``simenv record ID`` and ``simenv coverage ID``: re-record cassettes and check what they cover.

Errors print one line to stderr and exit with code 2; oracle calls missing from a cassette exit
with code 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from simenv.cli.common import fail, scenario
from simenv.errors import SimenvError
from simenv.rollouts.recording import coverage, record_scenario

__all__ = ["coverage_command", "record", "register"]

ScenarioId = Annotated[str, typer.Argument(help="Scenario id or file.")]


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
    loaded = scenario(scenario_id)
    try:
        report = record_scenario(loaded, seeds=range(seeds), fresh=not keep)
        typer.echo(report.summary())
        checked = coverage(loaded, seeds=range(seeds))
    except SimenvError as exc:
        raise fail(str(exc)) from None
    typer.echo(checked.summary())
    if not checked.complete:
        raise typer.Exit(1)


def coverage_command(
    scenario_id: ScenarioId,
    limit: Annotated[int, typer.Option(help="List at most this many entries of each kind.")] = 20,
    seeds: Annotated[int, typer.Option(help="Episode seeds per task (0 .. N-1).", min=1)] = 1,
) -> None:
    """List oracle calls missing from the scenario's cassettes, and entries nothing uses.

    Plays the oracle on every task in strict replay (never live). Exits 1 when calls are missing.
    """
    loaded = scenario(scenario_id)
    try:
        report = coverage(loaded, seeds=range(seeds))
    except SimenvError as exc:
        raise fail(str(exc)) from None
    typer.echo(report.summary(limit=limit))
    if not report.complete:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``record`` and ``coverage`` to ``app``."""
    app.command("record")(record)
    app.command("coverage")(coverage_command)
