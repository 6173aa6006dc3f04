"""Rollout and training tokens/s of simenv's trainer against TRL's GRPOTrainer, side by side.

Both systems run in one process on the same model, prompts and sizes, interleaved step by step
(TRL, ours, TRL, ours ...); the first step of each is a warm-up and is not counted.

Shared by both:

- model (``--model``): the trainer's ``tiny`` (Qwen2 config, 2 layers of width 128, BPE
  tokenizer trained on support/Triage-v1 oracle transcripts, ChatML template with the tools),
  built by ``trainer.warm_start.build_model`` as the trainer builds it (no warm start); or
  ``qwen2-0.5b``: Qwen2-0.5B's shape (24 layers of width 896, 14 heads, 2 key/value heads, MLP
  4864, tied embeddings, vocabulary 151,936: ~0.49B parameters) from a config with random
  weights and the same tokenizer (nothing downloaded). Saved to a temporary directory and loaded
  twice from it with ``from_pretrained``: same weights; float32 on the CPU, bfloat16 on a GPU
  (``--device``; TRL ``bf16=True`` there, ``use_cpu=True`` on the CPU);
- LoRA rank 16 (``TrainConfig(lora_rank=16)``; the default alpha 32), dropout 0, every linear layer;
- prompts: the first 8 (``--prompts``) train tasks of support/Triage-v1 (system prompt + the
  ticket, rendered with the chat template and the scenario's tools, generation prompt added);
  the script checks that both systems condition on exactly the same prompt token ids;
- per step: 8 prompts x group 8 (``--group``) = 64 sampled completions of at most 48
  (``--max-new-tokens``) new tokens, temperature 1, top_p 1, no top-k; one optimizer step over
  the 64 sequences in 2 micro-batches of 32 (``--micro-batch``);
- loss: clipped PPO surrogate (0.8 / 1.2) with GRPO advantages (group mean and std), token
  mean over the whole batch (TRL ``loss_type="dapo"``), old logprobs = the sampler's (ours)
  or the detached current ones (TRL: generation and update are aligned, so it computes no
  extra forward), no KL term and no reference model (ours ``kl_coef=0``, TRL ``beta=0``),
  AdamW at lr 2e-3, gradient norm clipped at 1.0, no gradient checkpointing;
- reward: a cheap text function (the parity of the sum of the completion's character codes), so
  groups have non-zero advantages: ours drops zero-advantage episodes, as the trainer does. On
  ``qwen2-0.5b`` the parity of the sum of the completion's token ids instead: it samples from
  151,936 ids, of which the tokenizer decodes only its few hundred, so most texts are empty.

Ours: ``simenv.rollouts.policies.HF.act`` on the 64 conversations (render + tokenise the
prompts, the policy's KV-cached sampling loop that records logprobs, decode), then the samples
built as the trainer builds them (``episode_samples`` on the recorded turns, GRPO advantages), then
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
gradient_checkpointing=False`` (TRL's default is True), ``bf16=False`` on the CPU (TRL's
default is True), ``use_cpu=True`` there, ``use_vllm=False, shuffle_dataset=False,
report_to="none"``. On a GPU every timer waits for the queued GPU work first.

Both use the same torch thread count (``--threads``, default 1: on a 2-core machine shared with
other jobs, 2 threads made single rounds of either system over 10x slower).

Counted: rollout tokens = completion tokens generated (the end-of-turn token included); training
tokens = prompt + completion tokens of the sequences in the update (padding excluded).

On a GPU the table gains an MFU column: achieved model FLOPs / the GPU's peak dense bf16 FLOP/s
(a small table by ``torch.cuda.get_device_name()``, or ``--peak-flops``; omitted for an unknown
GPU), counting 2 x parameters per generated token and 6 x parameters per trained token
(forward + backward), attention ignored.

Run: ``python bench/trainer_vs_trl.py [--rounds R] [--write]`` (needs ``pip install -e
'.[bench]'``); ``--write`` updates the section of docs/benchmarks.md between the
``trainer_vs_trl`` markers (tiny on the CPU), the ``trainer_vs_trl_cpu_large`` markers
(``qwen2-0.5b`` on the CPU) or the ``trainer_vs_trl_gpu`` markers (GPU). The GPU run:
``python bench/trainer_vs_trl.py --model qwen2-0.5b --device cuda --write``. ``--smoke`` runs the
``qwen2-0.5b`` path on a shrunken config (2 layers, vocabulary 4096) for one round, to check it
on a CPU (``--smoke --device cpu``); it never writes.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from _report import machine, write_section

from trainer.config import TrainConfig

try:
    import transformers
    import trl
    from _vs_trl import Interleave, Ours, Setup, build_shared, trl_trainer, wrap_timed
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(
        f"bench/trainer_vs_trl.py compares against TRL, which is not installed ({exc}); "
        "install it with: pip install -e '.[bench]'"
    ) from exc

CFG = TrainConfig(lora_rank=16, lr=2e-3)  # the trainer's defaults (group 8, 8 tasks, micro-batch
# 32, 48 new tokens) with LoRA rank 16 and its usual lr: the comparison is of LoRA training
TRAIN_TASKS = 108  # support/Triage-v1's train split

# Peak dense bf16 FLOP/s by GPU name, more specific names first (torch.cuda.get_device_name()).
PEAK_BF16 = (
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200 NVL", 835e12),
    ("H200", 989e12),
    ("A100", 312e12),
)


def peak_flops(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


# ----------------------------------------------------------------------------- report
def median_rate(rows: list[dict[str, float]], tokens: str, seconds: str) -> float:
    return statistics.median(r[tokens] / r[seconds] for r in rows)


RATES = (
    ("rollout: completion tokens/s", "rollout_tokens", "rollout_s", 2),
    ("training: prompt + completion tokens/s, one optimizer step", "train_tokens", "train_s", 6),
)  # label, tokens, seconds, model FLOPs per token and parameter


def report(
    mine: list[dict[str, float]],
    theirs: list[dict[str, float]],
    cfg: TrainConfig,
    mfu: tuple[int, float] | None = None,
) -> str:
    """The table and its note; with ``mfu = (parameters, peak FLOP/s)`` an MFU column too."""

    def ratio(tokens: str, seconds: str) -> float:
        return statistics.median(
            (a[tokens] / a[seconds]) / (b[tokens] / b[seconds])
            for a, b in zip(mine, theirs, strict=True)
        )

    def best(rows: list[dict[str, float]], tokens: str, seconds: str) -> float:
        return max(r[tokens] / r[seconds] for r in rows)

    sizes = f"{cfg.batch_tasks} prompts x {cfg.group_size}, {cfg.max_new_tokens} new tokens"
    lines = [
        f"| per step ({sizes}) | ours: median | best | TRL: median | best | ours against TRL |"
        + (" MFU (medians): ours / TRL |" if mfu else ""),
        "|---|---|---|---|---|---|" + ("---|" if mfu else ""),
    ]
    for label, tokens, seconds, flops in RATES:
        a, b = median_rate(mine, tokens, seconds), median_rate(theirs, tokens, seconds)
        lines.append(
            f"| {label} | {a:,.0f} | {best(mine, tokens, seconds):,.0f} | {b:,.0f} "
            f"| {best(theirs, tokens, seconds):,.0f} "
            f"| **{ratio(tokens, seconds):.2f}x** the tokens/s (median of per-round ratios) |"
        )
        if mfu:
            per_token = flops * mfu[0] / mfu[1]
            lines[-1] += f" {a * per_token:.2%} / {b * per_token:.2%} |"
    for label, key in (
        ("rollout, seconds", "rollout_s"),
        ("scoring (rewards, advantages, samples / padding), seconds", "score_s"),
        ("training, seconds", "train_s"),
        ("whole step, seconds", "step_s"),
    ):
        a = statistics.median(r[key] for r in mine)
        b = statistics.median(r[key] for r in theirs)
        verdict = f"{b / a:.2f}x faster (medians)" if a < b else f"{a / b:.2f}x slower (medians)"
        lines.append(
            f"| {label} | {a:.3f} | {min(r[key] for r in mine):.3f} | {b:.3f} "
            f"| {min(r[key] for r in theirs):.3f} | {verdict} |" + ("  |" if mfu else "")
        )
    tokens = [
        ("completion tokens per step", "rollout_tokens"),
        ("trained tokens per step", "train_tokens"),
    ]
    counts = "; ".join(
        f"{label}: ours {statistics.mean(r[key] for r in mine):,.0f}, "
        f"TRL {statistics.mean(r[key] for r in theirs):,.0f}"
        for label, key in tokens
    )
    note = f"{len(mine)} interleaved rounds after one warm-up step each; {counts}."
    return "\n".join(lines) + "\n\n" + note


CPU_INTRO = """\
## Trainer vs TRL GRPOTrainer (`bench/trainer_vs_trl.py`)

