"""``simenv docker build-base`` and ``simenv docker reap``: the base image, leftover containers."""

from __future__ import annotations

from typing import Annotated

import typer

from simenv.cli.common import fail
from simenv.errors import SimenvError

__all__ = ["register"]


def build_base(
    tag: Annotated[str, typer.Option(help="Image tag to create.")] = "simenv/base:bookworm-py3",
    mirror: Annotated[
        str, typer.Option(help="Debian mirror for debootstrap.")
    ] = "http://deb.debian.org/debian",
    force: Annotated[bool, typer.Option(help="Rebuild even if the image exists.")] = False,
) -> None:
    """Build the base image offline (debootstrap minbase + python3, docker import); cached."""
    from simenv.tools.docker.image import build_base_image

    try:
        built = build_base_image(tag, mirror=mirror, force=force, log=typer.echo)
    except SimenvError as exc:
        raise fail(str(exc)) from None
    typer.echo(built)


def reap(
    everything: Annotated[
        bool, typer.Option("--all", help="Also remove containers of runs still alive.")
    ] = False,
    run: Annotated[str | None, typer.Option(help="Remove only this run id's containers.")] = None,
) -> None:
    """Remove containers left behind by runs that ended (by their simenv.managed label)."""
    from simenv.tools.docker.pool import reap as reap_containers

    try:
        removed = reap_containers(everything=everything, run=run)
    except SimenvError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"removed {len(removed)} container{'s' * (len(removed) != 1)}")


def register(app: typer.Typer) -> None:
    """Add the ``docker`` command group (``build-base``, ``reap``) to ``app``."""
    group = typer.Typer(
        help="Docker sandboxes: the base image and leftover containers.", no_args_is_help=True
    )
    group.command("build-base")(build_base)
    group.command("reap")(reap)
    app.add_typer(group, name="docker")
