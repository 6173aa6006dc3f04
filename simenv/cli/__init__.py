"""The ``simenv`` command: one module per command group, each adding its commands to :data:`app`.

- ``scenarios``: ``list``, ``show``;  ``run``: ``run``;  ``check``: ``check``;
- ``evaluate``: ``eval``, ``view``;  ``replay``: ``record``, ``coverage``;
- ``sop``: ``import sop``;  ``docker``: ``docker build-base``, ``docker reap``;
- ``serve``: ``serve``;  ``gateway``: ``gateway``;
- ``common``: the consoles, errors and scenario loading they share.

Every module exposes ``register(app)``. Commands of other distributions (the ``simenv.cli``
entry-point group, e.g. ``train``) are added when the command starts (:func:`main`). Every
command takes a registered id (``namespace/Name-vN``) or the path of a scenario file. Errors
print one readable line to stderr and exit with code 2; a failed check exits with 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from simenv import __version__
from simenv.cli import check, docker, evaluate, gateway, replay, run, scenarios, serve, sop
from simenv.cli.common import err, out

__all__ = ["app", "main"]

app = typer.Typer(
    help="simenv: trustworthy multi-turn environments for training LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"simenv {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """simenv: trustworthy multi-turn environments for training LLM agents."""


for group in (scenarios, run, check, serve, gateway, evaluate, sop, replay, docker):
    group.register(app)


def _plugins() -> None:
    """Add the commands other distributions declare (group ``simenv.cli``), e.g. ``train``."""
    from importlib.metadata import entry_points

    known = {c.name for c in app.registered_commands}
    for ep in entry_points(group="simenv.cli"):
        if ep.name in known:
            continue
        try:
            app.command(ep.name)(ep.load())
        except ImportError as exc:  # the plugin's extra is not installed
            err.print(f"[dim]simenv: command {ep.name!r} unavailable ({exc})[/]")


def main() -> None:
    """Entry point of the ``simenv`` script."""
    _plugins()
    app()
