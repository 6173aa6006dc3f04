"""What every command shares: the consoles, the one way an error is reported, loading a scenario.

Errors print one readable line to stderr (``error: ...``) and exit with code 2; a command whose
check fails exits with 1 on its own.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.markup import escape

from simenv.errors import SimenvError
from simenv.registration import load_scenario
from simenv.scenario import Scenario

__all__ = ["SPLITS", "err", "fail", "out", "scenario"]

out = Console()
err = Console(stderr=True)

SPLITS: dict[str, Literal["train", "eval"] | None] = {"train": "train", "eval": "eval", "all": None}
"""``--split`` values and the split each names (``all``: every task)."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` to stderr; return the ``typer.Exit`` for the caller to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def scenario(scenario_id: str) -> Scenario:
    """The scenario an id or a file names; a failure is a clean error, not a traceback.

    When the code of a scenario file raises, the message says which line of that file.
    """
    try:
        return load_scenario(scenario_id)
    except SimenvError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # the code of a scenario file failed: say where, not a traceback
        path = str(Path(scenario_id).resolve())
        lines = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
        where = f" (line {lines[-1].lineno})" if lines else ""
        raise fail(f"could not load {scenario_id}{where}: {type(exc).__name__}: {exc}") from None