The trainer's rollout and update against TRL's `GRPOTrainer` (`use_vllm=False`), in one process,
interleaved step by step, on the same model, weights, prompts and sizes: the trainer's `tiny`
(Qwen2, 2 layers of width 128, its own BPE tokenizer and ChatML template), float32 on the CPU,
LoRA rank 16 / alpha 32 on every linear layer; {prompts} prompts (the first turns of {prompts}
support/Triage-v1 train tasks, rendered with the tools; the script checks both systems get the
same prompt token ids) x group {group} = {sequences} completions of at most {new} new tokens, \
temperature 1, no
top-p or top-k; one AdamW step (lr 2e-3, gradient norm clipped at 1) over the {sequences} \
sequences in {micro_batches}
micro-batches of {micro}, PPO-clipped loss (0.2) with GRPO advantages and a token mean over the
batch, no KL and no reference model (ours `kl_coef=0`; TRL `beta=0`, `loss_type="dapo"`,
`gradient_checkpointing=False` and `bf16=False`, both of which TRL turns on by default),
no extra forward for old logprobs on either side.
"""

GPU_INTRO = """\
## Trainer vs TRL GRPOTrainer on a GPU (`bench/trainer_vs_trl.py --device cuda`)

The comparison above on one {gpu}, in bfloat16 on both sides (ours: `trainer.models.load` puts
the weights in bf16 on a GPU and peft keeps the LoRA adapter in float32; TRL: `bf16=True`, so
its forward also runs under bf16 autocast); LoRA, loss, optimizer and TRL's settings otherwise
as above. Every timer first waits for the GPU's queued work (`torch.cuda.synchronize`).

