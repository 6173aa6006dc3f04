"""Checkpoints and the metrics file: a killed run resumes without lost or repeated steps.

A checkpoint (adapter or weights, optimizer, step, every RNG state) is written into
``checkpoint.tmp/`` and swapped in by renames, so a kill at any moment leaves a complete one.
On resume, the rows of ``metrics.jsonl`` after the checkpoint's step are dropped: the resumed
run plays those steps again, so none is lost or counted twice.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "checkpoint_step",
    "evaluation_at",
    "find_checkpoint",
    "load_checkpoint",
    "read_metrics",
    "resume_point",
    "save_checkpoint",
]


def save_checkpoint(path: Path, model: Any, optimizer: Any, step: int) -> None:
    """Adapter (or weights), optimizer, step and every RNG state, replaced all at once.

    Written into ``PATH.tmp`` first and swapped in by renames, so a kill at any moment leaves
    either the previous complete checkpoint or the new one (at ``PATH`` or, between the two
    renames, ``PATH.old``), never a mixture: :func:`find_checkpoint` picks it up.
    """
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(tmp / "adapter")
    else:  # every weight trained: one file, which load_checkpoint reads back
        model.save_pretrained(tmp / "adapter", max_shard_size="10000GB")
    (tmp / "step").write_text(str(step))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "step": step,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        },
        tmp / "state.pt",
    )
    if (path / "state.pt").exists():
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
    else:
        shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(path: Path) -> Path | None:
    """The complete checkpoint at ``path``, or the one a kill mid-swap left at ``PATH.old``."""
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / "state.pt").exists():
            return candidate
    return None


def resume_point(out: Path) -> Path | None:
    """The checkpoint a run in ``out`` resumes from (none before its base model was saved)."""
    return find_checkpoint(out / "checkpoint") if (out / "base").exists() else None


def checkpoint_step(path: Path) -> int:
    """The last step a checkpoint holds (read without loading the optimizer state)."""
    if (path / "step").exists():
        return int((path / "step").read_text())
    return int(torch.load(path / "state.pt", weights_only=False)["step"])  # older checkpoints


def load_checkpoint(path: Path, model: Any, optimizer: Any) -> int:
    """Restore a checkpoint into ``model`` and ``optimizer``; return the next step."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = path / "adapter" / "adapter_model.safetensors"
    if adapter.exists():
        set_peft_model_state_dict(model, load_file(str(adapter)))
    else:  # no LoRA: every weight was trained (a tied output layer is saved once)
        saved = load_file(str(path / "adapter" / "model.safetensors"))
        result = model.load_state_dict(saved, strict=False)
        current = model.state_dict()
        loaded = {current[k].data_ptr() for k in saved if k in current}
        missing = [k for k in result.missing_keys if current[k].data_ptr() not in loaded]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{path}: the checkpoint does not fit the model (missing {missing[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}); resume with the settings it was "
                "written with, or delete the output folder to start over"
            )
    state = torch.load(path / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return int(state["step"]) + 1


def read_metrics(path: Path, last_step: int | None) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` a resumed run keeps, rewritten in place.

    ``last_step`` is the checkpoint's step: the rows up to and including that RL step's are
    kept; those a killed run wrote after it (it will play those steps again) are dropped, and
    so is a half-written last line. ``None`` (a fresh run) empties the file.
    """
    rows: list[dict[str, Any]] = []
    if last_step is not None and path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by the kill; nothing after it was written
        ends = [i for i, r in enumerate(rows) if "episode/reward" in r and r["step"] == last_step]
        rows = rows[: ends[-1] + 1] if ends else []
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)  # a kill now leaves the old file or the new one, never half of it
    return rows


def evaluation_at(rows: list[dict[str, Any]], step: int) -> dict[str, float] | None:
    """The held-out evaluation a run recorded at ``step`` (-2: before the warm start; -1: RL)."""
    for row in rows:
        if row["step"] == step and any(k.startswith("eval/") for k in row):
            return {k: v for k, v in row.items() if k != "step"}
    return None
