"""Where TRL's update spends its time on the 0.5B Qwen2 shape, on the CPU: one profiled step.

The setup of ``bench/trainer_vs_trl.py --model qwen2-0.5b --device cpu`` at small sizes (2
prompts x group 4, 8 new tokens, micro-batches of 4): three interleaved steps of each system,
the third TRL step under ``torch.profiler``. It prints the operators that took the most time,
the inclusive time of TRL's chunked log-probability function (forward and backward, which runs
the 151,936-wide output layer), and both systems' training seconds and trained tokens per step.
docs/benchmarks.md quotes it below the 0.5B CPU table. It writes nothing.

Run: ``python bench/trainer_vs_trl_profile.py`` (about 4 minutes on 2 cores; needs the ``bench``
extra).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import transformers
from _vs_trl import Interleave, Ours, Setup, build_shared, trl_trainer, wrap_timed
from torch.profiler import ProfilerActivity, profile

from trainer.config import TrainConfig

PROFILED_STEP = 3  # the third TRL step: after a warm-up and one plain step


class Profiled(transformers.TrainerCallback):
    """Runs TRL's ``PROFILED_STEP``-th optimizer step under the profiler."""

    def __init__(self) -> None:
        self.steps = 0
        self.session: Any = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1
        if self.steps == PROFILED_STEP:
            self.session = profile(activities=[ProfilerActivity.CPU])
            self.session.__enter__()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.steps == PROFILED_STEP:
            self.session.__exit__(None, None, None)


def main() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)
    cfg = replace(TrainConfig(lora_rank=16, lr=2e-3), batch_tasks=2, group_size=4, max_new_tokens=8,
                  micro_batch=4)  # fmt: skip
    setup = Setup(cfg, "qwen2-0.5b", torch.device("cpu"))
    profiled = Profiled()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "model"
        firsts, texts, _ = build_shared(directory, setup)
        ours = Ours(directory, firsts, setup)
        trainer = trl_trainer(directory, texts, PROFILED_STEP, Path(tmp) / "trl", setup)
        sink: dict[str, Any] = {}
        for name in ("_generate", "_generate_and_score_completions"):
            wrap_timed(trainer, name, sink, setup)
        loop = Interleave(ours, sink)
        trainer.add_callback(loop)
        trainer.callback_handler.callbacks.insert(0, profiled)  # its window opens first
        trainer.train()
    events = profiled.session.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    chunked = {
        e.key: e.cpu_time_total / 1e6 for e in events if e.key.startswith("ChunkedLogProbFunction")
    }
    print("TRL's chunked log-prob function, inclusive seconds in the profiled step:")
    for key, seconds in sorted(chunked.items()):
        print(f"  {key}: {seconds:.2f} s")
    print(f"  together: {sum(chunked.values()):.2f} s")
    for label, rows in (("TRL", loop.trl), ("ours", loop.mine)):
        shown = ", ".join(f"{r['train_s']:.1f} s / {r['train_tokens']:,} tokens" for r in rows)
        print(f"{label} training per step (seconds / trained tokens): {shown}")


if __name__ == "__main__":
    main()
