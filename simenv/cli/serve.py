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
        str, typer.Option(help="Address to bind; anything but loopback exposes it.")
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
    token: Annotated[
        list[str] | None,
        typer.Option(
            help="A bearer token clients must send (repeat for several); default: those of "
            "SIMENV_SERVER_TOKENS, else one generated and printed at start.",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Accept requests without a token; refused unless --host is loopback.",
        ),
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="Threads answering requests at once (steps run there).")
    ] = 64,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Connections open at once; 503 beyond.")
    ] = 512,
    request_timeout: Annotated[
        float,
        typer.Option(min=0.001, help="Seconds for a request to arrive whole; 408 beyond."),
    ] = 30.0,
) -> None:
    """Serve scenarios over HTTP for agents running elsewhere (docs/server.md); Ctrl-C stops it.

    Clients authenticate with `Authorization: Bearer TOKEN` (RemoteEnv and `simenv run
    --server` read SIMENV_SERVER_TOKEN); each environment is visible to its creator's token only.
    """
    from simenv.server import RolloutServer
    from simenv.server import serve as run_server

    def ready(server: RolloutServer) -> None:
        served = sorted(server.app.envs.scenarios)
        out.print(f"simenv rollout server on {server.url} (Ctrl-C stops it)", soft_wrap=True)
        out.print(f"scenarios served: {', '.join(served)}", soft_wrap=True)
        if server.generated_token:
            out.print(
                f"token: {server.generated_token} (clients: export "
                f"SIMENV_SERVER_TOKEN={server.generated_token}; a restart makes a new one "
                "unless given --token or SIMENV_SERVER_TOKENS)",
                soft_wrap=True,
                highlight=False,
            )
        elif not server.app.auth.required:
            out.print("authentication is off (--no-auth): any local process can connect")
        else:
            out.print(f"authentication: {len(server.app.auth)} token(s) accepted")
        sys.stdout.flush()

    ids = [scenario(scenario_id).id for scenario_id in scenario_ids or ()] or None
    # Ctrl-C and SIGTERM (a process manager, `docker stop`) both stop it cleanly, even where
    # the parent shell started it with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run_server(
            ids,
            host,
            port,
            max_envs,
            idle_timeout,
            oracle,
            on_ready=ready,
            tokens=token,
            auth=not no_auth,
            workers=workers,
            max_connections=max_connections,
            request_timeout_s=request_timeout,
        )
    except (SimenvError, ValueError) as exc:  # ValueError: --no-auth off loopback, a bad token
        raise fail(str(exc)) from None
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise fail(f"cannot listen on {host}:{port}: {exc}") from None
    out.print("stopped; every environment was closed")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)
