"""The training configuration: one frozen dataclass; each field's docstring is its CLI help."""

from __future__ import annotations

import difflib
import itertools
import json
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

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
    """Advantage estimator: grpo (alias group_based), dr_grpo, rloo, monte_carlo,
    group_based_per_turn, reinforce_pp, reinforce_pp_baseline, opo, grpo_passk or gpg (see
    docs/training.md for when to use which)."""
    gamma: float = 1.0
    """Discount of the per-turn estimators (monte_carlo, group_based_per_turn): a turn's return
    is its reward plus gamma times the next turn's return."""
    pass_k: int = 2
    """k of grpo_passk: the group advantage of the pass@k reward."""
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
    lr: float = 5e-4
    """Learning rate of the RL phase (AdamW). 5e-4 suits the default full fine-tune of the tiny
    model; with LoRA (lora_rank > 0) a higher one, such as 2e-3, is usual."""
    lr_schedule: str = "linear"
    """RL learning-rate schedule: constant, or linear (decays from lr to 0 over the steps)."""
    lora_rank: int = 0
    """LoRA rank; 0 (the default) trains every weight. The tiny model is small enough to train
    whole, and learns more from RL that way (docs/training.md, Results); give a rank, such as
    16, for a real model."""
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
    sft_steps: int = 600
    """Most supervised warm-start steps on oracle episodes before RL (0 skips the warm start);
    the learning rate follows a cosine to 0 over them."""
    sft_seeds: int = 8
    """Oracle episodes per train task for the warm start, each from its own episode seed. The
    seed draws the customers' plans, so several seeds per ticket show the priority following
    the plan looked up; with few, the ticket alone predicts much of it, and the model may learn
    that instead (docs/training.md, Results)."""
    sft_lr: float = 3e-3
    """Peak learning rate of the warm start (reached after sft_warmup steps)."""
    sft_warmup: int = 30
    """Warm-start steps over which the learning rate rises linearly to sft_lr."""
    sft_target: float = 0.6
    """Stop the warm start once success on the validation slice of the train split reaches
    this (0: always run sft_steps); RL then starts from a model that is right part of the time."""
    sft_check_every: int = 10
    """Warm-start steps between two plays of the validation slice."""
    sft_check_from: int = 100
    """First warm-start step that may play the validation slice (a model that cannot yet write
    a tool call needs no check, and its long, rambling turns make one slow)."""
    sft_check_samples: int = 8
    """Samples per validation task (every 4th train task)."""
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
    threads: int = 0
    """torch's CPU threads (0: torch's default, one per core)."""
    init_noise: float = 0.0
    """Scale every initial weight by (1 + init_noise * N(0, 1)): a deliberate perturbation, to
    check that a recipe's outcome does not hinge on float rounding (1e-6 is a good probe)."""
    device: str = "auto"
    """cpu, cuda, or auto (cuda when available)."""
    env_server: str = ""
    """URL of a rollout server (`simenv serve`) whose environments the RL rollouts and the
    evaluations play on; empty: in this process. The warm start's oracle episodes stay local."""
    rollout_engine: str = "hf"
    """What samples the RL rollouts and evaluations: hf (the trainer's own sampling loop), vllm
    or sglang (an inference server, started here or reached at engine_url, that gets the new
    LoRA adapter, or the new weights, after every update and must then serve it: a fixed
    prompt's logprobs are compared with the trainer's own; docs/engines.md)."""
    engine_url: str = ""
    """With rollout_engine vllm or sglang: the base URL of a server already running (it must
    read this run's files); empty: start one on this machine."""
    engine_tolerance: float = 0.1
    """Largest mean absolute difference (nats per token) between the engine's logprobs of the
    check prompt and the trainer's, after a weight update, before training refuses to go on
    (a bf16 engine differs from a float32 trainer by a few hundredths)."""
    agent: str = ""
    """The agent to train, played through the trainer's gateway (docs/agents.md): a Python
    function `module:function`, called with each rollout (task, base_url, key, headers,
    sampling) and returning a reward, a list of per-turn rewards, or raising (a failed
    rollout); or `scenario`: the scenarios played through the gateway, rewarded by their
    environments. Empty (with no agent_url): the scenarios in this process, as without agents."""
    agent_url: str = ""
    """An agent behind HTTP (instead of agent): GET URL/ping must answer before training starts;
    each rollout is POSTed to URL/invocations and the agent reports through the job-runtime
    calls (CompleteRollout, UpdateReward), signed with the trainer's AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY."""
    agent_timeout_s: float = 300.0
    """Longest one agent rollout may take; past it the rollout is failed (counted, not fatal)."""
    agent_concurrency: int = 8
    """Agent rollouts running at once."""
    agent_max_turns: int = 64
    """Most model calls one agent rollout may make (the gateway answers 429 beyond)."""
    dataset: str = ""
    """A JSONL, CSV or Parquet file of prompts for the agent (a `prompt` column; the others go to
    the agent and into the episode; a `split` column of train/eval, or eval_fraction); empty:
    the scenarios' tasks."""
    eval_fraction: float = 0.1
    """Share of a dataset's rows held out for evaluation when it has no `split` column (by the
    hash of each row's id: deterministic)."""
    max_staleness: int = 1
    """Agent rollouts only: how many policy versions the oldest turn of a trained group may lag
    the trainer. Up to this many batches are rolled out ahead while the trainer updates; older
    groups are dropped (counted); stale turns are corrected by the truncated importance weight
    (tis_cap, 2 when tis_cap is 0). 0: synchronous, each batch sampled by the current policy."""

    def __post_init__(self) -> None:
        from trainer.advantages import ESTIMATORS  # torch: not imported with this module, which
        from trainer.losses import LOSSES  # `simenv` loads to build `simenv train`'s options

        for f in fields(self):  # types first: a JSON file or a caller may pass strings
            value = _checked(f.name, self.field_types()[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)  # lists become tuples, ints floats
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
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma is a discount: between 0 and 1, not {self.gamma}")
        if self.pass_k < 1:
            raise ValueError(f"pass_k must be at least 1, not {self.pass_k}")
        if self.group_size < 2:
            raise ValueError("group_size must be at least 2: advantages compare within a group")
        if self.weights and len(self.weights) != len(self.scenarios):
            raise ValueError("give one weight per scenario (or none for equal weights)")
        if not 0 <= self.sft_target <= 1:
            raise ValueError("sft_target is a success rate: between 0 (off) and 1")
        for name in ("batch_tasks", "steps", "micro_batch", "updates_per_batch",
                     "sft_check_every", "sft_check_samples", "sft_seeds"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 < self.clip_low <= 1 <= self.clip_high:
            raise ValueError("need 0 < clip_low <= 1 <= clip_high (absolute ratio bounds)")
        if any(w < 0 for w in self.weights) or (self.weights and not any(self.weights)):
            raise ValueError(f"weights must be >= 0 and not all 0, not {list(self.weights)}")
        for name in ("lora_rank", "kl_coef", "tis_cap", "sft_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns it off), not {getattr(self, name)}")
        if self.rollout_engine not in ("hf", "vllm", "sglang"):
            raise ValueError(
                f"rollout_engine must be hf, vllm or sglang, not {self.rollout_engine!r}"
            )
        if self.engine_url and self.rollout_engine == "hf":
            raise ValueError(
                "engine_url is the URL of a vllm or sglang server; set rollout_engine=vllm (or "
                "sglang) with it, or leave engine_url empty for the trainer's own sampling"
            )
        if self.engine_tolerance <= 0:
            raise ValueError(f"engine_tolerance must be > 0, not {self.engine_tolerance}")
        self._check_agents()
        if self.kl_coef > 0 and self.lora_rank == 0:
            raise ValueError(
                f"kl_coef={self.kl_coef} needs a LoRA adapter, and lora_rank=0 trains every "
                "weight instead: the KL term's reference is the base model, computed by "
                "disabling the adapter, and a full fine-tune keeps no copy of the base. "
                "Fix: set lora_rank > 0 (e.g. 16) to keep the KL, or kl_coef=0 to train "
                "every weight without it."
            )

    def _check_agents(self) -> None:
        if self.agent and self.agent_url:
            raise ValueError("give agent or agent_url, not both: one agent is trained per run")
        if self.dataset and not (self.agent or self.agent_url):
            raise ValueError(
                f"dataset={self.dataset!r} needs an agent to play its prompts; fix: give "
                "agent=module:function or agent_url=URL (or drop dataset to train on scenarios)"
            )
        if self.agent and self.agent != "scenario" and ":" not in self.agent:
            raise ValueError(
                f"agent must be module:function (e.g. my_pkg.agent:run) or scenario, not "
                f"{self.agent!r}"
            )
        if self.max_staleness < 0:
            raise ValueError(
                f"max_staleness must be >= 0 (0: synchronous), not {self.max_staleness}"
            )
        for name in ("agent_concurrency", "agent_max_turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.agent_timeout_s <= 0:
            raise ValueError(f"agent_timeout_s must be > 0, not {self.agent_timeout_s}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), not {self.eval_fraction}")

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
        try:
            return cls(**data)  # __post_init__ checks every value's type (lists become tuples)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{path}: {exc}") from None

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name -> its type (``int``, ``float``, ``bool``, ``str``, ``tuple[float, ...]``)."""
        return _field_types(cls)

    @classmethod
    def parse_field(cls, name: str, text: str) -> Any:
        """The value of field ``name`` written as ``text`` (a command line's ``name=text``).

        ``tuple[float, ...]`` and ``tuple[str, ...]`` fields take comma-separated items (an
        empty text is the empty tuple); ``bool`` takes true/false/1/0/yes/no.

        Raises:
            ValueError: no such field, or ``text`` is not a value of its type; the message
                names the field, the value, the type expected and an example.
        """
        kinds = cls.field_types()
        if name not in kinds:
            close = difflib.get_close_matches(name, kinds, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"TrainConfig has no field {name!r}{hint} (`simenv train --help`)")
        kind = kinds[name]
        items = _item_type(kind)
        try:
            if items is None:
                return _parse_one(kind, text)
            return tuple(_parse_one(items, t.strip()) for t in text.split(",")) if text else ()
        except ValueError:
            example = f"{name}={_example(name, kind)}"
            raise ValueError(
                f"{name} must be {_describe(kind)}, not {text!r}; e.g. {example}"
            ) from None

    @classmethod
    def from_strings(cls, assignments: Iterable[str]) -> dict[str, Any]:
        """``["steps=80", "weights=3,1"]`` -> ``{"steps": 80, "weights": (3.0, 1.0)}``."""
        out: dict[str, Any] = {}
        for item in assignments:
            name, eq, text = item.partition("=")
            if not eq:
                raise ValueError(f"{item!r} is not name=value (e.g. kl_coef=0.02)")
            out[name.strip()] = cls.parse_field(name.strip(), text.strip())
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    if cls not in _TYPES:
        _TYPES[cls] = typing.get_type_hints(cls)
    return _TYPES[cls]


def _item_type(kind: Any) -> Any:
    """``X`` for ``tuple[X, ...]``, else None."""
    if typing.get_origin(kind) is tuple:
        return typing.get_args(kind)[0]
    return None


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _parse_one(kind: Any, text: str) -> Any:
    if kind is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(text)
    if kind in (int, float):
        return kind(text)  # raises ValueError: "abc", "1.5" for an int, ""
    if kind is str:
        return text
    raise TypeError(f"TrainConfig cannot parse a {kind}")  # a field of a type added later


def _describe(kind: Any) -> str:
    items = _item_type(kind)
    if items is not None:
        plural = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
        return f"a comma-separated list of {plural.get(items, str(items))}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(kind, str(kind))


def _example(name: str, kind: Any) -> str:
    default: Any = {f.name: f.default for f in fields(TrainConfig)}[name]
    items = _item_type(kind)
    if items is not None:
        shown = default or ((3, 1) if items is float else ("a", "b"))
        return ",".join(map(str, shown))
    return str(default).lower() if kind is bool else str(default)


def _checked(name: str, kind: Any, value: Any) -> Any:
    """``value`` as a value of field ``name`` (lists become tuples, ints floats), or TypeError."""
    items = _item_type(kind)
    if items is not None and isinstance(value, list | tuple):
        good = [_ok(items, v) for v in value]
        if all(good):
            return tuple(float(v) if items is float else v for v in value)
    elif items is None and _ok(kind, value):
        return float(value) if kind is float else value
    got = type(value).__name__
    if isinstance(value, list | tuple) and value:
        got += " of " + "/".join(sorted({type(v).__name__ for v in value}))
    raise TypeError(
        f"{name} must be {_describe(kind).replace('comma-separated ', '')}, not {value!r} "
        f"({got}); e.g. {json.dumps({name: _json_example(name, kind)})[1:-1]} in a --config "
        f"file, or --set {name}={_example(name, kind)}"
    )


def _json_example(name: str, kind: Any) -> Any:
    return TrainConfig.parse_field(name, _example(name, kind))


def _ok(kind: Any, value: Any) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else False
