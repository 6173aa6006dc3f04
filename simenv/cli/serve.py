"""``simenv serve``: scenarios over HTTP for agents that run elsewhere (docs/server.md)."""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from simenv.cli.common import fail, out, scenario
from simenv.errors import SimenvError

__all__ = ["register"]


def serve(
    scenario_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Scenario ids or files to serve (default: every registered one)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but 127.0.0.1 exposes it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 8000,
    max_envs: Annotated[
        int, typer.Option(min=1, help="Environments live at once; 429 beyond.")
    ] = 64,
    idle_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds without a request before an env is closed.")
    ] = 600.0,
    oracle: Annotated[
        bool,
        typer.Option(
            "--oracle",
            help="Also serve the gold turns (/envs/ID/oracle) for Oracle rollouts; never where "
            "an agent under training can reach the server.",
        ),
    ] = False,
) -> None:
    """Serve scenarios over HTTP for agents running elsewhere (docs/server.md); Ctrl-C stops it."""
    from simenv.server import RolloutServer
    from simenv.server import serve as run_server

    def ready(server: RolloutServer) -> None:
        served = sorted(server.app.envs.scenarios)
        out.print(f"simenv rollout server on {server.url} (Ctrl-C stops it)", soft_wrap=True)
        out.print(f"scenarios served: {', '.join(served)}", soft_wrap=True)
        sys.stdout.flush()

    ids = [scenario(scenario_id).id for scenario_id in scenario_ids or ()] or None
    # Ctrl-C and SIGTERM (a process manager, `docker stop`) both stop it cleanly, even where
    # the parent shell started it with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run_server(ids, host, port, max_envs, idle_timeout, oracle, on_ready=ready)
    except SimenvError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise fail(f"cannot listen on {host}:{port}: {exc}") from None
    out.print("stopped; every environment was closed")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)
