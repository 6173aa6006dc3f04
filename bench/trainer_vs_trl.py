"""Rollout and training tokens/s of simenv's trainer against TRL's GRPOTrainer, side by side.

Both systems run in one process on the same model, prompts and sizes, interleaved step by step
(TRL, ours, TRL, ours ...); the first step of each is a warm-up and is not counted.

Shared by both:

- model: the trainer's ``tiny`` (Qwen2 config, 2 layers of width 128, BPE tokenizer trained on
  support/Triage-v1 oracle transcripts, ChatML template with the tools), built by
  ``trainer.train.build_model`` as the trainer builds it (no warm start), saved to a temporary
  directory and loaded twice from it with ``from_pretrained``: same weights, float32, CPU;
- LoRA from ``TrainConfig``'s defaults: rank 16, alpha 32, dropout 0, every linear layer;
- prompts: the first 8 train tasks of support/Triage-v1 (system prompt + the ticket, rendered
  with the chat template and the scenario's tools, generation prompt added); the script checks
  that both systems condition on exactly the same prompt token ids;
- per step: 8 prompts x group 8 = 64 sampled completions of at most 48 new tokens, temperature
  1, top_p 1, no top-k; one optimizer step over the 64 sequences in 2 micro-batches of 32;
- loss: clipped PPO surrogate (0.8 / 1.2) with GRPO advantages (group mean and std), token
  mean over the whole batch (TRL ``loss_type="dapo"``), old logprobs = the sampler's (ours)
  or the detached current ones (TRL: generation and update are aligned, so it computes no
  extra forward), no KL term and no reference model (ours ``kl_coef=0``, TRL ``beta=0``),
  AdamW at lr 2e-3, gradient norm clipped at 1.0, no gradient checkpointing;
- reward: a cheap text function (the parity of the sum of the completion's character codes), so
  groups have non-zero advantages: ours drops zero-advantage episodes, as the trainer does.

Ours: ``simenv.policies.HF.act`` on the 64 conversations (render + tokenise the prompts, the
policy's KV-cached sampling loop that records logprobs, decode), then the samples built as the
trainer builds them (``episode_samples`` on the recorded turns, GRPO advantages), then
``trainer.train.policy_update`` (``TrainConfig`` defaults: ppo, micro-batch 32, one update).

TRL (GRPOTrainer, ``use_vllm=False``): ``trainer.train()`` drives the loop; a callback times each
optimizer step from ``on_step_begin`` to ``on_step_end``, and the trainer's ``_generate`` (prompt
tokenisation, ``model.generate`` of the PEFT model with TRL's ``GenerationConfig``, decode) and
``_generate_and_score_completions`` (``_generate`` + rewards, advantages, padding) are wrapped
with timers. Rollout = ``_generate``; training = the step minus
``_generate_and_score_completions`` (the micro-batches' forward and backward, clipping, the
optimizer and scheduler steps). GRPOConfig: ``num_generations=8,
per_device_train_batch_size=32, gradient_accumulation_steps=2`` (generation batch 64 = 8
prompts), ``max_completion_length=48, temperature=1.0, beta=0.0, epsilon=0.2,
loss_type="dapo", learning_rate=2e-3, lr_scheduler_type="constant", max_grad_norm=1.0,
gradient_checkpointing=False`` (TRL's default is True), ``bf16=False`` (TRL's default is
True), ``use_cpu=True, use_vllm=False, shuffle_dataset=False, report_to="none"``.

Both use the same torch thread count (``--threads``, default 1: on a 2-core machine shared with
other jobs, 2 threads made single rounds of either system over 10x slower).

Counted: rollout tokens = completion tokens generated (the end-of-turn token included); training
tokens = prompt + completion tokens of the sequences in the update (padding excluded).

Run: ``python bench/trainer_vs_trl.py [--rounds R] [--write]`` (needs ``pip install -e
'.[bench]'``); ``--write`` updates the section of docs/benchmarks.md between the
``trainer_vs_trl`` markers.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from _report import machine, write_section

import simenv
from simenv.policies import HF
from simenv.policies.base import Conversation
from simenv.types import Episode
from trainer.advantages import ESTIMATORS
from trainer.config import TrainConfig
from trainer.models import load, with_lora
from trainer.samples import Sample, episode_samples
from trainer.train import build_model, policy_update

try:
    import transformers
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(
        f"bench/trainer_vs_trl.py compares against TRL, which is not installed ({exc}); "
        "install it with: pip install -e '.[bench]'"
    ) from exc

SCENARIO = "support/Triage-v1"
CFG = TrainConfig()  # the trainer's defaults: group 8, 8 tasks, micro-batch 32, 48 new tokens


def reward_of(text: str) -> float:
    """Cheap and varied, so groups carry signal; the same function on both sides."""
    return float(sum(map(ord, text)) % 2)


def trl_reward(completions: list[str], **_: Any) -> list[float]:
    return [reward_of(c) for c in completions]


# ----------------------------------------------------------------------------- shared setup
def build_shared(directory: Path) -> tuple[list[tuple[list[Any], dict[str, Any]]], list[str]]:
    """Save the tiny model to ``directory``; return the first turns and their rendered text."""
    scenario = simenv.load_scenario(SCENARIO)
    model, tokenizer = build_model(CFG, [scenario], torch.device("cpu"))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    env = simenv.make(scenario)
    firsts, texts = [], []
    for i, task in enumerate(scenario.split("train")[: CFG.batch_tasks]):
        observation, info = env.reset(seed=i, options={"task_id": task.id})
        info["group"] = i
        firsts.append((list(observation), info))
        texts.append(
            tokenizer.apply_chat_template(
                list(observation), tools=info["tools"], add_generation_prompt=True, tokenize=False
            )
        )
    return firsts, texts


# ----------------------------------------------------------------------------- ours
class Ours:
    """The trainer's objects: LoRA model, AdamW, the HF sampler."""

    def __init__(self, directory: Path, firsts: list[tuple[list[Any], dict[str, Any]]]) -> None:
        model, self.tokenizer = load(directory)
        self.model = with_lora(model, rank=CFG.lora_rank, alpha=CFG.lora_alpha)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=CFG.lr
        )
        self.sampler = HF(
            self.model,
            self.tokenizer,
            temperature=CFG.temperature,
            max_new_tokens=CFG.max_new_tokens,
            seed=CFG.seed,
        )
        self.firsts = firsts
        self.pad = int(self.tokenizer.pad_token_id)
        self.prompts: set[tuple[int, ...]] = set()

    def step(self, seed: int) -> dict[str, float]:
        """One RL step: rollout, samples, update; seconds and tokens of each part."""
        self.sampler.reseed(seed)
        conversations = [
            Conversation(list(messages), {**info, "sample": g})
            for messages, info in self.firsts
            for g in range(CFG.group_size)
        ]
        began = time.perf_counter()
        texts = self.sampler.act(conversations)
        rolled = time.perf_counter()
        rewards = torch.tensor([reward_of(t) for t in texts])
        groups = torch.tensor([c.info["group"] for c in conversations])
        advantages = ESTIMATORS[CFG.advantage](rewards, groups).values.tolist()
        samples: list[Sample] = []
        for i, (c, a) in enumerate(zip(conversations, advantages, strict=True)):
            if a != 0.0:
                episode = Episode(
                    SCENARIO, c.info["task_id"], c.info["seed"], tuple(c.messages), (), 0.0,
                    metadata={"turns": c.memo["turns"]},
                )  # fmt: skip
                for sample in episode_samples(episode, i):
                    sample.advantage = a
                    samples.append(sample)
        scored = time.perf_counter()
        policy_update(self.model, self.optimizer, samples, CFG, self.pad)
        updated = time.perf_counter()
        turns = [c.memo["turns"][0] for c in conversations]
        self.prompts.update(tuple(t["prompt_ids"]) for t in turns)
        return {
            "rollout_s": rolled - began,
            "rollout_tokens": sum(len(t["completion_ids"]) for t in turns),
            "score_s": scored - rolled,
            "train_s": updated - scored,
            "train_tokens": sum(len(s.input_ids) for s in samples),
            "step_s": updated - began,
        }


