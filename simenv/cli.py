"""The ``simenv`` command: list, show, run and check scenarios.

Every command takes a registered id (``namespace/Name-vN``) or the path of a scenario file.
Errors print one readable line to stderr and exit with code 2; a failed check exits with 1.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

import simenv
from simenv import cli_docker, cli_replay
from simenv.cli_eval import register as register_eval
from simenv.cli_sop import register as register_sop
from simenv.errors import SimenvError

if TYPE_CHECKING:
    from simenv.rollouts.policies.base import Policy

app = typer.Typer(
    help="simenv: trustworthy multi-turn environments for training LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

_SPLITS: dict[str, Literal["train", "eval"] | None] = {
    "train": "train",
    "eval": "eval",
    "all": None,
}


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _scenario(scenario_id: str) -> simenv.Scenario:
    try:
        return simenv.load_scenario(scenario_id)
    except SimenvError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # the code of a scenario file failed: say where, not a traceback
        path = str(Path(scenario_id).resolve())
        lines = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
        where = f" (line {lines[-1].lineno})" if lines else ""
        raise _fail(f"could not load {scenario_id}{where}: {type(exc).__name__}: {exc}") from None


def _type_name(schema: dict[str, Any]) -> str:
    """A short type for an argument's JSON schema: ``"a" | "b"``, ``array[string]``, ..."""
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_type_name(option) for option in schema["anyOf"])
    kind = schema.get("type", "object" if "$ref" in schema else "any")
    if kind == "array" and "items" in schema:
        return f"array[{_type_name(schema['items'])}]"
    return " | ".join(kind) if isinstance(kind, list) else str(kind)


