"""``simenv train`` and ``simenv export``: plugged into the simenv command by entry point.

simenv never imports the trainer; the ``simenv.cli`` entry points of this distribution add these
commands when the trainer's dependencies are installed. torch is imported inside the commands.
"""

from __future__ import annotations

import inspect
import json
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)

_FIELDS_PANEL = "Training options (TrainConfig fields; --set name=value sets them too)"


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


def _dashed(name: str) -> str:
    return name.replace("_", "-")


def train(**given: Any) -> None:
    """Train a policy on scenarios with RL (GRPO/RLOO advantages, PPO/CISPO/IS losses, LoRA).

    Every option but --config and --set is a field of trainer.config.TrainConfig, its help that
    field's docstring; --set name=value sets any field too.
    """
    from trainer.config import TrainConfig

    config: Path | None = given.pop("config")
    assignments: list[str] = given.pop("set_") or []
    kinds = TrainConfig.field_types()
    overrides: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:  # not given: the config file's value or the default
            continue
        if name == "scenarios":
            overrides[name] = tuple(value)
        elif typing.get_origin(kinds[name]) is tuple:  # --weights 3,1: comma-separated
            try:
                overrides[name] = TrainConfig.parse_field(name, value)
            except ValueError as exc:
                raise _fail(f"--{_dashed(name)} {value}: {exc}") from None
        else:  # click has already converted it to the field's type
            overrides[name] = value
    extra: dict[str, Any] = {}
    for item in assignments:  # converted to each field's type, or exit 2 before any work
        try:
            extra.update(TrainConfig.from_strings([item]))
        except ValueError as exc:
            raise _fail(f"--set {item}: {exc}") from None
    for name in sorted(set(extra) & set(overrides)):
        if extra[name] != overrides[name]:
            raise _fail(
                f"--{_dashed(name)} and --set {name}=... both set {name}, to different values;"
                " give one"
            )
    overrides.update(extra)
    try:
        if config is not None:
            cfg = TrainConfig.from_file(config, **overrides)
        else:
            cfg = TrainConfig(**overrides)
    except (ValueError, TypeError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot read --config {config}: {exc}") from None

    import torch

    from trainer.checkpoints import checkpoint_step, resume_point
    from trainer.runtime import (
        describe_runtime,
        quiet_library_warnings,
        resolve_device,
        runtime_info,
    )
    from trainer.train import train as run_training

    quiet_library_warnings()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # What the numbers below were computed with: float kernels differ between machines.
    out.print(f"simenv train on {describe_runtime(runtime_info(resolve_device(cfg.device)))}")
    checkpoint = resume_point(Path(cfg.out))
    if checkpoint is not None:
        step = checkpoint_step(checkpoint) + 1
        out.print(f"resuming {cfg.out} at step {step} (delete the folder to start over)")

    tracker: Any = None
    try:  # MLflow when it is installed (the `mlflow` extra)
        from simenv.evaluation.tracking import MLflowLogger

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
    # played again with the same numbers: MLflow keeps them once. What MLflow holds decides,
    # not metrics.jsonl: a kill can fall between writing a step there and sending it.
    continued = tracker is not None and tracker.run_id == earlier
    sent = tracker.logged_steps("episode/reward") if continued else set()

    def log(values: dict[str, float], step: int) -> None:
        shown = {k: round(v, 3) for k, v in values.items() if not k.startswith("perf")}
        out.print(f"[dim]step {step:>4}[/] {shown}")
        again = step in sent and "episode/reward" in values
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
    curve = result.get("curve") or "not drawn (needs matplotlib)"
    out.print(f"learning curve: {curve}; everything in {result['out']}")


def _train_parameters() -> list[inspect.Parameter]:
    """``simenv train``'s parameters: one per TrainConfig field, then --config and --set.

    A field ``name`` is the option ``--name-with-dashes`` of the field's type, its help the
    field's docstring and its shown default the field's default; each option's value is None
    when not given, so the config file or the default applies. ``scenarios`` is the positional
    SCENARIOS; other tuple fields (``weights``) take comma-separated items.
    """
    from trainer.config import TrainConfig

    docs = TrainConfig.help()
    kinds = TrainConfig.field_types()
    assert not {"config", "set_"} & set(kinds), "a TrainConfig field shadows --config or --set"
    annotations: dict[str, Any] = {}
    for f in fields(TrainConfig):
        kind, default = kinds[f.name], typing.cast(Any, f.default)
        text = " ".join(docs.get(f.name, "").split())  # one paragraph
        if typing.get_origin(kind) is tuple:
            shown = ",".join(map(str, default))
        else:
            shown = "" if default is MISSING else str(default)
        if typing.get_origin(kind) is tuple and f.name != "scenarios":
            kind, text = str, text + " Comma-separated."
        text += f" [default: {shown}]" if shown else ""
        text = escape(text)  # the help is rich markup: brackets in a docstring stay as written
        if f.name == "scenarios":
            argument = typer.Argument(help=text, show_default=False)
            annotations[f.name] = Annotated[list[str] | None, argument]
            continue
        flag = f"--{_dashed(f.name)}"
        if kind is bool:
            flag += f"/--no-{_dashed(f.name)}"
        option = typer.Option(flag, help=text, show_default=False, rich_help_panel=_FIELDS_PANEL)
        annotations[f.name] = Annotated[kind | None, option]
    config = typer.Option(help="JSON file of TrainConfig fields; options and --set win.")
    assignments = typer.Option(
        "--set", help="Any field as name=value (e.g. kl_coef=0.02, weights=3,1); repeatable."
    )
    annotations["config"] = Annotated[Path | None, config]
    annotations["set_"] = Annotated[list[str] | None, assignments]
    return [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in annotations.items()
    ]


# typer reads a command's options from its signature: train's is built from TrainConfig.
train.__signature__ = inspect.Signature(_train_parameters(), return_annotation=None)  # type: ignore[attr-defined]


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
        raise _fail(str(exc)) from None
    out.print(json.dumps({k: str(v) for k, v in written.items()}, indent=2), soft_wrap=True)
