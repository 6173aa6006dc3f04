"""``simenv import sop PATH --id ns/Name-vN``: check an SOP folder and make its id runnable.

Wired into the main command by :func:`register`. The import reads and checks the folder (a broken
one fails with the file and the fix), plays the oracle and a do-nothing answer on every task
(oracle 1.0, null 0), then records the id so ``simenv run ID`` and ``simenv check ID`` find it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from simenv.cli.common import fail, out
from simenv.errors import SimenvError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``import`` command group (with its ``sop`` subcommand) to ``app``."""
    group = typer.Typer(help="Import environments written in other formats.", no_args_is_help=True)

    @group.command("sop")
    def import_sop_command(
        path: Annotated[Path, typer.Argument(help="The SOP folder (sop.txt, toolspecs.json ...).")],
        scenario_id: Annotated[
            str | None,
            typer.Option("--id", help="Id to register, ns/Name-vN (default: from simenv.yaml)."),
        ] = None,
        verify: Annotated[
            bool, typer.Option(help="Play the oracle and a null answer on every task.")
        ] = True,
    ) -> None:
        """Check an SOP folder and register it as a scenario runnable by id."""
        from simenv.checks.sop import self_test
        from simenv.registration import import_sop
        from simenv.sop import load_sop

        try:
            scenario = load_sop(path, scenario_id)
            problems = self_test(scenario) if verify else []
            if problems:
                shown = "; ".join(problems[:5])
                more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
                raise SimenvError(
                    f"{path}: the gold outputs do not hold up: {shown}{more}; check the output "
                    "columns and the expected writes in the CSV"
                )
            scenario = import_sop(path, scenario.id)
        except SimenvError as exc:
            raise fail(str(exc)) from None
        train, evaluation = len(scenario.split("train")), len(scenario.split("eval"))
        tools = ", ".join(t.name for t in scenario.tools)
        out.print(
            f"imported [bold]{escape(scenario.id)}[/] from {escape(str(path))}: "
            f"{train} train + {evaluation} eval tasks; tools: {escape(tools)}",
            soft_wrap=True,
        )
        if verify:
            out.print(f"oracle 1.0 and null 0 on all {len(scenario.tasks)} tasks")
        out.print(f"next: simenv check {escape(scenario.id)}")

    app.add_typer(group, name="import")