- **Model**: {model}.
- **Sizes**: {prompts} prompts x group {group} = {sequences} completions of at most {new} new
  tokens; one optimizer step over them in {micro_batches} micro-batches of {micro}.
- **MFU** = achieved model FLOP/s / the GPU's peak dense bf16 FLOP/s{peak}: 2 x parameters per
  completion token for the rollout, 6 x parameters per trained token for training (forward +
  backward). Attention FLOPs are ignored; the tied embedding counts once (as the output layer);
  with LoRA the frozen weights get no weight gradients, so 6 x parameters counts about 1.5x the
  matrix work a training step really does."""

LARGE_CPU_INTRO = """\
## Trainer vs TRL GRPOTrainer on a 0.5B model, on the CPU (`--model qwen2-0.5b --device cpu`)

The comparison above on a real-sized model, float32 on this machine's CPU: the stand-in for the
GPU run below until a session is lent a GPU. At this size the matrix products take nearly all
of both systems' time, so what it shows is how much of each system's own overhead is left once
the model is no longer tiny. The sizes are cut so that a run takes minutes; LoRA, loss,
optimizer and TRL's settings as above.

- **Model**: {model}.
- **Sizes**: {prompts} prompts x group {group} = {sequences} completions of at most {new} new
  tokens; one optimizer step over them in {micro_batches} micro-batches of {micro}."""

QWEN2_TEXT = """\
Qwen2-0.5B's shape (24 layers of width 896, 14 attention heads, 2 key/value
  heads, MLP width 4864, tied embeddings, a vocabulary of 151,936; {params:,} parameters), random
  weights from the config (nothing downloaded), with the trainer's own tokenizer, which decodes
  only {vocab} of those ids: the completions are mostly ids it decodes to nothing and rarely end
  before the limit, so the reward here is the parity of the sum of the completion's token ids"""

BULLETS = """
- **Rollout** = completion tokens per second. Ours: `simenv.rollouts.policies.HF.act` on the
  {sequences} conversations (render and tokenise the prompts, the policy's KV-cached sampling
  loop, which also records each token's logprob, decode). TRL: `GRPOTrainer._generate` (tokenise,
  `model.generate` of the PEFT model with TRL's `GenerationConfig`, decode).
- **Training** = prompt + completion tokens (no padding) per second of one optimizer step.
  Ours: `trainer.train.policy_update` on the samples built as the trainer builds them. TRL: the
  time from `on_step_begin` to `on_step_end` of `trainer.train()` minus
  `_generate_and_score_completions` (so: its micro-batches' forward and backward, clipping, the
  optimizer and scheduler steps).
- Not compared: environment steps (TRL's loop here is single-turn text; ours runs the same
  single turn through the policy without an environment) and the reward (a cheap {reward},
  the same on both sides). The first step of each is a warm-up."""

CPU_THREADS = """ Both run with the same torch
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


def intro(setup: Setup, params: int, vocab: int, gpu: str, peak: float | None) -> str:
    """The section's heading and description, for the CPU or the GPU section."""
    cfg = setup.cfg
    sizes = {
        "prompts": cfg.batch_tasks,
        "group": cfg.group_size,
        "sequences": cfg.batch_tasks * cfg.group_size,
        "new": cfg.max_new_tokens,
        "micro": cfg.micro_batch,
        "micro_batches": cfg.batch_tasks * cfg.group_size // cfg.micro_batch,
    }
    text = "function of the token ids" if setup.on_ids else "text function"
    bullets = BULLETS.format(reward=text, **sizes)
    if setup.device.type == "cpu" and setup.model == "tiny":
        return CPU_INTRO.format(**sizes) + bullets + CPU_THREADS
    model = (
        QWEN2_TEXT.format(params=params, vocab=vocab)
        if setup.model == "qwen2-0.5b"
        else f"the trainer's `tiny` ({params:,} parameters)"
    )
    if setup.device.type == "cpu":
        return LARGE_CPU_INTRO.format(model=model, **sizes) + bullets + CPU_THREADS
    where = f" ({peak / 1e12:,.0f} TFLOP/s for the {gpu})" if peak else ""
    return GPU_INTRO.format(gpu=gpu, model=model, peak=where, **sizes) + bullets