# ----------------------------------------------------------------------------- TRL
def trl_trainer(directory: Path, texts: list[str], steps: int, out: Path) -> Any:
    """A GRPOTrainer on the same model, prompts and sizes (see the module docstring)."""
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    micro = CFG.micro_batch
    sequences = CFG.batch_tasks * CFG.group_size
    args = GRPOConfig(
        output_dir=str(out),
        num_generations=CFG.group_size,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=sequences // micro,
        max_completion_length=CFG.max_new_tokens,
        temperature=CFG.temperature,
        top_p=1.0,
        top_k=0,
        beta=CFG.kl_coef,
        epsilon=1 - CFG.clip_low,
        epsilon_high=CFG.clip_high - 1,
        loss_type="dapo",
        num_iterations=CFG.updates_per_batch,
        learning_rate=CFG.lr,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        max_grad_norm=1.0,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=True,
        use_vllm=False,
        shuffle_dataset=False,
        max_steps=steps,
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=CFG.seed,
    )
    peft = LoraConfig(
        r=CFG.lora_rank,
        lora_alpha=CFG.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=trl_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": texts}),
        processing_class=tokenizer,
        peft_config=peft,
    )


def wrap_timed(trainer: Any, name: str, sink: dict[str, Any]) -> None:
    """Replace ``trainer.name`` by a wrapper adding its seconds and last output to ``sink``."""
    inner = getattr(trainer, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        out = inner(*args, **kwargs)
        sink[name] = sink.get(name, 0.0) + time.perf_counter() - began
        sink[f"{name}:out"] = out
        return out

    setattr(trainer, name, timed)


class Interleave(TrainerCallback):
    """Times each TRL optimizer step, then runs one step of ours (outside TRL's timed window)."""

    def __init__(self, ours: Ours, sink: dict[str, Any]) -> None:
        self.ours, self.sink = ours, sink
        self.trl: list[dict[str, float]] = []
        self.mine: list[dict[str, float]] = []
        self.trl_prompts: set[tuple[int, ...]] = set()
        self.began = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sink.clear()
        self.began = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        total = time.perf_counter() - self.began
        prompt_ids, completion_ids = self.sink["_generate:out"][:2]
        batch = self.sink["_generate_and_score_completions:out"]
        generate = self.sink["_generate"]
        scored = self.sink["_generate_and_score_completions"]
        self.trl_prompts.update(tuple(int(i) for i in p) for p in prompt_ids)
        self.trl.append(
            {
                "rollout_s": generate,
                "rollout_tokens": sum(len(c) for c in completion_ids),
                "score_s": scored - generate,
                "train_s": total - scored,
                "train_tokens": int(batch["prompt_mask"].sum() + batch["completion_mask"].sum()),
                "step_s": total,
            }
        )
        self.mine.append(self.ours.step(seed=len(self.mine)))


# ----------------------------------------------------------------------------- report
def median_rate(rows: list[dict[str, float]], tokens: str, seconds: str) -> float:
    return statistics.median(r[tokens] / r[seconds] for r in rows)


def report(mine: list[dict[str, float]], theirs: list[dict[str, float]], rounds: int) -> str:
    def ratio(tokens: str, seconds: str) -> float:
        return statistics.median(
            (a[tokens] / a[seconds]) / (b[tokens] / b[seconds])
            for a, b in zip(mine, theirs, strict=True)
        )

    def best(rows: list[dict[str, float]], tokens: str, seconds: str) -> float:
        return max(r[tokens] / r[seconds] for r in rows)

    lines = [
        "| per step (8 prompts x 8, 48 new tokens) | ours: median | best | TRL: median | best "
        "| ours against TRL |",
        "|---|---|---|---|---|---|",
    ]
    for label, tokens, seconds in (
        ("rollout: completion tokens/s", "rollout_tokens", "rollout_s"),
        ("training: prompt + completion tokens/s, one optimizer step", "train_tokens", "train_s"),
    ):
        lines.append(
            f"| {label} | {median_rate(mine, tokens, seconds):,.0f} "
            f"| {best(mine, tokens, seconds):,.0f} | {median_rate(theirs, tokens, seconds):,.0f} "
            f"| {best(theirs, tokens, seconds):,.0f} "
            f"| **{ratio(tokens, seconds):.2f}x** the tokens/s (median of per-round ratios) |"
        )
    for label, key in (
        ("rollout, seconds", "rollout_s"),
        ("scoring (rewards, advantages, samples / padding), seconds", "score_s"),
        ("training, seconds", "train_s"),
        ("whole step, seconds", "step_s"),
    ):
        a = statistics.median(r[key] for r in mine)
        b = statistics.median(r[key] for r in theirs)
        lines.append(
            f"| {label} | {a:.3f} | {min(r[key] for r in mine):.3f} | {b:.3f} "
            f"| {min(r[key] for r in theirs):.3f} | {b / a:.2f}x faster (medians) |"
            if a < b
            else f"| {label} | {a:.3f} | {min(r[key] for r in mine):.3f} | {b:.3f} "
            f"| {min(r[key] for r in theirs):.3f} | {a / b:.2f}x slower (medians) |"
        )
    tokens = [
        ("completion tokens per step", "rollout_tokens"),
        ("trained tokens per step", "train_tokens"),
    ]
    sizes = "; ".join(
        f"{label}: ours {statistics.mean(r[key] for r in mine):,.0f}, "
        f"TRL {statistics.mean(r[key] for r in theirs):,.0f}"
        for label, key in tokens
    )
    note = f"{rounds} interleaved rounds after one warm-up step each; {sizes}."
    return "\n".join(lines) + "\n\n" + note


INTRO = """\
## Trainer vs TRL GRPOTrainer (`bench/trainer_vs_trl.py`)

The trainer's rollout and update against TRL's `GRPOTrainer` (`use_vllm=False`), in one process,
interleaved step by step, on the same model, weights, prompts and sizes: the trainer's `tiny`
(Qwen2, 2 layers of width 128, its own BPE tokenizer and ChatML template), float32 on the CPU,
LoRA rank 16 / alpha 32 on every linear layer; 8 prompts (the first turns of 8
support/Triage-v1 train tasks, rendered with the tools; the script checks both systems get the
same prompt token ids) x group 8 = 64 completions of at most 48 new tokens, temperature 1, no
top-p or top-k; one AdamW step (lr 2e-3, gradient norm clipped at 1) over the 64 sequences in 2
micro-batches of 32, PPO-clipped loss (0.2) with GRPO advantages and a token mean over the
batch, no KL and no reference model (ours `kl_coef=0`; TRL `beta=0`, `loss_type="dapo"`,
`gradient_checkpointing=False` and `bf16=False`, both of which TRL turns on by default),
no extra forward for old logprobs on either side.

- **Rollout** = completion tokens per second. Ours: `simenv.policies.HF.act` on the 64
  conversations (render and tokenise the prompts, the policy's KV-cached sampling loop, which
  also records each token's logprob, decode). TRL: `GRPOTrainer._generate` (tokenise,
  `model.generate` of the PEFT model with TRL's `GenerationConfig`, decode).
- **Training** = prompt + completion tokens (no padding) per second of one optimizer step.
  Ours: `trainer.train.policy_update` on the samples built as the trainer builds them. TRL: the
  time from `on_step_begin` to `on_step_end` of `trainer.train()` minus
  `_generate_and_score_completions` (so: its micro-batches' forward and backward, clipping, the
  optimizer and scheduler steps).
- Not compared: environment steps (TRL's loop here is single-turn text; ours runs the same
  single turn through the policy without an environment) and the reward (a cheap text function,
  the same on both sides). The first step of each is a warm-up. Both run with the same torch
  thread count (default 1: with 2 threads on this 2-core machine, shared with other jobs, single
  rounds were seen to take over 10x longer from thread contention, for either system)."""


def verdict(mine: list[dict[str, float]], theirs: list[dict[str, float]]) -> str:
    """One sentence per measurement: faster or slower, by the median of per-round ratios."""
    parts = []
    for label, tokens, seconds in (
        ("rollout", "rollout_tokens", "rollout_s"),
        ("training", "train_tokens", "train_s"),
    ):
        r = statistics.median(
            (a[tokens] / a[seconds]) / (b[tokens] / b[seconds])
            for a, b in zip(mine, theirs, strict=True)
        )
        word = "faster" if r >= 1 else "slower"
        parts.append(f"{label}: ours is {word} than TRL ({r:.2f}x its tokens/s)")
    return "Reading: " + "; ".join(parts) + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="measured steps of each system")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for both (1: steady on a busy host)"
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "tiny"
        firsts, texts = build_shared(directory)
        ours = Ours(directory, firsts)
        trainer = trl_trainer(directory, texts, args.rounds + 1, Path(tmp) / "trl")
        sink: dict[str, Any] = {}
        for name in ("_generate", "_generate_and_score_completions"):
            wrap_timed(trainer, name, sink)
        loop = Interleave(ours, sink)
        trainer.add_callback(loop)
        trainer.train()
    if loop.trl_prompts != ours.prompts:
        raise SystemExit("the two systems were not given the same prompt tokens")
    mine, theirs = loop.mine[1:], loop.trl[1:]
    table = report(mine, theirs, len(mine))
    print(table)
    if args.write:
        versions = (
            f"torch {torch.__version__}, transformers {transformers.__version__}, "
            f"TRL {trl.__version__}, torch threads: {torch.get_num_threads()}"
        )
        command = "python bench/trainer_vs_trl.py --write"
        if args.threads != 1:
            command = command.replace(" --write", f" --threads {args.threads} --write")
        write_section(
            "trainer_vs_trl",
            f"{INTRO}\n\n`{command}` ({args.rounds} rounds; {machine()}; {versions})\n\n"
            f"{table}\n\n{verdict(mine, theirs)}",
        )


if __name__ == "__main__":
    main()
