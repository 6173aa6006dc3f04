"""``simenv docker``: build the base image, remove leftover containers.

Added to the main command as a sub-app (``app.add_typer(cli_docker.app, name="docker")``);
also runnable alone: ``python -m simenv.cli_docker build-base``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from simenv.errors import SimenvError

app = typer.Typer(
    help="Docker sandboxes: the base image and leftover containers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command("build-base")
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
        raise _fail(str(exc)) from None
    typer.echo(built)


@app.command("reap")
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
        raise _fail(str(exc)) from None
    typer.echo(f"removed {len(removed)} container{'s' * (len(removed) != 1)}")


if __name__ == "__main__":
    app()
