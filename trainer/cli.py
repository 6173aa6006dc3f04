"""``simenv train`` and ``simenv export``: plugged into the simenv command by entry point.

simenv never imports the trainer; the ``simenv.cli`` entry points of this distribution add these
commands when the trainer's dependencies are installed. torch is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)


def train(
    scenarios: Annotated[
        list[str] | None, typer.Argument(help="Scenario ids or files (default: support/Triage-v1).")
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Comma-separated sampling weight per scenario.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model directory, or tiny.")] = None,
    loss: Annotated[str | None, typer.Option(help="ppo, cispo or importance_sampling.")] = None,
    advantage: Annotated[str | None, typer.Option(help="grpo, dr_grpo or rloo.")] = None,
    group_size: Annotated[int | None, typer.Option(help="Episodes per task (the group).")] = None,
    batch_tasks: Annotated[int | None, typer.Option(help="Tasks per batch.")] = None,
    steps: Annotated[int | None, typer.Option(help="RL batches.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate of the RL phase.")] = None,
    lora_rank: Annotated[int | None, typer.Option(help="LoRA rank; 0 trains every weight.")] = None,
    sft_steps: Annotated[
        int | None, typer.Option(help="Warm-start steps on oracle episodes.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of everything.")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Output directory.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="JSON file with any TrainConfig fields; options win.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Any other field, as name=value; repeatable.")
    ] = None,
) -> None:
    """Train a policy on scenarios with RL (GRPO/RLOO advantages, PPO/CISPO/IS losses, LoRA)."""
    from trainer.config import TrainConfig
    from trainer.train import train as run_training

    overrides: dict[str, Any] = {
        "scenarios": tuple(scenarios) if scenarios else None,
        "weights": tuple(float(w) for w in weights.split(",")) if weights else None,
        "model": model, "loss": loss, "advantage": advantage, "group_size": group_size,
        "batch_tasks": batch_tasks, "steps": steps, "lr": lr, "lora_rank": lora_rank,
        "sft_steps": sft_steps, "temperature": temperature, "seed": seed, "out": out_dir,
    }  # fmt: skip
    defaults = TrainConfig()
    for item in set_ or []:
        name, _, value = item.partition("=")
        if not hasattr(defaults, name):
            err.print(f"[bold red]error:[/] --set {name}: no such field; see TrainConfig")
            raise typer.Exit(2)
        kind = type(getattr(defaults, name))
        overrides[name] = tuple(value.split(",")) if kind is tuple else kind(value)
    try:
        if config is not None:
            cfg = TrainConfig.from_file(config, **overrides)
        else:
            cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, TypeError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None

    from trainer.train import checkpoint_step, resume_point

    checkpoint = resume_point(Path(cfg.out))
    replayed = -1  # the last RL step the killed run logged; the resumed run plays it again
    if checkpoint is not None:
        step = checkpoint_step(checkpoint) + 1
        out.print(f"resuming {cfg.out} at step {step} (delete the folder to start over)")
        replayed = _last_logged_step(Path(cfg.out) / "metrics.jsonl")

    tracker: Any = None
    try:  # MLflow when it is installed (the `mlflow` extra)
        from simenv.tracking import MLflowLogger

        # A run resumed from its checkpoint keeps logging to the MLflow run it started.
        run_file = Path(cfg.out) / "mlflow_run_id"
        earlier = run_file.read_text().strip() if run_file.exists() else ""
        from mlflow.exceptions import MlflowException

        try:
            tracker = MLflowLogger(
                run_name=f"train {cfg.out}",
                params=cfg.to_dict(),
                run_id=earlier if earlier and checkpoint is not None else None,
            )
        except MlflowException:  # that run is not in this tracking store: start a new one
            tracker = MLflowLogger(run_name=f"train {cfg.out}", params=cfg.to_dict())
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        written = run_file.with_name(run_file.name + ".tmp")
        written.write_text(tracker.run_id)
        written.replace(run_file)
    except ImportError:
        pass
    # Steps after the checkpoint that the killed run already sent to the same MLflow run are
    # played again with the same numbers: MLflow keeps them once.
    continued = tracker is not None and tracker.run_id == earlier

    def log(values: dict[str, float], step: int) -> None:
        shown = {k: round(v, 3) for k, v in values.items() if not k.startswith("perf")}
        out.print(f"[dim]step {step:>4}[/] {shown}")
        again = continued and 0 <= step <= replayed and "episode/reward" in values
        if tracker is not None and not again:
            tracker.log(values, step)

    try:
        result = run_training(cfg, log)
    finally:
        if tracker is not None:
            for name in ("metrics.jsonl", "learning_curve.png", "result.json", "config.json"):
                if (Path(cfg.out) / name).exists():
                    tracker.artifact(Path(cfg.out) / name)
            tracker.close()
            out.print(f"MLflow run {tracker.run_id} (mlflow ui --backend-store-uri ...)")
    out.rule("held-out evaluation")
    if "before_warm_start" in result:
        out.print(f"before training:        {_brief(result['before_warm_start'])}")
        out.print(f"after the warm start:   {_brief(result['before'])}")
    else:
        out.print(f"before RL:              {_brief(result['before'])}")
    out.print(f"after RL:               {_brief(result['after'])}")
    out.print(f"learning curve: {result.get('curve')}; everything in {result['out']}")


def _last_logged_step(metrics: Path) -> int:
    """The last RL step in ``metrics.jsonl`` (-1 if none), read before the run trims the file."""
    last = -1
    for line in metrics.read_text().splitlines() if metrics.exists() else ():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if "episode/reward" in row:
            last = max(last, int(row["step"]))
    return last


def _brief(metrics: dict[str, float]) -> str:
    if not metrics:
        return "(not recorded: metrics.jsonl lost that row)"
    return ", ".join(f"{k.removeprefix('eval/')}={v:.3f}" for k, v in metrics.items())


def export(
    run_dir: Annotated[Path, typer.Argument(help="The --out directory of a training run.")],
    dest: Annotated[Path | None, typer.Option(help="Where to write (default: RUN/export).")] = None,
) -> None:
    """Write the adapter and a merged model in Hugging Face format (from_pretrained loads it)."""
    from trainer.export import export_run

    try:
        written = export_run(run_dir, dest)
    except FileNotFoundError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    out.print(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
