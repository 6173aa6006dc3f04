"""The training configuration: one frozen dataclass; each field's docstring is its CLI help."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from trainer.advantages import ESTIMATORS
from trainer.losses import LOSSES

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; defaults run the README's main job on a CPU."""

    scenarios: tuple[str, ...] = ("support/Triage-v1",)
    """Scenario ids (or files) to train on."""
    weights: tuple[float, ...] = ()
    """Sampling weight of each scenario in a batch (default: equal)."""
    model: str = "tiny"
    """A local model directory, or `tiny` (built here from a config)."""
    loss: str = "ppo"
    """Policy loss: ppo, cispo or importance_sampling."""
    advantage: str = "grpo"
    """Advantage estimator: grpo, dr_grpo or rloo."""
    group_size: int = 8
    """Episodes sampled per task (the GRPO group); they share one starting state."""
    batch_tasks: int = 8
    """Tasks per batch; a batch is batch_tasks x group_size episodes."""
    steps: int = 80
    """RL batches to train on."""
    updates_per_batch: int = 1
    """Optimizer steps on each batch (more than 1 makes the policy drift from the sampler)."""
    micro_batch: int = 32
    """Sequences per forward/backward pass; the loss does not depend on it."""
    lr: float = 2e-3
    """Learning rate of the RL phase (AdamW)."""
    lr_schedule: str = "linear"
    """RL learning-rate schedule: constant, or linear (decays from lr to 0 over the steps)."""
    lora_rank: int = 16
    """LoRA rank; 0 trains every weight instead."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / rank)."""
    clip_low: float = 0.8
    """Lower ratio bound (ppo; cispo's lower bound when below 1)."""
    clip_high: float = 1.2
    """Upper ratio bound for ppo."""
    cispo_high: float = 5.0
    """Upper bound of cispo's importance weight."""
    aggregation: str = "sequence"
    """Loss aggregation: token (mean over the batch's generated tokens) or sequence (mean over
    episodes of each episode's token mean, so long failing episodes do not outweigh short ones)."""
    kl_coef: float = 0.0
    """Weight of the k3 KL to the base model (the adapter disabled); 0 turns it off."""
    tis_cap: float = 0.0
    """Cap of the truncated importance weight between sampler and trainer logprobs; 0 = off."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (and of the trainer's logprobs)."""
    max_new_tokens: int = 48
    """Longest completion per turn."""
    sft_steps: int = 300
    """Supervised warm-start steps on oracle episodes before RL (0 skips it)."""
    sft_lr: float = 3e-3
    """Learning rate of the warm start."""
    sft_batch: int = 32
    """Turns per warm-start step."""
    eval_every: int = 20
    """Evaluate on the eval split every this many RL steps (and before and after)."""
    eval_samples: int = 16
    """Samples per eval task for pass@k (k = 1 .. eval_samples)."""
    checkpoint_every: int = 50
    """Save adapter, optimizer, step and RNG state every this many steps."""
    out: str = "runs/train"
    """Output directory: checkpoints, metrics.jsonl, learning curve, episodes."""
    seed: int = 0
    """Seeds the model, the sampling and the task draws."""
    device: str = "auto"
    """cpu, cuda, or auto (cuda when available)."""
    env_server: str = ""
    """URL of a rollout server (`simenv serve`) whose environments the RL rollouts and the
    evaluations play on; empty: in this process. The warm start's oracle episodes stay local."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, not {self.loss!r}")
        if self.advantage not in ESTIMATORS:
            raise ValueError(
                f"advantage must be one of {sorted(ESTIMATORS)}, not {self.advantage!r}"
            )
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"lr_schedule must be constant or linear, not {self.lr_schedule!r}")
        if self.aggregation not in ("token", "sequence"):
            raise ValueError(f"aggregation must be token or sequence, not {self.aggregation!r}")
        if self.group_size < 2:
            raise ValueError("group_size must be at least 2: advantages compare within a group")
        if self.weights and len(self.weights) != len(self.scenarios):
            raise ValueError("give one weight per scenario (or none for equal weights)")
        for name in ("batch_tasks", "steps", "micro_batch", "updates_per_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 < self.clip_low <= 1 <= self.clip_high:
            raise ValueError("need 0 < clip_low <= 1 <= clip_high (absolute ratio bounds)")

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> its docstring (the CLI help), read from the source."""
        import ast
        import inspect

        tree = ast.parse(inspect.getsource(cls))
        body = tree.body[0].body  # type: ignore[attr-defined]
        out: dict[str, str] = {}
        for node, after in itertools.pairwise(body):
            if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
                out[node.target.id] = str(after.value.value)  # type: ignore[attr-defined,union-attr]
        return out

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a JSON config file; keyword overrides win."""
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown fields {unknown}; known: {sorted(known)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("scenarios", "weights"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)
