"""``simenv run``: roll out episodes with one or more policies, locally, on Ray or on a server."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from simenv.cli.common import SPLITS, err, fail, out, scenario
from simenv.errors import SimenvError
from simenv.scenario import Scenario
from simenv.types import Episode

if TYPE_CHECKING:
    from simenv.rollouts.policies.base import Policy

__all__ = ["register"]


def _summary(policy: str, episodes: list[Episode]) -> dict[str, Any]:
    valid = [e for e in episodes if e.valid]
    n = max(len(valid), 1)
    return {
        "policy": policy,
        "episodes": len(episodes),
        "mean_reward": sum(e.reward for e in valid) / n,
        "success_rate": sum(e.success for e in valid) / n,
        "mean_turns": sum(e.turns for e in valid) / n,
        "tool_errors_per_episode": sum(e.tool_errors for e in valid) / n,
        "invalid": len(episodes) - len(valid),
    }


def _policy(name: str, seed: int) -> Policy:
    """The policy a ``--policy`` string names; a model that cannot be loaded is a clean error."""
    from simenv.rollouts.policies import from_string

    try:
        return from_string(name, seed=seed)
    except (ImportError, OSError) as exc:  # e.g. hf:PATH without the train extra or the model
        raise fail(f"cannot load policy {name!r}: {type(exc).__name__}: {exc}") from None


def run(
    scenario_id: Annotated[str, typer.Argument(help="Scenario id or file.")],
    policy: Annotated[
        list[str],
        typer.Option(
            "--policy", "-p", help="oracle, null, random, hf:PATH or openai:MODEL@URL; repeatable."
        ),
    ] = ["oracle"],  # noqa: B006 - typer reads the default
    n: Annotated[
        int | None,
        typer.Option("-n", min=1, help="Episodes per policy (default: every task of the split)."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Samples per task (a GRPO group).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first task; task i gets seed+i.")] = 0,
    split: Annotated[str, typer.Option(help="train, eval or all.")] = "eval",
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write one JSON episode per line here.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run already in --out.")] = False,
    batch_size: Annotated[int, typer.Option(help="Episodes stepped in lockstep.")] = 64,
    backend: Annotated[str, typer.Option(help="local or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local one).")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="Play on the environments of a rollout server (simenv serve) at URL."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Roll out episodes with one or more policies and summarise them."""
    from rich.progress import Progress

    from simenv.rollouts import plan_jobs
    from simenv.rollouts import run as run_jobs
    from simenv.rollouts.store import EpisodeStore

    s = scenario(scenario_id)
    if split not in ("train", "eval", "all"):
        raise fail(f"--split must be train, eval or all, not {split!r}")
    if backend not in ("local", "ray"):
        raise fail(f"--backend must be local or ray, not {backend!r}")
    if server is not None and backend == "ray":
        raise fail("--server and --backend ray both say where environments live; give one")
    try:
        base_jobs = plan_jobs(s, split=SPLITS[split], samples=samples, seed=seed, limit=n)
        policies = [(name, _policy(name, seed)) for name in policy]
        store = EpisodeStore(out_path, resume=resume) if out_path else None
    except (SimenvError, ValueError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write --out {out_path}: {exc}") from None
    pool: Any = None
    rows = []
    try:
        pool = _pool(s, backend, ray_address, server)
        with Progress(console=err, transient=True) as progress:
            for name, chosen in policies:
                # Each policy's jobs get their own keys, so one file can hold them all.
                tag = name if len(policies) > 1 else ""
                jobs = [replace(j, tag=tag) for j in base_jobs]
                bar = progress.add_task(f"{name}", total=len(jobs))

                def advance(_: Episode, bar: Any = bar) -> None:
                    progress.advance(bar)

                episodes = run_jobs(
                    s,
                    chosen,
                    jobs,
                    batch_size=batch_size,
                    store=store,
                    pool=pool,
                    on_episode=advance,
                )
                progress.update(bar, completed=len(jobs))
                rows.append(_summary(name, episodes))
    except SimenvError as exc:
        raise fail(str(exc)) from None
    finally:
        if store is not None:
            store.close()
        closing: SimenvError | None = None
        if pool is not None:
            try:
                pool.close()
            except SimenvError as exc:  # reported below, unless another error is on its way
                closing = exc
    if closing is not None:
        raise fail(f"closing the environments failed: {closing}")
    if as_json:
        out.print_json(json.dumps({"scenario_id": s.id, "policies": rows}))
        return
    _print_summaries(f"{s.id} - {split} split", rows)
    if out_path:
        out.print(f"episodes written to {out_path}")


def _pool(s: Scenario, backend: str, ray_address: str | None, server: str | None) -> Any:
    """Where the environments live: a Ray pool, a rollout server's, or None (this process)."""
    if backend == "ray":
        from simenv.rollouts.ray import RayPool

        return RayPool(s, address=ray_address)
    if server is not None:
        from simenv.server import RemotePool

        return RemotePool(server, s)
    return None


def _print_summaries(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    columns = ("policy", "episodes", "mean reward", "success", "turns", "tool errors", "invalid")
    for column in columns:
        table.add_column(column, justify="right" if column != "policy" else "left")
    for r in rows:
        table.add_row(
            r["policy"],
            str(r["episodes"]),
            f"{r['mean_reward']:.3f}",
            f"{r['success_rate']:.1%}",
            f"{r['mean_turns']:.2f}",
            f"{r['tool_errors_per_episode']:.2f}",
            str(r["invalid"]),
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run")(run)