def section(model: str, gpu: str) -> str:
    """The docs/benchmarks.md section a run writes: tiny on the CPU, 0.5B on the CPU, or GPU."""
    if gpu:
        return "trainer_vs_trl_gpu"
    return "trainer_vs_trl" if model == "tiny" else "trainer_vs_trl_cpu_large"


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The command line that wrote a section: the options that differ from their defaults."""
    words = ["python bench/trainer_vs_trl.py"]
    for name in ("model", "device", "prompts", "group", "max_new_tokens", "micro_batch"):
        if getattr(args, name) != parser.get_default(name):
            words.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    for name in ("threads", "peak_flops"):
        if getattr(args, name) != parser.get_default(name):
            words.append(f"--{name.replace('_', '-')} {getattr(args, name):g}")
    return " ".join([*words, "--write"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="measured steps of each system")
    parser.add_argument("--model", choices=("tiny", "qwen2-0.5b"), default="tiny")
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default="auto", help="auto: cuda if there"
    )
    parser.add_argument("--prompts", type=int, default=CFG.batch_tasks, help="prompts per step")
    parser.add_argument("--group", type=int, default=CFG.group_size, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=CFG.max_new_tokens)
    parser.add_argument("--micro-batch", type=int, default=CFG.micro_batch, help="sequences")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for both (1: steady on a busy host)"
    )
    parser.add_argument(
        "--peak-flops", type=float, default=None, help="the GPU's peak bf16 FLOP/s (for MFU)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the qwen2-0.5b path on a shrunken config (2 layers, vocabulary 4096), one round",
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.smoke:
        args.model, args.rounds = "qwen2-0.5b", 1
    want = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU")
    sequences = args.prompts * args.group
    if not 1 <= args.prompts <= TRAIN_TASKS or args.group < 2:
        parser.error(f"need 1 <= --prompts <= {TRAIN_TASKS} and --group >= 2")
    if sequences % args.micro_batch:
        parser.error(f"--micro-batch must divide prompts x group = {sequences}")
    if args.write and args.smoke:
        parser.error("--write records full runs, not a smoke run")
    cfg = replace(
        CFG,
        batch_tasks=args.prompts,
        group_size=args.group,
        max_new_tokens=args.max_new_tokens,
        micro_batch=args.micro_batch,
    )
    setup = Setup(cfg, args.model, torch.device(want), smoke=args.smoke)
    gpu = torch.cuda.get_device_name(setup.device) if want == "cuda" else ""
    peak = args.peak_flops or (peak_flops(gpu) if gpu else None)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / args.model
        firsts, texts, params = build_shared(directory, setup)
        shape = " (--smoke: 2 layers, vocabulary 4096)" if args.smoke else ""
        print(
            f"model {args.model}{shape}: {params:,} parameters ({params / 1e6:,.1f}M), "
            f"{str(setup.dtype).removeprefix('torch.')} on {gpu or want}",
            flush=True,
        )
        ours = Ours(directory, firsts, setup)
        trainer = trl_trainer(directory, texts, args.rounds + 1, Path(tmp) / "trl", setup)
        sink: dict[str, Any] = {}
        for name in ("_generate", "_generate_and_score_completions"):
            wrap_timed(trainer, name, sink, setup)
        loop = Interleave(ours, sink)
        trainer.add_callback(loop)
        trainer.train()
    if loop.trl_prompts != ours.prompts:
        raise SystemExit("the two systems were not given the same prompt tokens")
    mine, theirs = loop.mine[1:], loop.trl[1:]
    table = report(mine, theirs, cfg, (params, peak) if peak else None)
    if gpu and not peak:
        table += (
            f"\n\nMFU omitted: no peak bf16 FLOP/s known for {gpu} (give it with --peak-flops)."
        )
    print(table)
    print(verdict(mine, theirs))
    if args.write:
        versions = (
            f"torch {torch.__version__}, transformers {transformers.__version__}, "
            f"TRL {trl.__version__}, torch threads: {torch.get_num_threads()}"
        )
        where = f"{gpu}; host: {machine()}" if gpu else machine()
        write_section(
            section(args.model, gpu),
            f"{intro(setup, params, len(ours.tokenizer), gpu, peak)}\n\n"
            f"`{command(args, parser)}` ({args.rounds} rounds; {where}; {versions})\n\n"
            f"{table}\n\n{verdict(mine, theirs)}",
        )


if __name__ == "__main__":
    main()
