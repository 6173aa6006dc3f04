"""Rollout tokens/s through vLLM against the trainer's HF loop, side by side (a GPU run).

NOT RUN YET: this project has had no GPU machine with vLLM for it; docs/engines.md says so,
and docs/benchmarks.md gets this section only from a real run (``--write``).

The same rollouts twice, on the same GPU: ``--episodes`` episodes of ``--scenario`` (a group
of them per task, as the trainer plays a batch) with the same policy settings, sampled

1. by the HF policy's own loop (``rollout_engine=hf``: the model in this process, bf16);
2. by a vLLM server through the gateway's upstream path (``rollout_engine=vllm``:
   ``HF.engine`` set by :class:`trainer.engines.ServerEngine`), serving the same model with a
   LoRA adapter (a fresh one: zero update) loaded by ``/v1/load_lora_adapter`` and checked.

Each row reports generated tokens, wall seconds and tokens/s (completion tokens, EOS
included, summed over every turn of every episode), and the adapter sync's time and logprob
difference (the engine's check).

Run on a GPU machine (vLLM needs one)::

    pip install vllm            # into the same environment as simenv[train]
    python bench/vllm_rollouts.py --model /path/to/local/Qwen2.5-0.5B-Instruct [--write]

``--engine-url URL`` uses a vLLM server already running on that model (started with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve DIR --enable-lora --max-lora-rank 16``)
instead of starting one. Without vLLM (and without ``--engine-url``) it stops at once and
says what to install.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import machine, write_section


def _need_vllm(engine_url: str) -> None:
    if engine_url or importlib.util.find_spec("vllm") is not None or shutil.which("vllm"):
        return
    sys.exit(
        "bench/vllm_rollouts.py needs vLLM: pip install vllm (on a machine with an NVIDIA GPU), "
        "or pass --engine-url URL of a running vLLM server serving --model"
    )


def _rollouts(policy: Any, scenario: str, episodes: int, group: int) -> tuple[int, float]:
    import simenv
    from simenv.rollouts import Job, run

    s = simenv.load_scenario(scenario)
    tasks = list(s.split("train"))
    jobs = [
        Job(tasks[i % len(tasks)].id, 1_000 + i, i, g)
        for i in range(max(1, episodes // group))
        for g in range(group)
    ]
    began = time.perf_counter()
    played = run(s, policy, jobs, batch_size=len(jobs))
    seconds = time.perf_counter() - began
    tokens = sum(len(t["completion_ids"]) for e in played for t in e.metadata.get("turns", ()))
    return tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local Hugging Face model directory")
    parser.add_argument("--scenario", default="support/Refunds-v1")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--engine-url", default="")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    _need_vllm(args.engine_url)

    import torch
    import transformers

    from simenv.rollouts.policies import HF
    from trainer.config import TrainConfig
    from trainer.engines import open_engine
    from trainer.models import load, with_lora

    if not torch.cuda.is_available():
        sys.exit("bench/vllm_rollouts.py compares on a GPU; this machine has none")
    out = Path(tempfile.mkdtemp(prefix="simenv-vllm-bench-"))
    shutil.copytree(args.model, out / "base")  # the run layout: the engine serves OUT/base
    model, tokenizer = load(out / "base", device="cuda")
    model = with_lora(model, rank=args.lora_rank, alpha=2 * args.lora_rank)
    policy = HF(model, tokenizer, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    rows = []
    tokens, seconds = _rollouts(policy, args.scenario, args.episodes, args.group)
    rows.append(("HF loop (in process)", tokens, seconds, "", ""))

    cfg = TrainConfig(
        model=args.model,
        rollout_engine="vllm",
        engine_url=args.engine_url,
        lora_rank=args.lora_rank,
        out=str(out),
        engine_tolerance=0.1,
    )
    engine = open_engine(cfg, out, tokenizer)
    try:
        engine.attach(policy)
        sync = engine.sync(model, 0)
        tokens, seconds = _rollouts(policy, args.scenario, args.episodes, args.group)
        rows.append(
            (
                "vLLM via the gateway's upstream path",
                tokens,
                seconds,
                f"{sync['perf/engine_sync_s']:.2f}",
                f"{sync['engine/logprob_diff']:.4f}",
            )
        )
    finally:
        engine.close()

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if importlib.util.find_spec("vllm") is not None:
        import vllm

        versions += f", vLLM {vllm.__version__}"
    lines = [
        "## Rollouts through vLLM against the HF loop (`bench/vllm_rollouts.py`)",
        "",
        f"{args.episodes} episodes of {args.scenario} (groups of {args.group}), model "
        f"{Path(args.model).name} with a rank-{args.lora_rank} LoRA adapter, up to "
        f"{args.max_new_tokens} tokens a turn, temperature 1.",
        "",
        "| sampler | tokens | seconds | tokens/s | adapter sync (s) | check: logprob diff |",
        "|---|---|---|---|---|---|",
        *(f"| {n} | {t} | {s:.1f} | {t / s:.0f} | {sy} | {d} |" for n, t, s, sy, d in rows),
        "",
        f"{torch.cuda.get_device_name()}; {machine()}; {versions}.",
    ]
    print("\n".join(lines))
    if args.write:
        write_section("vllm_rollouts", "\n".join(lines))


if __name__ == "__main__":
    main()