def _version(value: bool) -> None:
    if value:
        out.print(f"simenv {simenv.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """simenv: trustworthy multi-turn environments for training LLM agents."""


@app.command("list")
def list_scenarios() -> None:
    """List the registered scenarios."""
    table = Table(title="registered scenarios")
    try:
        specs = [simenv.spec(scenario_id) for scenario_id in simenv.registry()]
    except SimenvError as exc:
        raise _fail(str(exc)) from None
    widest = max((len(spec.id) for spec in specs), default=2)
    table.add_column("id", no_wrap=True, min_width=widest)
    for column in ("tools", "train", "eval", "max turns"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    # one line per scenario: the summary is cut to what the terminal leaves, not wrapped
    room = out.width - widest - len("toolstrainevalmax turns") - 24 - 3 * 7 - 1
    table.add_column("summary", no_wrap=True, overflow="ellipsis", max_width=max(12, min(70, room)))
    table.add_column("source", no_wrap=True, overflow="ellipsis", max_width=24)
    for spec in specs:
        s = spec.scenario
        table.add_row(
            escape(s.id),
            str(len(s.tools)),
            str(len(s.split("train"))),
            str(len(s.split("eval"))),
            str(s.max_turns),
            escape(s.summary),
            escape(spec.source),
        )
    out.print(table)


@app.command()
def show(scenario_id: Annotated[str, typer.Argument(help="Scenario id or file.")]) -> None:
    """Show a scenario's spec, tools and tasks."""
    s = _scenario(scenario_id)
    out.print(Markdown(s.doc or f"# {s.id}\n(no spec docstring)"))
    tools = Table(title="tools")
    for column in ("name", "effect", "arguments", "description"):
        tools.add_column(column)
    for t in s.tools:
        required = set(t.parameters.get("required", ()))
        args = "\n".join(
            f"{name}: {_type_name(arg)}{'' if name in required else ', optional'}"
            f" - {arg.get('description', '')}"
            for name, arg in t.parameters.get("properties", {}).items()
        )
        summary = t.description.splitlines()[0] if t.description else ""
        tools.add_row(escape(t.name), t.effect, escape(args), escape(summary))
    out.print(tools)
    out.print(
        f"tasks: {len(s.split('train'))} train, {len(s.split('eval'))} eval; "
        f"max_turns={s.max_turns}; finish tools: {', '.join(s.finish_tools) or 'none'}"
    )
    for task in s.tasks[:3]:
        prompt = task.prompt[:100] or "(prompt rendered from the state)"
        out.print(f"  [dim]{escape(task.id)}[/] {escape(prompt)}")


def _summary(policy: str, episodes: list[simenv.Episode]) -> dict[str, Any]:
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
        raise _fail(f"cannot load policy {name!r}: {type(exc).__name__}: {exc}") from None


@app.command()
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

    from simenv.rollouts import Job, plan_jobs
    from simenv.rollouts import run as run_jobs
    from simenv.rollouts.store import EpisodeStore

    s = _scenario(scenario_id)
    if split not in ("train", "eval", "all"):
        raise _fail(f"--split must be train, eval or all, not {split!r}")
    if backend not in ("local", "ray"):
        raise _fail(f"--backend must be local or ray, not {backend!r}")
    if server is not None and backend == "ray":
        raise _fail("--server and --backend ray both say where environments live; give one")
    try:
        base_jobs = plan_jobs(s, split=_SPLITS[split], samples=samples, seed=seed, limit=n)
        policies = [(name, _policy(name, seed)) for name in policy]
        store = EpisodeStore(out_path, resume=resume) if out_path else None
    except (SimenvError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write --out {out_path}: {exc}") from None
    pool: Any = None
    rows = []
    try:
        if backend == "ray":
            from simenv.rollouts.ray import RayPool

            pool = RayPool(s, address=ray_address)
        elif server is not None:
            from simenv.server import RemotePool

            pool = RemotePool(server, s)
        with Progress(console=err, transient=True) as progress:
            for name, chosen in policies:
                # Each policy's jobs get their own keys, so one file can hold them all.
                tag = name if len(policies) > 1 else ""
                jobs = [Job(j.task_id, j.seed, j.task_index, j.sample, tag) for j in base_jobs]
                bar = progress.add_task(f"{name}", total=len(jobs))

                def advance(_: simenv.Episode, bar: Any = bar) -> None:
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
        raise _fail(str(exc)) from None
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
        raise _fail(f"closing the environments failed: {closing}")
    if as_json:
        out.print_json(json.dumps({"scenario_id": s.id, "policies": rows}))
        return
    table = Table(title=f"{s.id} - {split} split")
    for column in (
        "policy",
        "episodes",
        "mean reward",
        "success",
        "turns",
        "tool errors",
        "invalid",
    ):
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
    if out_path:
        out.print(f"episodes written to {out_path}")


@app.command()
def check(
    scenario_ids: Annotated[list[str], typer.Argument(help="Scenario ids or files.")],
    fast: Annotated[bool, typer.Option(help="Fewer tasks, seeds and fuzzing steps.")] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only these checks; repeatable.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Base seed of every episode.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Validate scenarios: contract, determinism, isolation, fuzzing, reward sanity ..."""
    from simenv.checks import check as run_checks

    reports = []
    styles = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}
    for scenario_id in scenario_ids:
        s = _scenario(scenario_id)
        if not as_json:
            out.rule(s.id)

        def show_result(result: Any) -> None:
            if not as_json:
                style = styles[result.status]
                message = escape(f"{result.check}: {result.message}")
                out.print(f"[{style}]{result.status.upper():5}[/] {message}")

        try:
            report = run_checks(s, fast=fast, only=only, seed=seed, on_result=show_result)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        reports.append(report)
        if not as_json:
            for failure in report.failures:
                out.print(f"\n[bold red]{escape(failure.check)}[/]: {escape(failure.message)}")
                if failure.task_id is not None:
                    out.print(f"  task={escape(failure.task_id)} seed={failure.seed}")
                for action in failure.reproduction or []:
                    out.print(f"  step: {escape(json.dumps(action, default=str)[:300])}")
            out.print(f"{'ok' if report.ok else 'FAILED'} in {report.seconds:.1f}s")
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in reports], indent=2, default=str) + "\n")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@app.command()
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

    ids = [_scenario(scenario_id).id for scenario_id in scenario_ids or ()] or None
    # Ctrl-C and SIGTERM (a process manager, `docker stop`) both stop it cleanly, even where
    # the parent shell started it with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run_server(ids, host, port, max_envs, idle_timeout, oracle, on_ready=ready)
    except SimenvError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise _fail(f"cannot listen on {host}:{port}: {exc}") from None
    out.print("stopped; every environment was closed")


# Commands from their own modules: eval/view (cli_eval), import sop (cli_sop),
# record/coverage (cli_replay), docker (cli_docker).
register_eval(app)
register_sop(app)
app.command("record")(cli_replay.record)
app.command("coverage")(cli_replay.coverage_command)
app.add_typer(cli_docker.app, name="docker")


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


if __name__ == "__main__":
    main()
